"""pipelines/training/registry.py: versions, cards, champions and promotion decisions in a real local lake."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, date, datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from pipelines.config import load_settings
from pipelines.storage.lake import Lake
from pipelines.training.registry import (
    ModelVersionNotFound,
    champion,
    champion_pointer,
    decide,
    list_versions,
    load_version,
    model_card,
    new_version_id,
    promotion_margin,
    record_decision,
    register,
)
from pipelines.training.train import load_booster, model_metadata, predict, train_booster, write_model

T0 = datetime(2026, 11, 22, 10, 15, 0, tzinfo=UTC)
WINDOW = {"start": date(2026, 3, 1), "end": date(2026, 3, 20)}
MARGIN_VARIABLE = "CELLGUARD_PROMOTION_AP_MARGIN"


def tiny_archive(tmp: Path, seed: int) -> bytes:
    """A real model.tar.gz from train.py: two rounds on 40 random rows of 3 features."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    params = {"objective": "binary:logistic", "max_depth": 2, "eta": 0.5, "nthread": 1, "seed": seed}
    booster = train_booster(x, y, params, num_round=2, verbose=False)
    write_model(booster, model_metadata("full", ["a", "b", "c"], None, params, 2, 2), tmp, package=True)
    return (tmp / "model.tar.gz").read_bytes()


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> tuple[bytes, bytes]:
    root = tmp_path_factory.mktemp("archives")
    (root / "a").mkdir(), (root / "b").mkdir()
    return tiny_archive(root / "a", seed=1), tiny_archive(root / "b", seed=2)


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake((tmp_path / "lake").as_uri())


def card_for(version: str, feature_set: str = "full", ap: float = 0.7) -> dict:
    return model_card(
        version=version, feature_set=feature_set, feature_names=["a", "b", "c"],
        training_data={"windows": np.int64(1200), "positives": 37, "first_as_of": date(2026, 1, 1)},
        split={"validation_start": date(2026, 2, 20), "test_start": date(2026, 3, 1)},
        metrics={"average_precision": np.float64(ap), "roc_auc": float("nan")},
        baseline_metrics=None, threshold=np.float32(0.25), target_precision=0.5,
        params={"max_depth": 2, "eta": 0.5}, created_at=T0)


def version_at(minutes: int, feature_set: str = "full", fingerprint: str = "ab12cd34") -> str:
    return new_version_id(T0 + timedelta(minutes=minutes), feature_set, fingerprint)


# ---------------------------------------------------------------------------------------------- version ids


def test_version_ids_are_sortable_deterministic_and_safe_names() -> None:
    assert new_version_id(T0, "full", "AB12CD34ef99") == "20261122t101500z-full-ab12cd34"
    # Another zone, the same instant: the same id; a naive datetime is taken as UTC.
    assert new_version_id(T0.astimezone(timezone(timedelta(hours=8))), "full", "ab12cd34") == "20261122t101500z-full-ab12cd34"
    assert new_version_id(T0.replace(tzinfo=None), "full", "ab12cd34") == "20261122t101500z-full-ab12cd34"
    moments = [T0 + timedelta(seconds=s) for s in (86400 * 40, 1, 0, 59, 3600)]
    ids = [new_version_id(m, "signals6", "0123456789abcdef") for m in moments]
    assert sorted(ids) == [ids[i] for i in sorted(range(len(ids)), key=lambda i: moments[i])]
    for version in ids:
        assert len(version) <= 40 and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", version)


@pytest.mark.parametrize(("feature_set", "fingerprint", "message"), [
    ("full", "xyz", "at least 8 hex characters"),
    ("Full_set", "ab12cd34", "lowercase letters, digits and inner hyphens"),
    ("a-very-long-feature-set", "ab12cd34", "at most 14 characters"),
])
def test_bad_version_id_inputs_are_clear_errors(feature_set, fingerprint, message) -> None:
    with pytest.raises(ValueError, match=message):
        new_version_id(T0, feature_set, fingerprint)


# ---------------------------------------------------------------------------------------------- register


def test_register_writes_archive_report_and_card_last_and_is_idempotent(lake, archives, tmp_path) -> None:
    version = version_at(0)
    card = card_for(version)
    reports = {"index.html": b"<h1>report</h1>", "pr_curve.png": b"\x89PNG fake"}
    registered = register(lake, version, archives[0], card, reports)

    key = "models/bms/20261122t101500z-full-ab12cd34/"
    assert (registered.version, registered.key) == (version, key)
    assert [o.key for o in lake.list("models/")] == [
        key + "card.json", key + "model.tar.gz", key + "report/index.html", key + "report/pr_curve.png"]
    assert lake.read_bytes(key + "report/pr_curve.png") == b"\x89PNG fake"
    card_bytes = lake.read_bytes(key + "card.json")
    assert card_bytes == (json.dumps(registered.card, sort_keys=True, indent=2) + "\n").encode()
    assert registered.card["metrics"] == {"average_precision": 0.7, "roc_auc": None}
    assert registered.card["training_data"] == {"windows": 1200, "positives": 37, "first_as_of": "2026-01-01"}
    assert registered.card["created_at"] == "2026-11-22T10:15:00+00:00"
    assert registered.card["threshold"] == 0.25

    before = {o.key: o.mtime_ns for o in lake.list("models/")}
    assert register(lake, version, archives[0], card, reports) == registered
    assert {o.key: o.mtime_ns for o in lake.list("models/")} == before  # nothing rewritten
    assert lake.read_bytes(key + "card.json") == card_bytes

    # What load_version hands back is the archive SageMaker and load_booster read.
    archive, loaded_card = load_version(lake, version)
    assert archive == archives[0] and loaded_card == registered.card
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.tar.gz").write_bytes(archive)
    booster, meta = load_booster(tmp_path / "model")
    assert meta["feature_names"] == ["a", "b", "c"]
    assert predict(booster, np.zeros((1, 3), dtype=np.float32)).shape == (1,)


def test_a_different_archive_under_a_registered_version_raises(lake, archives) -> None:
    version = version_at(0)
    register(lake, version, archives[0], card_for(version))
    with pytest.raises(ValueError, match=f"model version {version} is already registered .* different model.tar.gz"):
        register(lake, version, archives[1], card_for(version))
    assert load_version(lake, version)[0] == archives[0]


def test_register_rejects_bad_inputs(lake, archives) -> None:
    version = version_at(0)
    with pytest.raises(ValueError, match="its 'version' is '20261122t101600z-full-ab12cd34'"):
        register(lake, version, archives[0], card_for(version_at(1)))
    with pytest.raises(ValueError, match="not a readable model.tar.gz"):
        register(lake, version, b"not a tarball", card_for(version))
    with pytest.raises(ValueError, match="report file name '../escape.html'"):
        register(lake, version, archives[0], card_for(version), {"../escape.html": b"x"})
    with pytest.raises(ValueError, match="not a registry version id"):
        register(lake, "champions", archives[0], card_for(version))
    assert lake.list("models/") == []


def test_list_versions_returns_complete_versions_oldest_first_and_skips_incomplete(lake, archives) -> None:
    later, earlier, signals = version_at(30), version_at(0), version_at(10, "signals6")
    register(lake, later, archives[0], card_for(later))
    register(lake, signals, archives[0], card_for(signals, "signals6"))
    register(lake, earlier, archives[1], card_for(earlier))
    incomplete = version_at(60)  # a run that stopped after the archive
    lake.write_bytes(f"models/bms/{incomplete}/model.tar.gz", archives[0])
    lake.write_bytes(f"models/bms/{incomplete}/report/old.png", b"stale")
    lake.write_bytes("models/bms/champions/full.json", b"{}")

    assert [v.version for v in list_versions(lake)] == [earlier, signals, later]
    assert [v.version for v in list_versions(lake, "full")] == [earlier, later]
    assert [v.card["feature_set"] for v in list_versions(lake, "signals6")] == ["signals6"]

    with pytest.raises(ModelVersionNotFound) as missing:
        load_version(lake, incomplete)
    assert isinstance(missing.value, KeyError) and isinstance(missing.value, FileNotFoundError)
    assert f"model version {incomplete} is not registered in {lake.url('models/bms/')}" in str(missing.value)
    assert later in str(missing.value)

    # Nothing can refer to an incomplete version, so a retry may complete it, even with other bytes.
    assert register(lake, incomplete, archives[1], card_for(incomplete), {"index.html": b"new"}).version == incomplete
    assert load_version(lake, incomplete)[0] == archives[1]
    assert [o.key for o in lake.list(f"models/bms/{incomplete}/report/")] == [f"models/bms/{incomplete}/report/index.html"]


# ---------------------------------------------------------------------------------------------- decide


CHALLENGER, CHAMPION = "20261122t101500z-full-ab12cd34", "20261101t000000z-full-0badcafe"


@pytest.mark.parametrize(("challenger_ap", "champion", "champion_ap", "margin", "promoted", "reason"), [
    (0.5, None, None, 0.02, True, "first model for full (challenger AP 0.500 on 2026-03-01..2026-03-20) → promoted"),
    (None, None, None, 0.02, True, "first model for full (challenger AP undefined on 2026-03-01..2026-03-20) → promoted"),
    (0.712, CHAMPION, 0.735, 0.03, True,
     "challenger AP 0.712 vs champion AP 0.735 on 2026-03-01..2026-03-20: lower by 0.023, within margin 0.030 → promoted"),
    (0.80, CHAMPION, 0.735, 0.03, True,
     "challenger AP 0.800 vs champion AP 0.735 on 2026-03-01..2026-03-20: not lower (margin 0.030) → promoted"),
    (0.650, CHAMPION, 0.735, 0.03, False,
     "challenger AP 0.650 vs champion AP 0.735 on 2026-03-01..2026-03-20: lower by 0.085, more than margin 0.030 "
     f"→ not promoted, {CHAMPION} stays champion"),
    # Exactly at the boundary, where 0.33 - 0.03 in floats is 0.30000000000000004 > 0.3.
    (0.30, CHAMPION, 0.33, 0.03, True,
     "challenger AP 0.300 vs champion AP 0.330 on 2026-03-01..2026-03-20: lower by 0.030, within margin 0.030 → promoted"),
    (0.2999, CHAMPION, 0.33, 0.03, False,
     "challenger AP 0.2999 vs champion AP 0.3300 on 2026-03-01..2026-03-20: lower by 0.0301, more than margin 0.0300 "
     f"→ not promoted, {CHAMPION} stays champion"),
    (None, CHAMPION, 0.735, 0.02, False,
     "challenger AP undefined on 2026-03-01..2026-03-20 (no positive windows in the test set), champion AP 0.735 "
     f"→ not promoted, {CHAMPION} stays champion"),
    (float("nan"), CHAMPION, 0.735, 0.02, False,
     "challenger AP undefined on 2026-03-01..2026-03-20 (no positive windows in the test set), champion AP 0.735 "
     f"→ not promoted, {CHAMPION} stays champion"),
    (0.41, CHAMPION, None, 0.02, True,
     "challenger AP 0.410 vs champion AP undefined on 2026-03-01..2026-03-20 (the champion could not be scored) → promoted"),
])
def test_decide(challenger_ap, champion, champion_ap, margin, promoted, reason) -> None:
    decision = decide("full", CHALLENGER, challenger_ap, champion, champion_ap, margin, WINDOW,
                      datetime(2026, 3, 21, 12, 0, tzinfo=UTC))
    assert (decision.promoted, decision.reason) == (promoted, reason)
    assert decision.to_dict() == {
        "feature_set": "full", "challenger": CHALLENGER, "champion": champion,
        "challenger_ap": None if challenger_ap is None or challenger_ap != challenger_ap else challenger_ap,
        "champion_ap": champion_ap, "margin": margin, "test_window": {"start": "2026-03-01", "end": "2026-03-20"},
        "promoted": promoted, "reason": reason, "decided_at": "2026-03-21T12:00:00+00:00"}


def test_decide_rejects_impossible_figures() -> None:
    with pytest.raises(ValueError, match="challenger average precision 1.2"):
        decide("full", CHALLENGER, 1.2, CHAMPION, 0.5, 0.02, WINDOW, T0)
    with pytest.raises(ValueError, match="promotion margin -0.1"):
        decide("full", CHALLENGER, 0.5, CHAMPION, 0.5, -0.1, WINDOW, T0)
    with pytest.raises(ValueError, match="needs 'start' and 'end' \\(missing end\\)"):
        decide("full", CHALLENGER, 0.5, CHAMPION, 0.5, 0.02, {"start": "2026-03-01"}, T0)


# ---------------------------------------------------------------------------------------------- record_decision


def test_record_decision_moves_the_pointer_only_when_promoted(lake, archives) -> None:
    first, worse, close = version_at(0), version_at(60), version_at(120)
    for version in (first, worse, close):
        register(lake, version, archives[0], card_for(version))
    at = datetime(2026, 11, 23, tzinfo=UTC)
    assert champion(lake, "full") is None

    record_decision(lake, decide("full", first, 0.70, None, None, 0.02, WINDOW, at))
    assert champion_pointer(lake, "full") == {
        "feature_set": "full", "version": first, "promoted_at": "2026-11-23T00:00:00+00:00",
        "average_precision": 0.7, "test_window": {"start": "2026-03-01", "end": "2026-03-20"}, "previous": None}
    assert champion(lake, "full").version == first

    rejected = decide("full", worse, 0.60, first, 0.70, 0.02, WINDOW, at + timedelta(days=1))
    pointer_bytes = lake.read_bytes("models/bms/champions/full.json")
    record_decision(lake, rejected)
    assert lake.read_bytes("models/bms/champions/full.json") == pointer_bytes
    assert champion(lake, "full").version == first
    assert json.loads(lake.read_bytes(f"models/bms/{worse}/decision.json"))["promoted"] is False

    promoted = decide("full", close, 0.69, first, 0.70, 0.02, WINDOW, at + timedelta(days=2))
    record_decision(lake, promoted)
    pointer = champion_pointer(lake, "full")
    assert (pointer["version"], pointer["previous"], pointer["average_precision"]) == (close, first, 0.69)
    assert champion(lake, "full").card["version"] == close
    assert champion(lake, "signals6") is None

    # Re-running the same decision writes the same bytes and nothing else.
    snapshot = {o.key: lake.read_bytes(o.key) for o in lake.list("models/")}
    record_decision(lake, promoted)
    record_decision(lake, rejected)
    assert {o.key: lake.read_bytes(o.key) for o in lake.list("models/")} == snapshot
    decision = json.loads(snapshot[f"models/bms/{close}/decision.json"])
    assert (decision["champion"], decision["challenger_ap"], decision["promoted"]) == (first, 0.69, True)

    # Deciding again once the challenger is champion changes nothing either (the first decision.json stays).
    again = decide("full", close, 0.69, close, 0.69, 0.02, WINDOW, at + timedelta(days=3))
    assert (again.promoted, again.reason) == (True, f"{close} is already the champion for full → nothing to change")
    record_decision(lake, again)
    assert {o.key: lake.read_bytes(o.key) for o in lake.list("models/")} == snapshot

    # A decision taken against a champion that has since been replaced is refused, not applied.
    with pytest.raises(ValueError, match=f"compared it with champion {first}, but .* is now {close}"):
        record_decision(lake, decide("full", worse, 0.70, first, 0.70, 0.02, WINDOW, at))
    assert champion(lake, "full").version == close


def test_record_decision_needs_a_registered_challenger_of_the_same_feature_set(lake, archives) -> None:
    version = version_at(0)
    with pytest.raises(ModelVersionNotFound, match=version):
        record_decision(lake, decide("full", version, 0.7, None, None, 0.02, WINDOW, T0))
    register(lake, version, archives[0], card_for(version))
    with pytest.raises(ValueError, match="card says 'full'"):
        record_decision(lake, decide("signals6", version, 0.7, None, None, 0.02, WINDOW, T0))
    assert lake.list("models/bms/champions/") == []


# ---------------------------------------------------------------------------------------------- settings, card


def test_promotion_margin_setting(monkeypatch) -> None:
    monkeypatch.delenv(MARGIN_VARIABLE, raising=False)
    assert promotion_margin() == 0.02
    monkeypatch.setenv(MARGIN_VARIABLE, "0.05")
    assert (promotion_margin(), load_settings().promotion_ap_margin) == (0.05, 0.05)
    monkeypatch.setenv(MARGIN_VARIABLE, "0")
    assert promotion_margin() == 0.0
    for bad in ("-0.1", "1.5", "nan", "two percent"):
        monkeypatch.setenv(MARGIN_VARIABLE, bad)
        with pytest.raises(ValueError, match=f"CELLGUARD_PROMOTION_AP_MARGIN must be a number between 0 and 1 .*not '{bad}'"):
            load_settings()


def test_model_card_records_library_versions_and_source_commit(monkeypatch) -> None:
    monkeypatch.setenv("CELLGUARD_SOURCE_COMMIT", "0123abc")
    card = card_for(version_at(0))
    assert card["source_commit"] == "0123abc"
    assert card["library_versions"]["xgboost"] == metadata.version("xgboost")
    assert card["library_versions"]["scikit-learn"] == metadata.version("scikit-learn")
    assert set(card["library_versions"]) == {"python", "xgboost", "numpy", "pandas", "pyarrow", "scikit-learn"}
    assert re.fullmatch(r"3\.11\.\d+", card["library_versions"]["python"])
    assert json.loads(json.dumps(card, allow_nan=False)) == card  # plain JSON

    monkeypatch.delenv("CELLGUARD_SOURCE_COMMIT")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    expected = head.stdout.strip() if head.returncode == 0 else "unknown"
    assert card_for(version_at(0))["source_commit"] == expected

    monkeypatch.setenv("PATH", "")  # no git at all: still a card
    assert card_for(version_at(0))["source_commit"] == "unknown"
