"""The assets CellGuard DAGs produce and consume; events carry the touched dates in their extra."""

from airflow.sdk import Asset

FRAMES = Asset(name="frames", uri="cellguard://lake/frames", group="cellguard")
DAILY = Asset(name="daily", uri="cellguard://lake/daily", group="cellguard")
PREDICTIONS = Asset(name="predictions", uri="cellguard://lake/predictions", group="cellguard")
