"""pipelines/serving/sagemaker_deploy.py: Model per version, EndpointConfig per version, create or update, on moto.

What these tests prove: the exact CreateModel, CreateEndpointConfig, CreateEndpoint and UpdateEndpoint requests,
the names, that a retry (or a later run deploying the version already served) creates nothing, that the deployment
waits until the endpoint is InService on the new config, and clear errors. Nothing here runs a container.

moto 5.2 has no UpdateEndpoint (its server answers 500 "not implemented"), so a test-only stand-in
(`update_endpoint_stand_in`) adds it to moto's SageMaker: it records the request moto received, points moto's
endpoint at the new config and leaves it `Updating` for a few DescribeEndpoint calls (or rolls it back), as
SageMaker does. What is proved about UpdateEndpoint is the request and the waiting, not SageMaker's update.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from moto.core.responses import ActionResult
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse
from serving.registry_builders import promote, train_archive
from training.builders import synthetic_windows

from pipelines.config import Settings
from pipelines.serving.sagemaker_deploy import (
    DeploymentFailed,
    SageMakerModels,
    deploy_version,
    endpoint_config_name,
    endpoint_name,
    inference_code_tarball,
    model_name,
)
from pipelines.storage.lake import Lake
from pipelines.training.registry import ModelVersionNotFound

from .conftest import REGION
from .test_sagemaker_training import ROLE, CallRecorder, sagemaker, sagemaker_settings  # noqa: F401 (fixtures)

IMAGE = f"141502667606.dkr.ecr.{REGION}.amazonaws.com/sagemaker-xgboost:3.2-0"
RUN = "manual__2026-11-22T10:00:00+00:00"
LATER_RUN = "scheduled__2026-11-23T02:00:00+00:00"


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Two real signals6 archives (train.py, different seeds)."""
    frame = synthetic_windows(vehicles=6, days=40)
    windows = frame[frame["label"].notna()].reset_index(drop=True)
    root = tmp_path_factory.mktemp("deploy-archives")
    return {"a": train_archive(root / "a", windows, seed=1), "b": train_archive(root / "b", windows, seed=2)}


@pytest.fixture
def deployed(sagemaker_settings: Settings, sagemaker, archives) -> SimpleNamespace:  # noqa: F811
    """An S3 lake with two registered signals6 versions, and the SageMakerModels the code under test uses."""
    client, recorder = sagemaker
    lake = Lake.from_settings(sagemaker_settings)
    versions = [promote(lake, archives["a"]), promote(lake, archives["b"], minutes=5)]
    said: list[str] = []
    models = SageMakerModels.from_settings(sagemaker_settings, client=client, progress=said.append)
    return SimpleNamespace(lake=lake, versions=versions, models=models, client=client, recorder=recorder, said=said)


@pytest.fixture
def update_endpoint_stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """UpdateEndpoint for moto's SageMaker (see the module doc); `rollback` makes the next update fail and roll back."""
    state = SimpleNamespace(received=[], updating_describes=2, rollback=None)
    describe = SageMakerModelBackend.describe_endpoint
    pending: dict[str, int] = {}

    def update_endpoint(self: SageMakerResponse) -> ActionResult:
        state.received.append(json.loads(self.body))
        name, config_name = self._get_param("EndpointName"), self._get_param("EndpointConfigName")
        self.sagemaker_backend.describe_endpoint_config(config_name)  # an unknown config: moto's ValidationError
        endpoint = self.sagemaker_backend.endpoints[name]
        endpoint.endpoint_status = "Updating"
        if state.rollback is None:
            endpoint.endpoint_config_name = config_name
        else:
            endpoint.failure_reason = state.rollback
        pending[name] = state.updating_describes
        return ActionResult({"EndpointArn": endpoint.arn})

    def describe_then_settle(backend: SageMakerModelBackend, endpoint_name: str) -> dict[str, Any]:
        if pending.get(endpoint_name, 0) > 0:
            pending[endpoint_name] -= 1
        elif endpoint_name in pending:
            backend.endpoints[endpoint_name].endpoint_status = "InService"
            del pending[endpoint_name]
        return describe(backend, endpoint_name)

    monkeypatch.setattr(SageMakerResponse, "update_endpoint", update_endpoint, raising=False)
    monkeypatch.setattr(SageMakerModelBackend, "describe_endpoint", describe_then_settle)
    yield state


def test_the_first_deployment_creates_model_config_and_endpoint(deployed, s3_bucket: str) -> None:
    version = deployed.versions[0]
    result = deploy_version(version, RUN, deployed.models)

    model, config = model_name(version), endpoint_config_name(version, RUN)
    assert (result.model, result.endpoint_config, result.endpoint, result.action) == (model, config,
                                                                                      "cellguard-signals6", "created")
    lake = f"s3://{s3_bucket}/lake"
    (create_model,) = deployed.recorder.named("CreateModel")
    code_url = create_model["PrimaryContainer"]["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"]
    assert code_url.startswith(f"{lake}/_sagemaker/code/inference-")
    assert create_model == {
        "ModelName": f"cellguard-{version}",
        "ExecutionRoleArn": ROLE,
        "PrimaryContainer": {"Image": IMAGE, "ModelDataUrl": f"{lake}/models/bms/{version}/model.tar.gz",
                             "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": code_url,
                                             "SAGEMAKER_REGION": REGION, "SAGEMAKER_CONTAINER_LOG_LEVEL": "20"}},
        "Tags": [{"Key": "cellguard:model-version", "Value": version}],
    }
    assert deployed.recorder.named("CreateEndpointConfig") == [{
        "EndpointConfigName": config,
        "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1,
                                "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0}],
        "Tags": [{"Key": "cellguard:model-version", "Value": version}, {"Key": "cellguard:run-id", "Value": RUN}],
    }]
    assert deployed.recorder.named("CreateEndpoint") == [{
        "EndpointName": "cellguard-signals6", "EndpointConfigName": config,
        "Tags": [{"Key": "cellguard:feature-set", "Value": "signals6"}]}]
    endpoint = deployed.client.describe_endpoint(EndpointName="cellguard-signals6")
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", config)
    # the entry point the container imports is the same inference.py the local model server wraps
    key = code_url[len(lake) + 1:]
    assert deployed.lake.read_bytes(key) == inference_code_tarball()
    assert f"endpoint cellguard-signals6 serves {version}" in deployed.said


def test_a_retry_or_a_later_run_of_the_served_version_creates_nothing(deployed) -> None:
    version = deployed.versions[0]
    deploy_version(version, RUN, deployed.models)
    again = deploy_version(version, RUN, deployed.models)
    later = deploy_version(version, LATER_RUN, deployed.models)

    assert (again.action, later.action) == ("unchanged", "unchanged")
    assert later.endpoint_config == endpoint_config_name(version, RUN)  # still the config that serves it
    created = [name for name, _ in deployed.recorder.calls if name.startswith(("Create", "Update"))]
    assert created == ["CreateModel", "CreateEndpointConfig", "CreateEndpoint"]


def test_a_new_version_gets_its_own_model_and_config_and_updates_the_endpoint(deployed,
                                                                                update_endpoint_stand_in) -> None:
    first, second = deployed.versions
    deploy_version(first, RUN, deployed.models)
    result = deploy_version(second, LATER_RUN, deployed.models)

    config = endpoint_config_name(second, LATER_RUN)
    assert (result.action, result.model, result.endpoint_config) == ("updated", model_name(second), config)
    assert [p["ModelName"] for p in deployed.recorder.named("CreateModel")] == [model_name(first), model_name(second)]
    assert [p["EndpointConfigName"] for p in deployed.recorder.named("CreateEndpointConfig")] == [
        endpoint_config_name(first, RUN), config]
    assert deployed.recorder.named("UpdateEndpoint") == [{"EndpointName": "cellguard-signals6",
                                                          "EndpointConfigName": config}]
    assert update_endpoint_stand_in.received == [{"EndpointName": "cellguard-signals6", "EndpointConfigName": config}]
    # it waited through Updating until InService on the new config
    assert "endpoint cellguard-signals6: Updating on " + config in deployed.said
    assert deployed.said[-2:] == [f"endpoint cellguard-signals6: InService on {config}",
                                  f"endpoint cellguard-signals6 serves {second}"]
    # the first version's model and config stay, to roll back to
    assert deployed.client.describe_model(ModelName=model_name(first))["ModelName"] == model_name(first)
    deployed.client.describe_endpoint_config(EndpointConfigName=endpoint_config_name(first, RUN))


def test_an_update_that_rolls_back_is_an_error_with_the_reason(deployed, update_endpoint_stand_in) -> None:
    first, second = deployed.versions
    deploy_version(first, RUN, deployed.models)
    update_endpoint_stand_in.rollback = "The primary container for production variant AllTraffic did not pass the ping"
    with pytest.raises(DeploymentFailed, match=r"InService on cellguard-.*, not on cellguard-.*: The primary "
                                               r"container for production variant AllTraffic did not pass the ping"):
        deploy_version(second, LATER_RUN, deployed.models)


def test_names_are_per_version_and_run_within_63_characters(deployed) -> None:
    version = deployed.versions[0]
    assert endpoint_name("signals6") == "cellguard-signals6" and endpoint_name("full") == "cellguard-full"
    assert model_name(version) == f"cellguard-{version}" and len(model_name(version)) <= 63
    configs = {endpoint_config_name(version, run) for run in (RUN, LATER_RUN, "manual__" + "z" * 300)}
    assert len(configs) == 3 and all(len(c) <= 63 and c.startswith("cellguard-") for c in configs)


def test_an_unregistered_version_is_refused_before_any_call(deployed) -> None:
    with pytest.raises(ModelVersionNotFound, match="model version 20990101t000000z-signals6-00000000 is not registered"):
        deploy_version("20990101t000000z-signals6-00000000", RUN, deployed.models)
    assert not [name for name, _ in deployed.recorder.calls if name.startswith("Create")]


def test_a_model_of_the_same_name_on_another_archive_is_refused(deployed) -> None:
    version = deployed.versions[0]
    deployed.client.create_model(ModelName=model_name(version), ExecutionRoleArn=ROLE,
                                 PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://elsewhere/model.tar.gz"})
    with pytest.raises(ValueError, match=f"SageMaker model cellguard-{version} exists but serves "
                                         "s3://elsewhere/model.tar.gz"):
        deploy_version(version, RUN, deployed.models)


def test_a_failed_endpoint_is_reported_not_updated(deployed, aws_client) -> None:
    first, second = deployed.versions
    deploy_version(first, RUN, deployed.models)
    from moto.sagemaker.models import sagemaker_backends

    endpoint = sagemaker_backends["123456789012"][REGION].endpoints["cellguard-signals6"]
    endpoint.endpoint_status, endpoint.failure_reason = "Failed", "Image not found"
    with pytest.raises(DeploymentFailed, match="endpoint cellguard-signals6 is Failed \\(Image not found\\): "
                                               "SageMaker cannot update it; delete it and deploy again"):
        deploy_version(second, LATER_RUN, deployed.models)




def test_bms_trainings_deploy_step_deploys_only_a_promoted_version_on_aws(deployed, sagemaker_settings: Settings,  # noqa: F811
                                                                         isolate_settings, tmp_path) -> None:
    from pipelines.serving.sagemaker_deploy import deploy_if_promoted

    version = deployed.versions[0]
    kept = deploy_if_promoted({"version": version, "promoted": False}, RUN, sagemaker_settings)
    assert kept == {"version": version, "action": "none",
                    "reason": "not promoted: the endpoint keeps serving the champion"}
    assert not deployed.recorder.calls

    done = deploy_if_promoted({"version": version, "promoted": True}, RUN, sagemaker_settings)
    assert done == {"version": version, "feature_set": "signals6", "model": model_name(version),
                    "endpoint_config": endpoint_config_name(version, RUN), "endpoint": "cellguard-signals6",
                    "action": "created"}
    assert deployed.client.describe_endpoint(EndpointName="cellguard-signals6")["EndpointStatus"] == "InService"

    isolate_settings(tmp_path / "local-home")
    assert deploy_if_promoted({"version": version, "promoted": True}, RUN)["reason"] == (
        "local backend: the model server loads a new champion on its next poll")
