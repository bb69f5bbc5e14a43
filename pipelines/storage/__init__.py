"""Where data lives: the lake (file | s3), the catalog, the event store."""
