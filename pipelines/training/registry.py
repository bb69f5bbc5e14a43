"""The model registry in the lake: versions under `models/bms/<version>/`, one champion pointer per feature set.

Layout (keys relative to the lake root, every object written atomically by `Lake.write_bytes`):

    models/bms/<version>/model.tar.gz       the archive training produced (`xgboost-model` inside)
    models/bms/<version>/report/<file>      evaluation report files (index.html, PNGs)
    models/bms/<version>/card.json          the model card, written last: a version with a card is complete
    models/bms/<version>/decision.json      the promotion decision taken for this version
    models/bms/champions/<feature_set>.json the champion pointer of a feature set

JSON is written with sorted keys and an indent of 2, so writing the same content again gives the same bytes.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import posixpath
import re
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path, PurePath

import numpy as np
import pandas as pd

from pipelines.config import load_settings
from pipelines.storage.lake import Lake
from pipelines.training.train import ARCHIVE_FILE, MODEL_FILE

PREFIX = "models/bms/"
CHAMPIONS_PREFIX = f"{PREFIX}champions/"
CARD_FILE = "card.json"
DECISION_FILE = "decision.json"
REPORT_FOLDER = "report"
SOURCE_COMMIT_VARIABLE = "CELLGUARD_SOURCE_COMMIT"
LIBRARIES = ("xgboost", "numpy", "pandas", "pyarrow", "scikit-learn")
MAX_VERSION_LENGTH = 40  # leaves room in SageMaker's 63-character names for a prefix such as "cellguard-"

# Lowercase letters, digits and single inner hyphens: safe in a lake key and in a SageMaker name.
_NAME = r"[a-z0-9]+(?:-[a-z0-9]+)*"
FEATURE_SET_PATTERN = re.compile(rf"^{_NAME}$")
VERSION_PATTERN = re.compile(rf"^\d{{8}}t\d{{6}}z-{_NAME}-[0-9a-f]{{8}}$")
_REPORT_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_AP_TOLERANCE = 1e-9  # AP figures are sums of float ratios: "exactly at the margin" must not hinge on rounding


class ModelVersionNotFound(KeyError, FileNotFoundError):
    """A model version (or its card) is not in the lake."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class ModelVersion:
    """A complete registered version: its id, its card, and its folder key (`models/bms/<version>/`)."""

    version: str
    card: dict
    key: str


@dataclass(frozen=True)
class PromotionDecision:
    """Whether a challenger replaces the champion of its feature set, on one test window, and why."""

    feature_set: str
    challenger: str
    champion: str | None
    challenger_ap: float | None
    champion_ap: float | None
    margin: float
    test_window: dict
    promoted: bool
    reason: str
    decided_at: str

    def to_dict(self) -> dict:
        """Plain JSON-ready fields."""
        return plain_json(asdict(self))


# ---------------------------------------------------------------------------------------------- ids and keys


def new_version_id(created_at: datetime, feature_set: str, fingerprint: str) -> str:
    """A sortable version id such as "20261122t101500z-full-ab12cd34" (UTC second, feature set, 8 hex of fingerprint)."""
    _check_feature_set(feature_set)
    short = fingerprint.strip().lower()[:8]
    if not re.fullmatch(r"[0-9a-f]{8}", short):
        raise ValueError(f"fingerprint {fingerprint!r}: expected at least 8 hex characters (e.g. the archive's sha256)")
    version = f"{_utc(created_at).strftime('%Y%m%dt%H%M%Sz')}-{feature_set}-{short}"
    _check_version(version)
    return version


def version_key(version: str) -> str:
    """The folder key of a version: `models/bms/<version>/`."""
    _check_version(version)
    return f"{PREFIX}{version}/"


def champion_key(feature_set: str) -> str:
    """The key of a feature set's champion pointer."""
    _check_feature_set(feature_set)
    return f"{CHAMPIONS_PREFIX}{feature_set}.json"


def _check_feature_set(feature_set: str) -> None:
    if not isinstance(feature_set, str) or not FEATURE_SET_PATTERN.match(feature_set):
        raise ValueError(f"feature set {feature_set!r}: use lowercase letters, digits and inner hyphens (e.g. 'signals6')")
    if len(feature_set) > MAX_VERSION_LENGTH - 26:
        raise ValueError(f"feature set {feature_set!r}: at most {MAX_VERSION_LENGTH - 26} characters fit in a version id")


def _check_version(version: str) -> None:
    if not isinstance(version, str) or len(version) > MAX_VERSION_LENGTH or not VERSION_PATTERN.match(version):
        raise ValueError(f"model version {version!r} is not a registry version id "
                         f"(like '20261122t101500z-full-ab12cd34', at most {MAX_VERSION_LENGTH} characters): "
                         f"make it with new_version_id()")


def _utc(moment: datetime) -> datetime:
    """A datetime in UTC; naive datetimes are taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ---------------------------------------------------------------------------------------------- JSON


def plain_json(value: object, where: str = "value") -> object:
    """`value` as plain JSON types: dates as ISO strings, numpy scalars and arrays unwrapped, NaN and ±inf as null."""
    if value is None or isinstance(value, bool | str):
        return value
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.datetime64):
        return plain_json(pd.Timestamp(value), where)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, datetime):  # pandas Timestamps too
        return _utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, np.ndarray):
        return plain_json(value.tolist(), where)
    if isinstance(value, Mapping):
        return {str(k): plain_json(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        return sorted(plain_json(v, where) for v in value)
    if hasattr(value, "to_dict"):
        return plain_json(value.to_dict(), where)
    if is_dataclass(value) and not isinstance(value, type):
        return plain_json(asdict(value), where)
    raise TypeError(f"{where}: {type(value).__name__} {value!r} has no JSON form")


def json_bytes(value: object) -> bytes:
    """Deterministic JSON bytes: plain types, sorted keys, indent 2, trailing newline."""
    return (json.dumps(plain_json(value), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def _read_json(lake: Lake, key: str) -> dict:
    return json.loads(lake.read_bytes(key))


# ---------------------------------------------------------------------------------------------- model card


def model_card(*, version: str, feature_set: str, feature_names: list[str], training_data: dict, split: dict,
               metrics: dict, baseline_metrics: dict | None, threshold: float, target_precision: float,
               params: dict, created_at: datetime) -> dict:
    """The model card of a version as plain JSON, with the library versions and the source commit added."""
    _check_version(version)
    _check_feature_set(feature_set)
    card = {
        "version": version, "feature_set": feature_set, "feature_names": list(feature_names),
        "training_data": training_data, "split": split, "metrics": metrics, "baseline_metrics": baseline_metrics,
        "threshold": threshold, "target_precision": target_precision, "params": params, "created_at": created_at,
        "library_versions": library_versions(), "source_commit": source_commit(),
    }
    return plain_json(card, "card")


def library_versions() -> dict[str, str | None]:
    """Python's version and the installed versions of the libraries a model depends on (None if absent)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def source_commit() -> str:
    """CELLGUARD_SOURCE_COMMIT if set, else `git rev-parse HEAD` of this checkout, else "unknown"; never fails."""
    commit = os.environ.get(SOURCE_COMMIT_VARIABLE, "").strip()
    if commit:
        return commit
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                                capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):  # no git (e.g. in a SageMaker container), or it hung
        return "unknown"
    head = result.stdout.strip()
    return head if result.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", head) else "unknown"


# ---------------------------------------------------------------------------------------------- versions


def register(lake: Lake, version: str, archive: bytes, card: dict,
             report_files: dict[str, bytes] | None = None) -> ModelVersion:
    """Write a version's archive, report files and card (last); idempotent for the same archive bytes."""
    key = version_key(version)
    card = plain_json(card, "card")
    if card.get("version") != version:
        raise ValueError(f"card for {version}: its 'version' is {card.get('version')!r}; they must match")
    if "feature_set" not in card:
        raise ValueError(f"card for {version} has no 'feature_set': build it with model_card()")
    _check_feature_set(card["feature_set"])
    _check_archive(version, archive)
    reports = {_report_name(version, name): bytes(data) for name, data in (report_files or {}).items()}

    archive_key, card_key = key + ARCHIVE_FILE, key + CARD_FILE
    if lake.exists(card_key):
        if lake.read_bytes(archive_key) != archive:
            raise ValueError(f"model version {version} is already registered in {lake.url(key)} with a different "
                             f"{ARCHIVE_FILE}; a new model needs a new version id (new_version_id with its fingerprint)")
        return ModelVersion(version, _read_json(lake, card_key), key)

    # No card: never registered, or an earlier attempt stopped part-way. Nothing can refer to an incomplete
    # version (list_versions and load_version skip it), so it is written afresh.
    report_prefix = f"{key}{REPORT_FOLDER}/"
    for stale in lake.list(report_prefix):
        if stale.key[len(report_prefix):] not in reports:
            lake.delete(stale.key)
    lake.write_bytes(archive_key, archive)
    for name, data in sorted(reports.items()):
        lake.write_bytes(report_prefix + name, data)
    lake.write_bytes(card_key, json_bytes(card))
    return ModelVersion(version, json.loads(json_bytes(card)), key)


def _check_archive(version: str, archive: bytes) -> None:
    """The archive must be a gzipped tar holding `xgboost-model`, as training writes it and SageMaker expects."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            names = tar.getnames()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ValueError(f"model version {version}: the archive is not a readable {ARCHIVE_FILE} ({error})") from None
    if MODEL_FILE not in names:
        raise ValueError(f"model version {version}: the archive holds {names}, not {MODEL_FILE!r}")


def _report_name(version: str, name: str) -> str:
    """A report file's relative name, checked to stay inside the version's report folder."""
    parts = str(name).split("/")
    if not all(_REPORT_SEGMENT.match(p) and p not in (".", "..") for p in parts) or ".tmp-" in name:
        raise ValueError(f"model version {version}: report file name {name!r} must be a relative path of "
                         f"letters, digits, '_', '.' and '-' (e.g. 'index.html', 'pr_curve.png')")
    return posixpath.join(*parts)


def list_versions(lake: Lake, feature_set: str | None = None) -> list[ModelVersion]:
    """Complete versions (card present), of one feature set if given, oldest first."""
    if feature_set is not None:
        _check_feature_set(feature_set)
    found = []
    for info in lake.list(PREFIX):
        folder, _, name = info.key[len(PREFIX):].partition("/")
        if name != CARD_FILE or not VERSION_PATTERN.match(folder):
            continue
        card = _read_json(lake, info.key)
        if feature_set is None or card.get("feature_set") == feature_set:
            found.append(ModelVersion(folder, card, f"{PREFIX}{folder}/"))
    return sorted(found, key=lambda v: v.version)


def load_version(lake: Lake, version: str) -> tuple[bytes, dict]:
    """A complete version's archive bytes and card."""
    key = version_key(version)
    if not lake.exists(key + CARD_FILE) or not lake.exists(key + ARCHIVE_FILE):
        present = [v.version for v in list_versions(lake)]
        listed = ", ".join(present[-5:]) if present else "none"
        raise ModelVersionNotFound(f"model version {version} is not registered in {lake.url(PREFIX)} (no complete "
                                   f"{CARD_FILE} + {ARCHIVE_FILE}); latest registered: {listed}")
    return lake.read_bytes(key + ARCHIVE_FILE), _read_json(lake, key + CARD_FILE)


def champion_pointer(lake: Lake, feature_set: str) -> dict | None:
    """The champion pointer of a feature set as stored, or None before the first promotion."""
    key = champion_key(feature_set)
    return _read_json(lake, key) if lake.exists(key) else None


def champion(lake: Lake, feature_set: str) -> ModelVersion | None:
    """The current champion version of a feature set, or None if none was promoted yet."""
    pointer = champion_pointer(lake, feature_set)
    if pointer is None:
        return None
    version = pointer["version"]
    _, card = load_version(lake, version)
    return ModelVersion(version, card, version_key(version))


# ---------------------------------------------------------------------------------------------- promotion


def promotion_margin() -> float:
    """How much lower a challenger's average precision may be and still replace the champion (settings)."""
    return load_settings().promotion_ap_margin


def decide(feature_set: str, challenger: str, challenger_ap: float | None, champion: str | None,
           champion_ap: float | None, margin: float, test_window: dict, decided_at: datetime) -> PromotionDecision:
    """Promote the challenger unless its AP on the champion's test window is lower by more than `margin`."""
    _check_feature_set(feature_set)
    _check_version(challenger)
    if champion is not None:
        _check_version(champion)
    if not 0.0 <= margin <= 1.0:  # also rejects NaN
        raise ValueError(f"promotion margin {margin!r}: must be between 0 and 1")
    challenger_ap, champion_ap = _ap("challenger", challenger_ap), _ap("champion", champion_ap)
    window = _window(test_window)
    on = f"on {window['start']}..{window['end']}"

    if champion is None:
        promoted, reason = True, f"first model for {feature_set} (challenger AP {_fmt(challenger_ap)} {on}) → promoted"
    elif champion == challenger:
        promoted, reason = True, f"{challenger} is already the champion for {feature_set} → nothing to change"
    elif challenger_ap is None:
        promoted, reason = False, (f"challenger AP undefined {on} (no positive windows in the test set), champion AP "
                                   f"{_fmt(champion_ap)} → not promoted, {champion} stays champion")
    elif champion_ap is None:
        promoted, reason = True, (f"challenger AP {_fmt(challenger_ap)} vs champion AP undefined {on} "
                                  f"(the champion could not be scored) → promoted")
    else:
        shortfall = champion_ap - challenger_ap
        promoted = shortfall <= margin + _AP_TOLERANCE
        digits = 3
        while not promoted and digits < 6 and f"{shortfall:.{digits}f}" == f"{margin:.{digits}f}":
            digits += 1  # "lower by 0.030, more than margin 0.030" would read as a contradiction
        reason = (f"challenger AP {_fmt(challenger_ap, digits)} vs champion AP {_fmt(champion_ap, digits)} {on}: "
                  + (f"not lower (margin {margin:.{digits}f}) → promoted" if shortfall <= 0 else
                     f"lower by {shortfall:.{digits}f}, within margin {margin:.{digits}f} → promoted" if promoted else
                     f"lower by {shortfall:.{digits}f}, more than margin {margin:.{digits}f} → not promoted, "
                     f"{champion} stays champion"))
    return PromotionDecision(feature_set=feature_set, challenger=challenger, champion=champion,
                             challenger_ap=challenger_ap, champion_ap=champion_ap, margin=float(margin),
                             test_window=window, promoted=promoted, reason=reason,
                             decided_at=_utc(decided_at).isoformat())


def _ap(role: str, value: float | None) -> float | None:
    """An average precision in [0, 1], or None when undefined (NaN counts as undefined)."""
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return None
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{role} average precision {value!r}: must be between 0 and 1, or None when undefined")
    return value


def _window(test_window: dict) -> dict:
    missing = {"start", "end"} - set(test_window)
    if missing:
        raise ValueError(f"test window {test_window!r}: needs 'start' and 'end' (missing {', '.join(sorted(missing))})")
    return {"start": plain_json(test_window["start"]), "end": plain_json(test_window["end"])}


def _fmt(ap: float | None, digits: int = 3) -> str:
    return "undefined" if ap is None else f"{ap:.{digits}f}"


def record_decision(lake: Lake, decision: PromotionDecision) -> None:
    """Write the challenger's decision.json and, if promoted, point the champion at it; re-running changes nothing."""
    _, card = load_version(lake, decision.challenger)
    if card.get("feature_set") != decision.feature_set:
        raise ValueError(f"decision for {decision.challenger} is about feature set {decision.feature_set!r}, "
                         f"but the version's card says {card.get('feature_set')!r}")
    decision_key = version_key(decision.challenger) + DECISION_FILE
    pointer = champion_pointer(lake, decision.feature_set)
    current = pointer["version"] if pointer else None

    if decision.promoted and current == decision.challenger:
        # Recorded before (or an "already champion" decision): the pointer keeps its promoted_at and previous,
        # and an earlier decision.json, which holds the actual comparison, is not replaced.
        if decision.champion != decision.challenger or not lake.exists(decision_key):
            lake.write_bytes(decision_key, json_bytes(decision.to_dict()))
        return
    if decision.promoted and current != decision.champion:
        raise ValueError(f"decision to promote {decision.challenger} compared it with champion {decision.champion}, "
                         f"but the {decision.feature_set} champion in {lake.url(champion_key(decision.feature_set))} "
                         f"is now {current}: decide again against the current champion")

    lake.write_bytes(decision_key, json_bytes(decision.to_dict()))
    if decision.promoted:
        lake.write_bytes(champion_key(decision.feature_set), json_bytes({
            "feature_set": decision.feature_set, "version": decision.challenger, "promoted_at": decision.decided_at,
            "average_precision": decision.challenger_ap, "test_window": decision.test_window,
            "previous": decision.champion,
        }))
