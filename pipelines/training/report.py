"""The evaluation report of one model version: an HTML page and the PNG figures beside it.

`models[0]` is the version the report is about; every other model (the reference recipe, the current
champion) is drawn on the same axes and gets its own column in the metrics table. The table reads the
`Evaluation.to_dict()` of each model; the figures are drawn from its scored test windows.
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, StrictUndefined

from pipelines.features.window_signals import HORIZON_DAYS

MISSING = "—"
FIGURE_DPI = 110
TOP_FEATURES = 20
# One colour per model, in order; models[0] is also drawn thicker and on top.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#7f7f7f", "#9467bd", "#8c564b", "#e377c2", "#17becf")

ROC_FILE, PR_FILE, CALIBRATION_FILE = "roc.png", "pr.png", "calibration.png"
CONFUSION_FILE, IMPORTANCE_FILE, INDEX_FILE = "confusion.png", "importance.png", "index.html"


@dataclass(frozen=True)
class ScoredModel:
    """One model's scored test windows, its evaluation and (optionally) its feature importance."""

    name: str
    scored: pd.DataFrame  # vin, as_of, label (0/1), probability
    evaluation: dict  # Evaluation.to_dict()
    importance: dict[str, float] | None = None  # feature -> total gain


@dataclass(frozen=True)
class _Windows:
    """A model's labelled windows with a finite probability, and how many were left out."""

    labels: np.ndarray
    probabilities: np.ndarray
    without_probability: int
    without_label: int

    @property
    def positives(self) -> int:
        return int(self.labels.sum())

    @property
    def both_classes(self) -> bool:
        return 0 < self.positives < len(self.labels)


@dataclass(frozen=True)
class _Figure:
    file: str
    title: str
    caption: str


# ------------------------------------------------------------------------------------------------ formatting


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _rate(value: Any) -> str:
    number = _number(value)
    return MISSING if number is None else f"{number:.3f}"


def _threshold(value: Any) -> str:
    number = _number(value)
    if number is None:
        return MISSING
    # Thresholds of rare-event models can sit below 0.001, where three decimals would print 0.000.
    return f"{number:.1e}" if 0 < abs(number) < 0.001 else f"{number:.3f}"


def _per_thousand(value: Any) -> str:
    number = _number(value)
    return MISSING if number is None else f"{number:,.2f}"


def _count(value: Any) -> str:
    number = _number(value)
    return MISSING if number is None else f"{round(number):,}"


def _text(value: Any) -> str:
    """Any card value as short text: counts with separators, rates with 3 decimals, None as a dash."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return _rate(value)
    if isinstance(value, Mapping):
        return " · ".join(f"{k} {_text(v)}" for k, v in value.items()) or MISSING
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or MISSING
    return str(value)


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _plain(label: str) -> str:
    """A label matplotlib draws as typed: no mathtext from `$`, and not hidden from the legend by a leading `_`."""
    label = label.replace("$", r"\$")
    return f" {label}" if label.startswith("_") else label


# ------------------------------------------------------------------------------------------------- the data


def _evaluation(model: ScoredModel) -> dict:
    evaluation = model.evaluation
    return evaluation.to_dict() if hasattr(evaluation, "to_dict") else dict(evaluation or {})


def _windows(model: ScoredModel) -> _Windows:
    absent = [c for c in ("label", "probability") if c not in model.scored.columns]
    if absent:
        raise ValueError(f"model {model.name!r}: scored windows lack column(s) {', '.join(absent)}; "
                         f"columns: {', '.join(map(str, model.scored.columns[:8])) or 'none'}")

    def floats(column: str) -> np.ndarray:
        values = pd.to_numeric(model.scored[column], errors="coerce").astype("Float64")
        return values.to_numpy(dtype=float, na_value=np.nan)

    labels, probabilities = floats("label"), floats("probability")
    has_probability, has_label = np.isfinite(probabilities), np.isfinite(labels)
    keep = has_probability & has_label
    return _Windows((labels[keep] == 1).astype(float), probabilities[keep],
                    int((~has_probability).sum()), int((has_probability & ~has_label).sum()))


def _model_threshold(evaluation: dict) -> float | None:
    threshold = _number(_get(evaluation, "threshold", "threshold"))
    return threshold if threshold is not None else _number(_get(evaluation, "at_threshold", "threshold"))


def _metrics_rows(evaluations: list[dict], windows: list[_Windows]) -> list[tuple[str, list[str]]]:
    """Rows of the metrics table: a label and one formatted cell per model."""

    def target(ev: dict) -> str:
        goal, met = _get(ev, "threshold", "target_precision"), _get(ev, "threshold", "target_met")
        if _number(goal) is None:
            return MISSING
        return f"{_rate(goal)}, {'met' if met else 'not met'}" if isinstance(met, bool) else _rate(goal)

    def confusion(ev: dict) -> str:
        counts = [_get(ev, "at_threshold", k) for k in ("tp", "fp", "fn", "tn")]
        return MISSING if all(c is None for c in counts) else " / ".join(_count(c) for c in counts)

    def share(part: Any, whole: Any) -> str:
        if _number(whole) is None:
            return MISSING
        fraction = f" ({_number(part) / _number(whole):.3f})" if _number(part) is not None and _number(whole) else ""
        return f"{_count(part)} / {_count(whole)}{fraction}"

    def lead(ev: dict) -> str:
        lead_time = ev.get("lead_time")
        if not isinstance(lead_time, Mapping):
            return MISSING
        median = _number(lead_time.get("median_lead_days"))
        warned, alarmed = lead_time.get("warned_in_time"), lead_time.get("alarmed_vehicles")
        base = MISSING if median is None else f"{median:.1f}"
        return f"{base} ({_count(warned)} of {_count(alarmed)} warned)" if alarmed is not None else base

    rows: list[tuple[str, list[str]]] = [
        ("ROC AUC", [_rate(ev.get("roc_auc")) for ev in evaluations]),
        ("Average precision", [_rate(ev.get("average_precision")) for ev in evaluations]),
        ("Alarm threshold (probability ≥)", [_threshold(_model_threshold(ev)) for ev in evaluations]),
        ("Precision target on validation", [target(ev) for ev in evaluations]),
        ("Precision at threshold", [_rate(_get(ev, "at_threshold", "precision")) for ev in evaluations]),
        ("Recall at threshold", [_rate(_get(ev, "at_threshold", "recall")) for ev in evaluations]),
        ("F1 at threshold", [_rate(_get(ev, "at_threshold", "f1")) for ev in evaluations]),
        ("TP / FP / FN / TN", [confusion(ev) for ev in evaluations]),
        ("False alarms per 1,000 vehicle-days",
         [_per_thousand(ev.get("false_alarms_per_1000_vehicle_days")) for ev in evaluations]),
        ("Faulty vehicles caught / total",
         [share(_get(ev, "vehicles", "faulty_caught"), _get(ev, "vehicles", "faulty_vehicles"))
          for ev in evaluations]),
        ("Healthy vehicles falsely alarmed / total",
         [share(_get(ev, "vehicles", "healthy_alarmed"), _get(ev, "vehicles", "healthy_vehicles"))
          for ev in evaluations]),
        ("Median lead time (days)", [lead(ev) for ev in evaluations]),
        ("Test windows / positives",
         [MISSING if ev.get("windows") is None else f"{_count(ev.get('windows'))} / {_count(ev.get('positive_windows'))}"
          for ev in evaluations]),
    ]
    if any(w.without_probability or w.without_label for w in windows):
        rows.append(("Windows left out of the figures (no probability / no label)",
                     [f"{w.without_probability:,} / {w.without_label:,}" for w in windows]))
    return rows


def _card_rows(card: Mapping) -> list[tuple[str, str]]:
    """The model card as (term, text) pairs; absent values read as a dash."""
    training, split = card.get("training_data"), card.get("split")
    names = card.get("feature_names")
    feature_set = _text(card.get("feature_set"))
    if isinstance(names, list | tuple):
        feature_set = f"{feature_set} ({len(names):,} features)"

    def extras(section: Any, shown: set[str]) -> str:
        rest = {k: v for k, v in section.items() if k not in shown} if isinstance(section, Mapping) else {}
        return "".join(f" · {str(k).replace('_', ' ')} {_text(v)}" for k, v in rest.items())

    training_text = split_text = MISSING
    if isinstance(training, Mapping):
        training_text = (f"as_of {_text(training.get('first_as_of'))} to {_text(training.get('last_as_of'))}"
                         f" · {_count(training.get('train_rows'))} training windows"
                         + extras(training, {"first_as_of", "last_as_of", "train_rows"}))
    if isinstance(split, Mapping):
        split_text = (f"validation from {_text(split.get('validation_start'))}"
                      f" · test from {_text(split.get('test_start'))}"
                      f" · gap {_text(split.get('gap_days'))} days"
                      + extras(split, {"validation_start", "test_start", "gap_days"}))
    threshold = _threshold(card.get("threshold"))
    if _number(card.get("target_precision")) is not None:
        threshold = f"{threshold} (precision target {_rate(card.get('target_precision'))})"
    return [
        ("Version", _text(card.get("version"))),
        ("Created", _text(card.get("created_at"))),
        ("Source commit", _text(card.get("source_commit"))),
        ("Feature set", feature_set),
        ("Training data", training_text),
        ("Split", split_text),
        ("Alarm threshold", threshold),
        ("Booster parameters", _text(card.get("params"))),
        ("Libraries", _text(card.get("library_versions"))),
    ]


def _decision(card: Mapping) -> dict | None:
    decision = card.get("decision")
    if not isinstance(decision, Mapping):
        return None
    promoted = decision.get("promoted")
    champion = f"champion {decision['champion']}" if decision.get("champion") else "champion"
    verdict = {True: "Promoted to champion", False: "Not promoted"}.get(promoted, "Promotion undecided")
    return {
        "verdict": verdict, "css": {True: "promoted", False: "kept"}.get(promoted, "undecided"),
        "reason": _text(decision.get("reason")),
        "detail": f"challenger AP {_rate(decision.get('challenger_ap'))} · {champion} AP "
                  f"{_rate(decision.get('champion_ap'))} · required margin {_rate(decision.get('margin'))}",
    }


# ---------------------------------------------------------------------------------------------- the figures


def _png(fig: Any, plt: Any) -> bytes:
    buffer = io.BytesIO()
    try:
        # No "Software" stamp: the same inputs give the same bytes.
        fig.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight", metadata={"Software": None})
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _style(index: int) -> dict:
    return {"color": COLOURS[index % len(COLOURS)], "linewidth": 2.2 if index == 0 else 1.4,
            "zorder": 3 if index == 0 else 2}


def _note_in_legend(ax: Any, text: str) -> None:
    ax.plot([], [], " ", label=_plain(text))


def _centre_note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=10, color="#555",
            bbox={"boxstyle": "round", "facecolor": "#f4f4f4", "edgecolor": "#ccc"})


def _one_class(w: _Windows) -> str:
    if not len(w.labels):
        return "no scored windows"
    return "no positive window" if w.positives == 0 else "no negative window"


def _roc_figure(plt: Any, models: Sequence[ScoredModel], windows: list[_Windows]) -> bytes:
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(6.2, 5.2))
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999", linewidth=1, label="chance (AUC 0.5)")
    drawn = 0
    for i, (model, w) in enumerate(zip(models, windows, strict=True)):
        if not w.both_classes:
            _note_in_legend(ax, f"{model.name}: {_one_class(w)}, no ROC curve")
            continue
        fpr, tpr, _ = roc_curve(w.labels, w.probabilities)
        auc = roc_auc_score(w.labels, w.probabilities)
        ax.plot(fpr, tpr, label=_plain(f"{model.name} (AUC {auc:.3f})"), **_style(i))
        drawn += 1
    if not drawn:
        _centre_note(ax, "ROC undefined:\nthe test windows hold one class only")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate (quiet windows alarmed)",
           ylabel="true positive rate (alarm windows caught)", title="ROC curve, test windows")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig, plt)


def _pr_figure(plt: Any, models: Sequence[ScoredModel], evaluations: list[dict],
               windows: list[_Windows]) -> bytes:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = plt.subplots(figsize=(6.2, 5.2))
    drawn, base_rates = 0, []
    for i, (model, ev, w) in enumerate(zip(models, evaluations, windows, strict=True)):
        if w.positives == 0:
            _note_in_legend(ax, f"{model.name}: {_one_class(w)}, no precision-recall curve")
            continue
        style = _style(i)
        precision, recall, _ = precision_recall_curve(w.labels, w.probabilities)
        ap = average_precision_score(w.labels, w.probabilities)
        ax.step(recall, precision, where="post", label=_plain(f"{model.name} (AP {ap:.3f})"), **style)
        drawn += 1
        base_rate = w.positives / len(w.labels)
        if not any(abs(base_rate - b) < 1e-9 for b in base_rates):
            base_rates.append(base_rate)
            ax.axhline(base_rate, linestyle=":", color=style["color"], linewidth=1,
                       label=f"base rate {base_rate:.3f} (a random scorer)")
        threshold = _model_threshold(ev)
        if threshold is not None:
            alarm = w.probabilities >= threshold
            if alarm.any():
                hits = float(w.labels[alarm].sum())
                ax.plot(hits / w.positives, hits / alarm.sum(), marker="o", markersize=8, linestyle="none",
                        markeredgecolor="black", color=style["color"], zorder=4,
                        label=_plain(f"{model.name} at threshold {_threshold(threshold)}"))
            else:
                _note_in_legend(ax, f"{model.name}: no window reaches threshold {_threshold(threshold)}")
    if not drawn:
        _centre_note(ax, "Precision-recall undefined:\nthe test windows hold no positive window")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall (alarm windows caught)",
           ylabel="precision (alarms that were right)", title="Precision-recall curve, test windows")
    ax.grid(alpha=0.3)
    # Below the axes: precision-recall curves fill every corner at one time or another.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8)
    return _png(fig, plt)


def _calibration_figure(plt: Any, models: Sequence[ScoredModel], windows: list[_Windows]) -> bytes:
    from sklearn.calibration import calibration_curve

    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6.2, 7.0), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999", linewidth=1, label="perfectly calibrated")
    bins = np.linspace(0.0, 1.0, 21)
    drawn, counts = 0, []
    for i, (model, w) in enumerate(zip(models, windows, strict=True)):
        style = _style(i)
        if len(w.labels) < 2:
            _note_in_legend(ax, f"{model.name}: too few windows for a reliability curve")
            continue
        # Quantile bins keep every bin populated when most probabilities sit near zero (rare alarms).
        n_bins = int(np.clip(len(w.labels) // 20, 2, 10))
        try:
            observed, predicted = calibration_curve(w.labels, w.probabilities, n_bins=n_bins, strategy="quantile")
        except ValueError as error:
            _note_in_legend(ax, f"{model.name}: no reliability curve ({error})")
            continue
        caveat = ("" if w.positives >= 10 else ", no positive window" if not w.positives
                  else f", only {w.positives} positive window{'s' if w.positives > 1 else ''}")
        ax.plot(predicted, observed, marker="o", markersize=4,
                label=_plain(f"{model.name} ({n_bins} quantile bins{caveat})"), **style)
        count, _, _ = hist.hist(np.clip(w.probabilities, 0, 1), bins=bins, histtype="step", color=style["color"],
                                linewidth=style["linewidth"])
        counts.append(count)
        drawn += 1
    if not drawn:
        _centre_note(ax, "No reliability curve:\ntoo few scored windows")
    ax.set(xlim=(0, 1), ylim=(-0.02, 1.02), ylabel="observed share of alarm windows",
           title="Reliability (calibration), test windows")
    ax.grid(alpha=0.3)
    hist.legend(*ax.get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, -0.35), fontsize=8)
    hist.set(xlabel="predicted probability", ylabel="windows")
    filled = np.concatenate(counts)[np.concatenate(counts) > 0] if counts else np.array([])
    # Rare alarms pile most predictions into the first bin; a log scale keeps the tail visible.
    if filled.size and filled.max() > 50 * filled.min():
        hist.set_yscale("log")
        hist.set_ylim(bottom=0.7)
    else:
        hist.set_ylim(bottom=0)
    hist.grid(alpha=0.3)
    return _png(fig, plt)


def _confusion_figure(plt: Any, model: ScoredModel, evaluation: dict, w: _Windows) -> bytes:
    threshold = _model_threshold(evaluation)
    at = evaluation.get("at_threshold") if isinstance(evaluation.get("at_threshold"), Mapping) else {}
    counts = [_number(at.get(k)) for k in ("tn", "fp", "fn", "tp")]
    if any(c is None for c in counts) and threshold is not None:
        alarm, positive = w.probabilities >= threshold, w.labels == 1
        counts = [float((~alarm & ~positive).sum()), float((alarm & ~positive).sum()),
                  float((~alarm & positive).sum()), float((alarm & positive).sum())]
    fig, ax = plt.subplots(figsize=(5.0, 4.4))
    labels = ["no alarm", "alarm"]
    ax.set_xticks([0, 1], labels=labels)
    ax.set_yticks([0, 1], labels=labels)
    ax.set(xlabel="predicted (probability ≥ threshold)", ylabel=f"actual (alarm within {HORIZON_DAYS} days)",
           title=_plain(f"{model.name}\nat threshold {_threshold(threshold)}"))
    if any(c is None for c in counts):
        ax.set(xlim=(-0.5, 1.5), ylim=(1.5, -0.5))
        _centre_note(ax, "No threshold in the evaluation:\nno confusion matrix")
        return _png(fig, plt)
    matrix = np.array(counts).reshape(2, 2)
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(matrix.max(), 1))
    for (row, column), value in np.ndenumerate(matrix):
        dark = value > matrix.max() * 0.6
        ax.text(column, row, f"{round(value):,}", ha="center", va="center", fontsize=13,
                color="white" if dark else "black")
    return _png(fig, plt)


def _importance_figure(plt: Any, model: ScoredModel, importance: list[tuple[str, float]]) -> bytes:
    names, gains = zip(*reversed(importance), strict=True)  # largest at the top
    fig, ax = plt.subplots(figsize=(7.5, 1.0 + 0.28 * len(importance)))
    ax.barh(range(len(gains)), gains, color=COLOURS[0])
    ax.set_yticks(range(len(names)), labels=[_plain(n) for n in names], fontsize=8)
    ax.set(xlabel="total gain", title=_plain(f"Top {len(importance)} features of {model.name}"))
    ax.grid(axis="x", alpha=0.3)
    return _png(fig, plt)


def _top_features(importance: Mapping[str, float] | None) -> list[tuple[str, float]]:
    if not importance:
        return []
    finite = [(str(k), float(v)) for k, v in importance.items() if _number(v) is not None]
    return sorted(finite, key=lambda item: (-item[1], item[0]))[:TOP_FEATURES]


def _pyplot() -> Any:
    import matplotlib

    # Switching the backend of an already imported pyplot closes the caller's figures, so only choose it first.
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------------------------------------- the page

_PAGE = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True).from_string(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.subtitle { color: #666; margin-top: 0; }
.decision { border-radius: 6px; padding: 0.8rem 1rem; margin: 1rem 0; border: 1px solid; }
.decision strong { font-size: 1.25rem; display: block; }
.promoted { background: #e8f5e9; border-color: #66bb6a; } .kept { background: #fff4e5; border-color: #ffa726; }
.undecided { background: #f4f4f4; border-color: #bbb; }
dl.card { display: grid; grid-template-columns: max-content 1fr; gap: 0.25rem 1rem; margin: 0; }
dl.card dt { font-weight: 600; color: #555; } dl.card dd { margin: 0; overflow-wrap: anywhere; }
details { margin-top: 0.4rem; } details p { font-family: ui-monospace, monospace; font-size: 0.85rem; }
table.metrics { border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.metrics th, table.metrics td { border: 1px solid #ddd; padding: 0.3rem 0.7rem; text-align: right; }
table.metrics th[scope=row] { text-align: left; font-weight: 500; background: #fafafa; }
table.metrics thead th { background: #f0f4f8; vertical-align: bottom; }
table.metrics .subject { background: #eef6ff; font-weight: 600; }
.notes { color: #8a4b00; }
.figures { display: flex; flex-wrap: wrap; gap: 1.5rem; }
figure { margin: 0; max-width: 100%; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9rem; color: #555; max-width: 40rem; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="subtitle">Evaluation on held-out test windows; compared with {{ others }}.</p>
{% if decision %}
<div class="decision {{ decision.css }}">
<strong>{{ decision.verdict }}</strong>
{{ decision.reason }}<br>
<small>{{ decision.detail }}</small>
</div>
{% endif %}
<h2>Model card</h2>
<dl class="card">
{% for term, text in card_rows %}
<dt>{{ term }}</dt><dd>{{ text }}</dd>
{% endfor %}
</dl>
{% if feature_names %}
<details><summary>Feature names ({{ feature_names | length }})</summary><p>{{ feature_names | join(", ") }}</p></details>
{% endif %}
<h2>Metrics on the test windows</h2>
<table class="metrics">
<thead><tr><th scope="col">metric</th>
{% for name in model_names %}<th scope="col"{% if loop.first %} class="subject"{% endif %}>{{ name }}</th>{% endfor %}
</tr></thead>
<tbody>
{% for label, cells in metrics %}
<tr><th scope="row">{{ label }}</th>{% for cell in cells %}<td{% if loop.first %} class="subject"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}
</tbody>
</table>
{% if notes %}
<ul class="notes">
{% for note in notes %}<li>{{ note }}</li>
{% endfor %}
</ul>
{% endif %}
<h2>Figures</h2>
<div class="figures">
{% for figure in figures %}
<figure>
<img src="{{ figure.file }}" alt="{{ figure.title }}">
<figcaption>{{ figure.caption }}</figcaption>
</figure>
{% endfor %}
</div>
</body>
</html>
""")


def render_evaluation_report(models: Sequence[ScoredModel], card: dict) -> dict[str, bytes]:
    """File name -> bytes: 'index.html' plus the PNG figures it shows (roc, pr, calibration, confusion, importance)."""
    if not models:
        raise ValueError("render_evaluation_report: no models given; models[0] is the version the report is about")
    card = card if isinstance(card, Mapping) else {}
    evaluations = [_evaluation(m) for m in models]
    windows = [_windows(m) for m in models]
    subject = models[0]
    plt = _pyplot()

    files: dict[str, bytes] = {
        ROC_FILE: _roc_figure(plt, models, windows),
        PR_FILE: _pr_figure(plt, models, evaluations, windows),
        CALIBRATION_FILE: _calibration_figure(plt, models, windows),
        CONFUSION_FILE: _confusion_figure(plt, subject, evaluations[0], windows[0]),
    }
    figures = [
        _Figure(ROC_FILE, "ROC curves",
                "ROC: the further a curve bows to the top left, the better it ranks alarm windows above quiet "
                "ones; the diagonal is chance."),
        _Figure(PR_FILE, "Precision-recall curves",
                "Precision-recall: higher is better; dots are each model's chosen threshold, dotted lines the "
                "share of alarm windows (what a random scorer gets)."),
        _Figure(CALIBRATION_FILE, "Reliability curves and histogram of predicted probabilities",
                "Reliability: points on the diagonal mean a predicted p comes true p of the time, below it the "
                "model over-predicts; the histogram shows where predictions fall."),
        _Figure(CONFUSION_FILE, f"Confusion matrix of {subject.name}",
                f"{subject.name} at its threshold: top right are false alarms, bottom left missed alarms."),
    ]
    notes: list[str] = []
    top = _top_features(subject.importance)
    if top:
        files[IMPORTANCE_FILE] = _importance_figure(plt, subject, top)
        figures.append(_Figure(IMPORTANCE_FILE, f"Feature importance of {subject.name}",
                               f"The {len(top)} features {subject.name} gains most from (total gain); one "
                               "dominant feature can mean leakage."))
    else:
        notes.append(f"No feature importance was given for {subject.name}: the importance chart is left out.")
    for model, w in zip(models, windows, strict=True):
        if w.without_probability:
            notes.append(f"{model.name}: {w.without_probability:,} test windows without a probability (NaN) are "
                         "left out of the figures.")
        if w.without_label:
            notes.append(f"{model.name}: {w.without_label:,} test windows without a label are left out of the "
                         "figures.")
        if not len(w.labels):
            notes.append(f"{model.name}: no scored test windows, so no curve is drawn.")
        elif not w.both_classes:
            notes.append(f"{model.name}: {_one_class(w)} among the scored test windows, so ROC AUC is undefined.")

    feature_names = card.get("feature_names")
    version = _text(card.get("version"))
    others = [m.name for m in models[1:]]
    html = _PAGE.render(
        title=f"CellGuard model {version}",
        others=", ".join(others) if others else "no other model",
        decision=_decision(card),
        card_rows=_card_rows(card),
        feature_names=[str(n) for n in feature_names] if isinstance(feature_names, list | tuple) else [],
        model_names=[m.name for m in models],
        metrics=_metrics_rows(evaluations, windows),
        notes=notes,
        figures=figures,
    )
    return {INDEX_FILE: html.encode("utf-8"), **files}


def write_evaluation_report(folder: str | Path, models: Sequence[ScoredModel], card: dict) -> Path:
    """Render the report into `folder` (figures first, index.html last, each atomically); returns index.html's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = render_evaluation_report(models, card)
    # The page goes last, so a reader never sees it before the figures it points at.
    for name in sorted(files, key=lambda n: n == INDEX_FILE):
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(files[name])
        os.replace(tmp, folder / name)
    return folder / INDEX_FILE
