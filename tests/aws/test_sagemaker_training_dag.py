"""bms_training through Airflow's dag.test() with CELLGUARD_BACKEND=aws: SageMaker training, registry in S3, deploy.

Everything AWS is the session's moto server. As in test_sagemaker_training, moto's training job writes no artifact,
so the same test-only stand-in runs the uploaded train.py as script mode would and puts model.tar.gz where the
job says; moto's CreateEndpoint is InService at once. What this proves: the DAG picks the SageMaker trainer on the
aws backend, names the job from its run id, registers the job's model exactly as the local path registers its own,
and deploys the promoted champion to `cellguard-signals6`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e.airflow_events import migrate_airflow_db
from training.daily_builders import write_synthetic_daily

from pipelines.config import Settings
from pipelines.serving.sagemaker_deploy import endpoint_config_name, model_name
from pipelines.storage.aws import resource_name
from pipelines.storage.lake import Lake
from pipelines.training import registry
from pipelines.training.sagemaker_training import canonical_archive

from .test_sagemaker_training import (  # noqa: F401 (fixtures)
    sagemaker,
    sagemaker_settings,
    training_stand_in,
)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_bms_training_trains_on_sagemaker_registers_and_deploys(sagemaker_settings: Settings, sagemaker,  # noqa: F811
                                                                training_stand_in) -> None:  # noqa: F811
    from airflow.dag_processing.dagbag import DagBag

    client, _ = sagemaker
    migrate_airflow_db()
    lake = Lake.from_settings(sagemaker_settings)
    write_synthetic_daily(lake)
    bag = DagBag(dag_folder=str(REPO / "dags" / "bms_training.py"))
    assert bag.import_errors == {}

    run = bag.dags["bms_training"].test(run_conf={"feature_sets": ["signals6"], "num_round": 40})

    assert run.state == "success"
    (job,) = client.list_training_jobs()["TrainingJobSummaries"]
    name = job["TrainingJobName"]
    assert name.startswith(resource_name("cellguard", "signals6", run.run_id)[:40]) and len(name) <= 63
    champion = registry.champion(lake, "signals6")
    archive, card = registry.load_version(lake, champion.version)
    assert archive == canonical_archive(training_stand_in[name], name)
    assert card["metrics"]["roc_auc"] > 0.95 and card["decision"]["promoted"]

    endpoint = client.describe_endpoint(EndpointName="cellguard-signals6")
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == endpoint_config_name(champion.version, run.run_id)
    config = client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert config["ProductionVariants"][0]["ModelName"] == model_name(champion.version)
    model = client.describe_model(ModelName=model_name(champion.version))
    assert model["PrimaryContainer"]["ModelDataUrl"] == lake.url(f"models/bms/{champion.version}/model.tar.gz")
