"""
### bms_training

Nightly, and on demand with params: for each feature set, build windows from the `daily` zone, split them by
time with a 14-day gap, train with `pipelines/training/train.py` (the SageMaker script-mode entry point), evaluate
beside the reference recipe on the same split, write the report and register the version in `models/bms/`.
The challenger replaces the feature set's champion only if its average precision on the same test window is not
lower by more than CELLGUARD_PROMOTION_AP_MARGIN; the decision and both figures are recorded with the version.

With CELLGUARD_BACKEND=aws the same train.py runs as a SageMaker training job (script mode, XGBoost framework
container) named from this run's id, so a retried task finds its job instead of starting another; a promoted
champion is then deployed to the feature set's SageMaker endpoint (a Model and an EndpointConfig per version,
then CreateEndpoint or UpdateEndpoint). Locally the model server picks a new champion up by itself.

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
    def train(feature_set: str, params=None, run_id=None) -> dict:
        from pipelines.training.pipeline import request_from_params, train_and_register
        from pipelines.training.sagemaker_training import backend_trainer

        result = train_and_register(request_from_params(feature_set, params), progress=print,
                                    trainer=backend_trainer(run_id, progress=print))  # None locally: in this process
        print(result.headline())
        return {"version": result.version, "champion": result.champion, "promoted": result.decision["promoted"],
                "report": result.report_url}

    @task(max_active_tis_per_dagrun=1)  # one endpoint update at a time
    def deploy(trained: dict, run_id=None) -> dict:
        from pipelines.serving.sagemaker_deploy import deploy_if_promoted

        deployment = deploy_if_promoted(trained, run_id)
        print(deployment)
        return deployment

    deploy.expand(trained=train.expand(feature_set=feature_sets()))


bms_training()
