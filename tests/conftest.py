"""Test-session settings: Airflow and CellGuard point into a temporary folder before anything imports them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="cellguard-tests-"))

os.environ.setdefault("CELLGUARD_HOME", str(_SESSION_HOME / "cellguard"))
os.environ["AIRFLOW_HOME"] = str(_SESSION_HOME / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["GX_ANALYTICS_ENABLED"] = "False"



CELLGUARD_SETTINGS = ("CELLGUARD_LAKE_URI", "CELLGUARD_CATALOG_PATH", "CELLGUARD_MAPPINGS_DIR", "CELLGUARD_BACKEND",
                      "CELLGUARD_MAX_CLOCK_SKEW_HOURS", "CELLGUARD_EARLIEST_TS", "CELLGUARD_INGEST_MAX_OBJECTS",
                      "CELLGUARD_PROMOTION_AP_MARGIN", "CELLGUARD_MODEL_SERVER_PORT", "CELLGUARD_MODEL_POLL_SECONDS",
                      "CELLGUARD_EVENT_STORE_URL", "CELLGUARD_PREDICTION_FLUSH_ROWS", "CELLGUARD_PREDICTION_FLUSH_SECONDS",
                      "CELLGUARD_ALERT_WEBHOOK", "CELLGUARD_API_TOKEN", "CELLGUARD_API_PORT", "CELLGUARD_API_MAX_ITEMS", "CELLGUARD_API_ACCESS_LOG", "CELLGUARD_API_WORKERS",
                      "CELLGUARD_SUPERSET_PORT", "CELLGUARD_SAGEMAKER_ROLE_ARN",
                      "CELLGUARD_SAGEMAKER_TRAINING_INSTANCE_TYPE", "CELLGUARD_SAGEMAKER_ENDPOINT_INSTANCE_TYPE",
                      "CELLGUARD_SAGEMAKER_TRANSFORM_INSTANCE_TYPE", "CELLGUARD_SAGEMAKER_POLL_SECONDS",
                      "CELLGUARD_S3_ENDPOINT_URL", "CELLGUARD_AWS_REGION", "CELLGUARD_AWS_ENDPOINT_URL",
                      "CELLGUARD_GLUE_DATABASE", "CELLGUARD_ATHENA_WORKGROUP", "CELLGUARD_ATHENA_OUTPUT",
                      "CELLGUARD_DYNAMODB_TABLE_PREFIX")


@pytest.fixture
def isolate_settings(monkeypatch: pytest.MonkeyPatch):
    """A function pointing every CellGuard setting at a folder (Data Docs off), whatever the shell exports."""

    def isolate(home: Path, lake_uri: str | None = None) -> Path:
        for name in CELLGUARD_SETTINGS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("CELLGUARD_HOME", str(home))
        monkeypatch.setenv("CELLGUARD_DATA_DOCS", "0")
        if lake_uri:
            monkeypatch.setenv("CELLGUARD_LAKE_URI", lake_uri)
        return home

    return isolate
