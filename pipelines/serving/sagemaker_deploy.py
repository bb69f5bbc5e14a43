"""Deploy a registered model version to a SageMaker real-time endpoint (the `aws` backend's model server).

One version, three resources:

- a **Model** per version, `cellguard-<version>`: the XGBoost framework inference image, the registry's
  `models/bms/<version>/model.tar.gz` as its data and `inference.py` (the file the local model server wraps) as its
  entry point, uploaded as `_sagemaker/code/inference-<sha>.tar.gz`; Batch Transform uses the same Model;
- a new **EndpointConfig** per version and run, `cellguard-<version>-<run id>` (hashed to 63 characters), one
  variant `AllTraffic` on CELLGUARD_SAGEMAKER_ENDPOINT_INSTANCE_TYPE;
- the feature set's **Endpoint**, `cellguard-<feature set>` (the name the local model server answers to as well):
  CreateEndpoint the first time, UpdateEndpoint afterwards, then wait until it is InService on the new config.

Re-running is safe: what exists is reused (a Model is checked to point at the same archive), and an endpoint that
already serves the version's Model is left alone. Old Models and EndpointConfigs stay, so rolling back is an
UpdateEndpoint to an earlier config.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipelines.config import Settings, load_settings
from pipelines.storage.aws import aws_client, resource_name
from pipelines.storage.lake import Lake
from pipelines.training import registry
from pipelines.training.sagemaker_training import (
    CODE_PREFIX,
    SageMakerConfig,
    describe_or_none,
    deterministic_tar_gz,
    region_of,
    s3_lake,
    tag_value,
    upload_once,
    xgboost_image_uri,
)
from pipelines.training.train import ARCHIVE_FILE

log = logging.getLogger(__name__)

ENDPOINT_PREFIX = "cellguard-"  # as the local model server's: `cellguard-<feature set>`
VARIANT = "AllTraffic"
INFERENCE_SOURCE = Path(__file__).resolve().with_name("inference.py")
INFERENCE_PROGRAM = INFERENCE_SOURCE.name
SETTLING = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}


class DeploymentFailed(RuntimeError):
    """The endpoint did not end up InService on the new config; the message holds SageMaker's reason."""


@dataclass(frozen=True)
class Deployment:
    """What a deployment did: the resources' names and whether the endpoint was created, updated or unchanged."""

    version: str
    feature_set: str
    model: str
    endpoint_config: str
    endpoint: str
    action: str  # "created" | "updated" | "unchanged"

    def to_dict(self) -> dict:
        return asdict(self)


def endpoint_name(feature_set: str) -> str:
    """The endpoint serving a feature set's champion: `cellguard-<feature set>`."""
    return resource_name(ENDPOINT_PREFIX.rstrip("-"), feature_set)


def model_name(version: str) -> str:
    """The SageMaker Model of a registry version: `cellguard-<version>` (versions are at most 40 characters)."""
    return resource_name("cellguard", version)


def endpoint_config_name(version: str, run_id: str) -> str:
    """The EndpointConfig a run creates for a version, unique per version and run, at most 63 characters."""
    return resource_name("cellguard", version, run_id)


def inference_code_tarball(source: Path = INFERENCE_SOURCE) -> bytes:
    """inference.py alone at the tarball's root: the container imports it by name (it needs no `pipelines`)."""
    return deterministic_tar_gz([(INFERENCE_PROGRAM, source.read_bytes())])


def model_request(name: str, version: str, *, image: str, role_arn: str, model_data_url: str, code_url: str,
                  region: str) -> dict:
    """The CreateModel request: the framework image running inference.py on the version's archive."""
    return {
        "ModelName": name,
        "ExecutionRoleArn": role_arn,
        "PrimaryContainer": {
            "Image": image,
            "ModelDataUrl": model_data_url,
            "Environment": {"SAGEMAKER_PROGRAM": INFERENCE_PROGRAM, "SAGEMAKER_SUBMIT_DIRECTORY": code_url,
                            "SAGEMAKER_REGION": region, "SAGEMAKER_CONTAINER_LOG_LEVEL": "20"},
        },
        "Tags": [{"Key": "cellguard:model-version", "Value": tag_value(version)}],
    }


def endpoint_config_request(name: str, model: str, instance_type: str, version: str, run_id: str) -> dict:
    """The CreateEndpointConfig request: one variant with all traffic on the version's Model."""
    return {
        "EndpointConfigName": name,
        "ProductionVariants": [{"VariantName": VARIANT, "ModelName": model, "InitialInstanceCount": 1,
                                "InstanceType": instance_type, "InitialVariantWeight": 1.0}],
        "Tags": [{"Key": "cellguard:model-version", "Value": tag_value(version)},
                 {"Key": "cellguard:run-id", "Value": tag_value(run_id)}],
    }


@dataclass
class SageMakerModels:
    """The lake, client and settings every SageMaker Model call here needs."""

    settings: Settings
    config: SageMakerConfig
    lake: Lake
    client: Any
    progress: Callable[[str], None] = log.info

    @classmethod
    def from_settings(cls, settings: Settings | None = None, lake: Lake | None = None, client: Any | None = None,
                      progress: Callable[[str], None] | None = None) -> SageMakerModels:
        """From the configured lake (on S3), role and SageMaker client."""
        settings = settings or load_settings()
        return cls(settings=settings, config=SageMakerConfig.from_environment(), lake=s3_lake(settings, lake),
                   client=client or aws_client("sagemaker", settings), progress=progress or log.info)

    def ensure_model(self, version: str) -> str:
        """The version's SageMaker Model, created unless it exists; an existing one must use the same archive."""
        registry.load_version(self.lake, version)  # a version that is not (completely) registered stops here
        name = model_name(version)
        model_data_url = self.lake.url(registry.version_key(version) + ARCHIVE_FILE)
        existing = describe_or_none(lambda n: self.client.describe_model(ModelName=n))(name)
        if existing is not None:
            used = existing.get("PrimaryContainer", {}).get("ModelDataUrl")
            if used != model_data_url:
                raise ValueError(f"SageMaker model {name} exists but serves {used}, not {model_data_url} (another "
                                 f"lake with the same version ids?): delete the model or deploy from its lake")
            return name
        region = region_of(self.settings, self.client)
        code_url = upload_once(self.lake, f"{CODE_PREFIX}inference", inference_code_tarball())
        self.client.create_model(**model_request(name, version, image=xgboost_image_uri(region, "inference"),
                                                 role_arn=self.config.role_arn, model_data_url=model_data_url,
                                                 code_url=code_url, region=region))
        self.progress(f"created SageMaker model {name} for {version}")
        return name

    def ensure_endpoint_config(self, version: str, model: str, run_id: str) -> str:
        """The run's EndpointConfig for a version, created unless an earlier try of the run made it."""
        name = endpoint_config_name(version, run_id)
        if describe_or_none(lambda n: self.client.describe_endpoint_config(EndpointConfigName=n))(name) is None:
            self.client.create_endpoint_config(**endpoint_config_request(
                name, model, self.config.endpoint_instance_type, version, run_id))
            self.progress(f"created endpoint config {name} ({self.config.endpoint_instance_type})")
        return name

    def served_model(self, endpoint: dict) -> str | None:
        """The Model an endpoint's current config sends its traffic to (None when it has no single model)."""
        config = self.client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        variants = config.get("ProductionVariants") or []
        return variants[0].get("ModelName") if len(variants) == 1 else None

    def settled_endpoint(self, name: str) -> dict:
        """An endpoint's description once it is no longer creating, updating or rolling back."""
        deadline = time.monotonic() + self.config.wait_timeout_s
        last = None
        while True:
            endpoint = self.client.describe_endpoint(EndpointName=name)
            status = endpoint["EndpointStatus"]
            if status != last:
                self.progress(f"endpoint {name}: {status} on {endpoint.get('EndpointConfigName')}")
                last = status
            if status not in SETTLING:
                return endpoint
            if time.monotonic() > deadline:
                raise TimeoutError(f"endpoint {name} still {status} after {self.config.wait_timeout_s:.0f} s; "
                                   f"a retry waits for it again")
            time.sleep(self.config.poll_seconds)


def deploy_version(version: str, run_id: str, models: SageMakerModels | None = None) -> Deployment:
    """Point the version's feature-set endpoint at it (create or update), and wait until it serves it."""
    models = models or SageMakerModels.from_settings()
    _, card = registry.load_version(models.lake, version)
    feature_set = card["feature_set"]
    model = models.ensure_model(version)
    endpoint = endpoint_name(feature_set)
    client, say = models.client, models.progress
    current = describe_or_none(lambda n: client.describe_endpoint(EndpointName=n))(endpoint)
    if current is not None:
        current = models.settled_endpoint(endpoint)
        if current["EndpointStatus"] == "InService" and models.served_model(current) == model:
            say(f"endpoint {endpoint} already serves {version} ({current['EndpointConfigName']})")
            return Deployment(version, feature_set, model, current["EndpointConfigName"], endpoint, "unchanged")
        if current["EndpointStatus"] != "InService":
            raise DeploymentFailed(f"endpoint {endpoint} is {current['EndpointStatus']} "
                                   f"({current.get('FailureReason', 'no reason given')}): SageMaker cannot update it; "
                                   f"delete it and deploy again")
    config = models.ensure_endpoint_config(version, model, run_id)
    if current is None:
        client.create_endpoint(EndpointName=endpoint, EndpointConfigName=config,
                               Tags=[{"Key": "cellguard:feature-set", "Value": tag_value(feature_set)}])
        action = "created"
    else:
        client.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
        action = "updated"
    say(f"{'creating' if action == 'created' else 'updating'} endpoint {endpoint} with {config} ({version})")
    final = models.settled_endpoint(endpoint)
    if final["EndpointStatus"] != "InService" or final["EndpointConfigName"] != config:
        raise DeploymentFailed(f"endpoint {endpoint} is {final['EndpointStatus']} on {final['EndpointConfigName']}, "
                               f"not on {config}: {final.get('FailureReason', 'no reason given')}")
    say(f"endpoint {endpoint} serves {version}")
    return Deployment(version, feature_set, model, config, endpoint, action)


def deploy_if_promoted(trained: dict, run_id: str, settings: Settings | None = None) -> dict:
    """bms_training's deploy step: on `aws`, point the endpoint at a newly promoted champion; on `local` nothing to do.

    `trained` is the train task's result (`version`, `promoted`). The local model server polls the champion
    pointers and swaps models itself, so only a SageMaker endpoint needs telling."""
    settings = settings or load_settings()
    if settings.backend != "aws":
        return {"version": trained["version"], "action": "none",
                "reason": "local backend: the model server loads a new champion on its next poll"}
    if not trained["promoted"]:
        return {"version": trained["version"], "action": "none",
                "reason": "not promoted: the endpoint keeps serving the champion"}
    return deploy_version(trained["version"], run_id, SageMakerModels.from_settings(settings)).to_dict()
