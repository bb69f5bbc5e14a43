"""Which prediction event store the settings name: the SQL store locally, DynamoDB when CELLGUARD_BACKEND=aws."""

from __future__ import annotations

from pipelines.config import Settings, load_settings
from pipelines.storage.event_store import EventStore, PredictionEventStore


def open_event_store(settings: Settings | None = None) -> PredictionEventStore:
    """The event store of the configured backend (local: CELLGUARD_EVENT_STORE_URL; aws: DynamoDB tables)."""
    settings = settings or load_settings()
    if settings.backend == "aws":
        from pipelines.storage.dynamodb_event_store import DynamoDbEventStore

        return DynamoDbEventStore.from_settings(settings)
    return EventStore.from_settings(settings)
