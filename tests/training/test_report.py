"""pipelines/training/report.py: the HTML page, its PNG figures and the metrics table, on scorers whose results are known."""

from __future__ import annotations

import re
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from pipelines.training.evaluation import evaluate
from pipelines.training.report import ScoredModel, render_evaluation_report, write_evaluation_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = {"roc.png", "pr.png", "calibration.png", "confusion.png", "importance.png"}
VEHICLES, DAYS = 20, 60  # 1,200 test windows


def windows(seed: int, positive_rate: float = 0.1, first: date = date(2026, 3, 1)) -> pd.DataFrame:
    """VEHICLES x DAYS windows with seeded random labels (no probability yet)."""
    rng = np.random.default_rng(seed)
    vins = [f"LSVTEST{i:010d}" for i in range(VEHICLES)]
    days = [first + timedelta(days=d) for d in range(DAYS)]
    frame = pd.DataFrame({"vin": np.repeat(vins, DAYS), "as_of": np.tile(days, VEHICLES)})
    return frame.assign(label=(rng.random(len(frame)) < positive_rate).astype(int))


def perfect(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Every positive window scores 0.8-0.9, every negative 0-0.1: AUC and AP are 1."""
    noise = np.random.default_rng(seed).random(len(rows)) * 0.1
    return rows.assign(probability=np.where(rows["label"] == 1, 0.8, 0.0) + noise)


def weak(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Scores that lean towards positives but overlap a lot."""
    rng = np.random.default_rng(seed)
    return rows.assign(probability=np.clip(0.3 * rows["label"] + 0.7 * rng.random(len(rows)), 0, 1))


def table_row(html: str, label: str) -> list[str]:
    """The cells of one metrics row, in model order."""
    row = re.search(rf'<tr><th scope="row">{re.escape(label)}</th>(.*?)</tr>', html)
    assert row, f"no metrics row {label!r}"
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))


def image_sources(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


@pytest.fixture(scope="module")
def three_models() -> list[ScoredModel]:
    """The new version (a perfect scorer), the reference recipe and a champion with three NaN probabilities."""
    validation, test = windows(seed=1, first=date(2026, 1, 1)), windows(seed=2)
    subject_test = perfect(test, 3)
    alarm_days = {vin: [date(2026, 4, 10)] for vin in test["vin"].unique()[:4]}
    subject = evaluate(perfect(validation, 4), subject_test, target_precision=0.5, alarm_days=alarm_days)
    reference_test = weak(test, 5)
    reference = evaluate(weak(validation, 6), reference_test, target_precision=0.5)
    champion_test = weak(test, 7)
    champion = evaluate(weak(validation, 8), champion_test, target_precision=0.5)
    # NaN probabilities that the evaluation never saw: the figures leave them out and say how many.
    champion_scored = pd.concat([champion_test, test.head(3).assign(probability=np.nan)], ignore_index=True)
    importance = {f"feature_{i:02d}": float(i) for i in range(25)}
    return [
        ScoredModel("challenger full 20261122T1015Z-full-ab12cd", subject_test, subject.to_dict(), importance),
        ScoredModel("reference recipe", reference_test, reference.to_dict()),
        ScoredModel("champion (current)", champion_scored, champion.to_dict()),
    ]


CARD = {
    "version": "20261122T1015Z-full-ab12cd", "feature_set": "signals6", "feature_names": ["a_lag1", "b_lag1"],
    "training_data": {"first_as_of": "2026-01-01", "last_as_of": "2026-02-05", "train_rows": 12345},
    "split": {"validation_start": "2026-02-20", "test_start": "2026-03-20", "gap_days": 14},
    "threshold": 0.8123, "target_precision": 0.5, "library_versions": {"xgboost": "3.0.0"},
    "source_commit": "e91a64f", "created_at": "2026-11-22T10:15:00Z",
    "decision": {"promoted": False, "reason": "AP gain below the margin", "challenger_ap": 0.612,
                 "champion_ap": 0.605, "margin": 0.01},
}


@pytest.fixture(scope="module")
def report(three_models) -> dict[str, bytes]:
    return render_evaluation_report(three_models, CARD)


def test_every_image_on_the_page_is_a_png_in_the_result(report) -> None:
    html = report["index.html"].decode()
    sources = image_sources(html)
    assert set(sources) == FIGURES and len(sources) == len(FIGURES)
    assert set(report) == FIGURES | {"index.html"}
    for name in sources:
        assert report[name].startswith(PNG_SIGNATURE), name
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_metrics_table_puts_the_models_side_by_side(report, three_models) -> None:
    html = report["index.html"].decode()
    headers = re.findall(r'<th scope="col"[^>]*>(.*?)</th>', html)
    assert headers == ["metric"] + [m.name for m in three_models]
    evaluations = [m.evaluation for m in three_models]
    assert table_row(html, "ROC AUC")[0] == "1.000"
    assert table_row(html, "ROC AUC")[1:] == [f"{e['roc_auc']:.3f}" for e in evaluations[1:]]
    assert table_row(html, "Average precision") == ["1.000"] + [f"{e['average_precision']:.3f}"
                                                               for e in evaluations[1:]]
    assert table_row(html, "Alarm threshold (probability ≥)") == [f"{e['threshold']['threshold']:.3f}"
                                                                 for e in evaluations]
    at = evaluations[0]["at_threshold"]
    assert table_row(html, "TP / FP / FN / TN")[0] == f"{at['tp']} / {at['fp']} / {at['fn']} / {at['tn']:,}"
    assert at["fp"] == 0 and table_row(html, "Precision at threshold")[0] == "1.000"
    positives = evaluations[0]["positive_windows"]
    assert table_row(html, "Test windows / positives") == [f"1,200 / {positives}"] * 3
    vehicles = evaluations[0]["vehicles"]
    assert table_row(html, "Faulty vehicles caught / total")[0].startswith(
        f"{vehicles['faulty_caught']} / {vehicles['faulty_vehicles']} (")
    lead = evaluations[0]["lead_time"]
    assert lead["alarmed_vehicles"] == 4
    assert table_row(html, "Median lead time (days)") == [
        f"{lead['median_lead_days']:.1f} ({lead['warned_in_time']} of 4 warned)", "—", "—"]
    assert table_row(html, "Windows left out of the figures (no probability / no label)") == [
        "0 / 0", "0 / 0", "3 / 0"]


def test_page_shows_the_card_the_decision_and_what_was_left_out(report) -> None:
    html = report["index.html"].decode()
    assert "<title>CellGuard model 20261122T1015Z-full-ab12cd</title>" in html
    assert "Not promoted" in html and "AP gain below the margin" in html
    assert "challenger AP 0.612 · champion AP 0.605 · required margin 0.010" in html
    assert "<dd>0.812 (precision target 0.500)</dd>" in html
    assert "12,345 training windows" in html and "gap 14 days" in html and "signals6 (2 features)" in html
    assert "champion (current): 3 test windows without a probability (NaN) are left out" in html
    assert "The 20 features" in html  # 25 given, the top 20 drawn
    assert html.count("<figcaption>") == len(FIGURES)


def test_a_single_class_test_set_with_one_model_and_no_card_renders() -> None:
    validation, test = windows(seed=11, first=date(2026, 1, 1)), windows(seed=12).assign(label=0)
    quiet = perfect(test, 13)
    evaluation = evaluate(perfect(validation, 14), quiet).to_dict()
    assert evaluation["roc_auc"] is None
    files = render_evaluation_report([ScoredModel("quiet fleet", quiet, evaluation, importance={})], {})
    html = files["index.html"].decode()
    assert table_row(html, "ROC AUC") == ["—"] and table_row(html, "Average precision") == ["—"]
    assert "<title>CellGuard model —</title>" in html and "compared with no other model" in html
    assert "importance chart is left out" in html and "importance.png" not in files
    assert "quiet fleet: no positive window among the scored test windows" in html
    assert set(image_sources(html)) == FIGURES - {"importance.png"} == set(files) - {"index.html"}
    assert all(files[name].startswith(PNG_SIGNATURE) for name in image_sources(html))
    assert "class=\"decision" not in html  # no decision in the card, no banner


def test_text_is_escaped_and_the_report_is_written(tmp_path, three_models) -> None:
    hostile = "<script>alert('x')</script>"
    model = ScoredModel(hostile, three_models[1].scored, three_models[1].evaluation, {hostile: 1.0, "$x$": 2.0})
    card = {"version": "<b>v1</b>", "decision": {"promoted": True, "reason": hostile, "champion": "v0"}}
    index = write_evaluation_report(tmp_path / "report", [model], card)
    assert index == tmp_path / "report" / "index.html"
    html = index.read_text(encoding="utf-8")
    assert "<script>" not in html and "<b>v1</b>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html and "CellGuard model &lt;b&gt;v1&lt;/b&gt;" in html
    assert "Promoted to champion" in html and "challenger AP — · champion v0 AP —" in html
    written = {p.name for p in index.parent.iterdir()}
    assert written == FIGURES | {"index.html"}  # no temporary files left behind
    assert all((index.parent / name).read_bytes().startswith(PNG_SIGNATURE) for name in image_sources(html))


def test_no_figure_is_left_open(report) -> None:
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_scored_windows_without_a_probability_column_are_an_error_that_names_it() -> None:
    model = ScoredModel("broken", pd.DataFrame({"vin": ["V"], "as_of": [date(2026, 3, 1)], "label": [1]}), {})
    with pytest.raises(ValueError, match="'broken'.*lack column.*probability"):
        render_evaluation_report([model], {})
    with pytest.raises(ValueError, match="no models"):
        render_evaluation_report([], {})
