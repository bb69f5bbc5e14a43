"""Landing objects to validated frames: readers, column mappings, checks, dedup, quarantine, manifest."""

from pipelines.ingest.pipeline import IngestSummary, ingest_pending, pending_landing_keys

__all__ = ["IngestSummary", "ingest_pending", "pending_landing_keys"]
