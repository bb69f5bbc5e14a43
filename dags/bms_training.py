"""
### bms_training

Nightly, and on demand with params: for each feature set, build windows from the `daily` zone, split them by
time with a 14-day gap, train with `pipelines/training/train.py` (the SageMaker script-mode entry point), evaluate
beside the reference recipe on the same split, write the report and register the version in `models/bms/`.
The challenger replaces the feature set's champion only if its average precision on the same test window is not
lower by more than CELLGUARD_PROMOTION_AP_MARGIN; the decision and both figures are recorded with the version.

Logic lives in `pipelines.training`; this file only wires it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

FEATURE_SETS = ["full", "signals6"]


@dag(
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    params={
        "feature_sets": Param(FEATURE_SETS, type="array", items={"enum": FEATURE_SETS},
                              description="Which feature sets to train (each has its own champion)"),
        "first_as_of": Param(None, type=["null", "string"], format="date", description="Earliest as_of date (default: all)"),
        "last_as_of": Param(None, type=["null", "string"], format="date", description="Latest as_of date (default: all)"),
        "num_round": Param(300, type="integer", minimum=1, maximum=5000),
        "max_depth": Param(6, type="integer", minimum=1, maximum=16),
        "eta": Param(0.1, type="number", exclusiveMinimum=0, maximum=1),
        "target_precision": Param(0.5, type="number", exclusiveMinimum=0, maximum=1,
                                  description="The alarm threshold is the lowest reaching this precision on validation"),
    },
    tags=["cellguard", "training"],
)
def bms_training():
    @task
    def feature_sets(params=None) -> list[str]:
        return list(params["feature_sets"])

    @task(max_active_tis_per_dagrun=1)  # two trainings at once would only fight over the cores
    def train(feature_set: str, params=None) -> dict:
        from pipelines.training.pipeline import request_from_params, train_and_register

        result = train_and_register(request_from_params(feature_set, params), progress=print)
        print(result.headline())
        return {"version": result.version, "champion": result.champion, "promoted": result.decision["promoted"],
                "report": result.report_url}

    train.expand(feature_set=feature_sets())


bms_training()
