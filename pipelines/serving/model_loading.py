"""Load a registered model version from the lake as a SageMaker endpoint would: unpack model.tar.gz, call model_fn."""

from __future__ import annotations

import io
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipelines.serving.inference import CellGuardModel, model_fn
from pipelines.storage.lake import Lake
from pipelines.training import registry


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score: its registry version and card, and the inference.py model object."""

    version: str
    feature_set: str
    model: CellGuardModel
    card: dict = field(repr=False)
    loaded_at: datetime


def unpack_archive(archive: bytes, folder: Path) -> list[str]:
    """Extract a model.tar.gz into a folder (regular files only, nothing outside it); returns the member names."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")
        return tar.getnames()


def load_registered(lake: Lake, version: str) -> LoadedModel:
    """A registered version fully loaded in memory, checked against its card."""
    archive, card = registry.load_version(lake, version)
    with tempfile.TemporaryDirectory(prefix="cellguard-model-") as folder:
        unpack_archive(archive, Path(folder))
        model = model_fn(folder)  # the booster lives in memory: the folder can go
    feature_set = card.get("feature_set")
    if model.feature_set != feature_set:
        raise ValueError(f"model version {version}: the card says feature set {feature_set!r}, "
                         f"the archive's feature_names.json says {model.feature_set!r}")
    if list(model.feature_names) != list(card.get("feature_names", model.feature_names)):
        raise ValueError(f"model version {version}: feature_names.json and card.json list different features")
    return LoadedModel(version=version, feature_set=feature_set, model=model, card=card, loaded_at=datetime.now(UTC))
