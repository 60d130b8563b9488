"""The human-readable side of a report: a self-contained HTML page and the console summary.

The page embeds its pictures as base64 PNG, so ``report.html`` can be mailed or archived alone.
Jinja2 (already installed with torch) renders it with auto-escaping: subject ids and file paths
come from users' folder names and must not be able to inject markup.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from pipeline.cache import split_unlabelled
from pipeline.utils.atomic import write_text

REPORT_HTML = "report.html"

#: Rows of the overall metrics table: (metrics.json key, label shown to people).
OVERALL_ROWS = (
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("auc_macro", "ROC AUC (macro, one-vs-rest)"),
    ("kappa", "Cohen's kappa"),
    ("kappa_quadratic", "Quadratic-weighted kappa"),
    ("mcc", "Matthews correlation"),
    ("ece", "Expected calibration error"),
)
#: Columns of the per-class table: (per_class key, label).
PER_CLASS_COLUMNS = (
    ("sensitivity", "Sensitivity (recall)"),
    ("specificity", "Specificity"),
    ("precision", "PPV (precision)"),
    ("npv", "NPV"),
    ("f1", "F1"),
    ("auc", "ROC AUC"),
)


def fmt(value: Any, digits: int = 3) -> str:
    """A metric for people: fixed decimals, ``undefined`` for a value that does not exist."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "undefined"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    return f"{float(value):.{digits}f}"


def fmt_interval(interval: Sequence[float] | None, digits: int = 3) -> str:
    """``[low, high]`` as ``0.712–0.884``; an em dash when there is none."""
    if not interval:
        return "—"
    return f"{interval[0]:.{digits}f}–{interval[1]:.{digits}f}"


def embed_png(path: str | Path) -> str:
    """A ``data:`` URI holding the PNG at ``path``."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


@dataclass
class ReportFigure:
    """A picture of the report with its caption."""

    title: str
    path: Path
    caption: str = ""


@dataclass
class ReportContent:
    """Everything the page shows; built by :mod:`pipeline.evaluate.run`."""

    metrics: dict[str, Any]
    cohort_counts: pd.DataFrame  # rows: class, columns: site (+ Total)
    figures: list[ReportFigure]
    explanations: list[ReportFigure] = field(default_factory=list)
    rejected: pd.DataFrame = field(default_factory=pd.DataFrame)
    excluded: pd.DataFrame = field(default_factory=pd.DataFrame)


def overall_table(metrics: dict[str, Any]) -> list[dict[str, str]]:
    """Rows ``{name, value, interval}`` of the overall metrics."""
    ci = metrics.get("ci", {})
    return [
        {"name": label, "value": fmt(metrics.get(key)), "interval": fmt_interval(ci.get(key))}
        for key, label in OVERALL_ROWS
    ]


def per_class_table(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows per class: support and ``value (low–high)`` cells in :data:`PER_CLASS_COLUMNS` order."""
    ci = metrics.get("ci", {}).get("per_class", {})
    rows = []
    for name in metrics["classes"]:
        values = metrics["per_class"][name]
        cells = []
        for key, _ in PER_CLASS_COLUMNS:
            interval = ci.get(name, {}).get(key)
            cells.append({"value": fmt(values[key]), "interval": fmt_interval(interval)})
        rows.append({"name": name, "support": values["support"], "cells": cells})
    return rows


def fold_table(metrics: dict[str, Any]) -> list[dict[str, str]]:
    """One row per fold of a k-fold ensemble (empty for a single model)."""
    return [
        {
            "fold": str(fold["fold"]),
            **{key: fmt(fold.get(key)) for key, _ in OVERALL_ROWS},
        }
        for fold in metrics.get("folds", [])
    ]


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Evaluation report: {{ m.model.target_short }} on {{ m.cohort.name }}</title>
<style>
 body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
        margin: 2em auto; max-width: 1100px; line-height: 1.4; padding: 0 1em; }
 h1 { font-size: 1.6em; }
 h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
 table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
 th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: right; }
 /* long paths and ids (a PACS export tree) wrap instead of widening the page */
 td, code { overflow-wrap: anywhere; }
 th:first-child, td:first-child { text-align: left; }
 th { background: #f3f3f3; }
 .ci { color: #666; font-size: .85em; }
 .warning { background: #fff3cd; border: 2px solid #d39e00; padding: .8em 1em; margin: 1em 0; }
 .danger { background: #f8d7da; border: 2px solid #b02a37; padding: .8em 1em; margin: 1em 0; }
 .figures { display: flex; flex-wrap: wrap; gap: 1.2em; }
 figure { margin: 0; }
 figure img { max-width: 520px; border: 1px solid #eee; }
 .explain img { max-width: 100%; }
 figcaption { font-size: .85em; color: #555; max-width: 520px; }
 code { background: #f5f5f5; padding: 0 .2em; }
 .small { font-size: .85em; color: #555; }
</style>
</head>
<body>
<h1>Evaluation report</h1>
<p>Model <code>{{ m.model.target }}</code>
({{ m.model.n_models }} model{{ "s" if m.model.n_models > 1 else "" }},
slice mode <code>{{ m.model.slice_mode }}</code>,
decision rule <code>{{ m.model.decision_rule }}</code>)
on the held-out cohort <code>{{ m.cohort.name }}</code>, {{ m.created }}.</p>

{% if m.model.shuffle_labels %}
<div class="danger"><strong>LEAKAGE-CHECK MODEL.</strong> This checkpoint was trained with
<code>train.shuffle_labels=true</code>: its labels were permuted on purpose, so its metrics
should sit near chance and say nothing about the disease.</div>
{% endif %}
{% if m.allow_overlap and m.overlap_subjects %}
<div class="danger"><strong>NOT AN INDEPENDENT EVALUATION.</strong>
{{ m.overlap_subjects | length }} subject(s) of this cohort were used to train or validate the
model (<code>evaluate.allow_overlap=true</code>): {{ m.overlap_subjects | join(", ") }}.
Every metric below is optimistic.</div>
{% endif %}
{% if excluded_rows %}
<div class="warning">{{ excluded_rows | length }} case(s) of the cohort were not scored
(see <a href="#excluded">Not scored</a>).</div>
{% endif %}
{% if m.undefined %}
<div class="warning">Some metrics are undefined for this cohort:
<ul>
{% for key, reason in m.undefined.items() %}<li><code>{{ key }}</code>: {{ reason }}</li>
{% endfor %}</ul></div>
{% endif %}

<h2>Model and configuration</h2>
<table>
<tr><th>Checkpoint</th><td><code>{{ m.model.checkpoint }}</code></td></tr>
<tr><th>Checkpoint SHA-256</th><td><code>{{ m.model.checkpoint_sha256 }}</code></td></tr>
<tr><th>Network</th><td><code>{{ m.model.target }}</code></td></tr>
<tr><th>Trained on</th><td><code>{{ m.model.trained_on }}</code></td></tr>
<tr><th>Training config hash</th><td><code>{{ m.model.train_config_hash }}</code></td></tr>
<tr><th>Recipe hash</th><td><code>{{ m.recipe_hash }}</code></td></tr>
<tr><th>Evaluation config hash</th><td><code>{{ m.config_hash }}</code></td></tr>
<tr><th>Bootstrap</th><td>{{ m.ci.resamples }} resamples by subject, seed {{ m.ci.seed }},
{{ level }} intervals</td></tr>
</table>

<h2>Cohort</h2>
<p>{{ m.n_subjects }} subjects, {{ m.n_samples }} scored case(s) (subject/session),
{{ rejected_rows | length }} input(s) rejected by preprocessing{{ rejected_summary }}.
{% if n_unlabelled %}{{ unlabelled_sentence }}{% endif %}</p>
{{ counts_html | safe }}

<h2>Metrics</h2>
<table>
<tr><th>Metric</th><th>Value</th><th>{{ level }} CI</th></tr>
{% for row in overall %}
<tr><td>{{ row.name }}</td><td>{{ row.value }}</td><td class="ci">{{ row.interval }}</td></tr>
{% endfor %}
</table>

<h3>Per class (one vs rest)</h3>
<table>
<tr><th>Class</th><th>Support</th>
{% for _, label in per_class_columns %}<th>{{ label }}</th>{% endfor %}</tr>
{% for row in per_class %}
<tr><td>{{ row.name }}</td><td>{{ row.support }}</td>
{% for cell in row.cells %}
<td>{{ cell.value }}<br><span class="ci">{{ cell.interval }}</span></td>
{% endfor %}</tr>
{% endfor %}
</table>
<p class="small">Sensitivity: the share of the class's cases the model finds. Specificity: the
share of the other cases it does not call this class. PPV and NPV depend on the cohort's class
mix. Balanced accuracy is the mean sensitivity over classes; the quadratic kappa counts a CN/AD
confusion as worse than a confusion of neighbouring stages.</p>

{% if folds %}
<h3>Per fold (each model of the k-fold ensemble alone)</h3>
<table>
<tr><th>Fold</th>{% for _, label in overall_rows %}<th>{{ label }}</th>{% endfor %}</tr>
{% for row in folds %}
<tr><td>{{ row.fold }}</td>
{% for key, _ in overall_rows %}<td>{{ row[key] }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% endif %}

{% if by_site %}
<h3>Per site</h3>
<table>
<tr><th>Site</th><th>Subjects</th><th>Cases</th><th>Accuracy</th><th>Balanced accuracy</th></tr>
{% for site, row in by_site.items() %}
<tr><td>{{ site }}</td><td>{{ row.n_subjects }}</td><td>{{ row.n_samples }}</td>
<td>{{ fmt(row.accuracy) }}</td><td>{{ fmt(row.balanced_accuracy) }}</td></tr>
{% endfor %}
</table>
{% endif %}

<h2>Figures</h2>
<div class="figures">
{% for f in figures %}
<figure><img src="{{ f.uri }}" alt="{{ f.title }}"><figcaption>{{ f.caption }}</figcaption></figure>
{% endfor %}
</div>

{% if explanations %}
<h2>Where the model looks</h2>
<p class="small">Grad-CAM (red: the strongest evidence for the predicted class) and occlusion
sensitivity (red: hiding this region lowers the probability of the predicted class; blue: raises
it), for the most confident right and wrong predictions of each class. They show what the network
uses, not where the disease is.</p>
<div class="explain">
{% for f in explanations %}
<figure><img src="{{ f.uri }}" alt="{{ f.title }}"><figcaption>{{ f.caption }}</figcaption></figure>
{% endfor %}
</div>
{% endif %}

<h2 id="rejected">Rejected by preprocessing</h2>
{% if rejected_rows %}
<table>
<tr>{% for col in rejected_columns %}<th>{{ col }}</th>{% endfor %}</tr>
{% for row in rejected_rows %}
<tr>{% for col in rejected_columns %}<td>{{ row[col] }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% else %}<p>None: every labelled input was used.</p>{% endif %}
{% if n_unlabelled %}<p class="small">{{ unlabelled_sentence }} They are listed, with the
rejections, in the cache's <code>rejected.csv</code>.</p>{% endif %}

{% if excluded_rows %}
<h2 id="excluded">Not scored</h2>
<table>
<tr><th>subject_id</th><th>session_id</th><th>label</th><th>reason</th></tr>
{% for row in excluded_rows %}
<tr><td>{{ row.subject_id }}</td><td>{{ row.session_id }}</td><td>{{ row.label }}</td>
<td>{{ row.reason }}</td></tr>
{% endfor %}
</table>
{% endif %}

<h2>Software</h2>
<p class="small">{% for name, version in m.versions.items() %}{{ name }} {{ version }}
{{- ", " if not loop.last }}{% endfor %}</p>
<p class="small">A research tool, not a medical device: these numbers describe this cohort and
this model only.</p>
</body>
</html>
"""


def rejected_summary(rejected: pd.DataFrame) -> str:
    """`` (1 subject, 55 series)``: rejected inputs counted by level, or nothing."""
    if rejected.empty or "level" not in rejected:
        return ""
    counts = rejected["level"].value_counts()
    return " (" + ", ".join(f"{n} {level}" for level, n in counts.items()) + ")"


def unlabelled_sentence(n: int) -> str:
    """What the cohort section says of image folders that have no label (not rejections: the
    cohort is a subset of a shared folder, or the labels table leaves them out on purpose)."""
    if n == 1:
        return "1 folder without a label was not used."
    return f"{n} folders without a label were not used."


def render_report(content: ReportContent) -> str:
    """The report page as a string (images embedded)."""
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    template = env.from_string(_TEMPLATE)
    m = content.metrics
    figures = [
        {"title": f.title, "caption": f.caption, "uri": embed_png(f.path)} for f in content.figures
    ]
    explanations = [
        {"title": f.title, "caption": f.caption, "uri": embed_png(f.path)}
        for f in content.explanations
    ]
    proper, unlabelled = split_unlabelled(content.rejected)
    rejected = proper.astype(str)
    return template.render(
        m=m,
        fmt=fmt,
        level=f"{m['ci']['level']:.0%}",
        overall=overall_table(m),
        overall_rows=OVERALL_ROWS,
        per_class=per_class_table(m),
        per_class_columns=PER_CLASS_COLUMNS,
        folds=fold_table(m),
        by_site=m.get("by_site", {}),
        counts_html=content.cohort_counts.to_html(border=0, escape=True),
        figures=figures,
        explanations=explanations,
        rejected_columns=list(rejected.columns),
        rejected_rows=rejected.to_dict("records"),
        rejected_summary=rejected_summary(proper),
        n_unlabelled=len(unlabelled),
        unlabelled_sentence=unlabelled_sentence(len(unlabelled)),
        excluded_rows=content.excluded.astype(str).to_dict("records"),
    )


def write_report(path: str | Path, content: ReportContent) -> Path:
    """Render and atomically write ``report.html``."""
    write_text(path, render_report(content))
    return Path(path)


def console_summary(metrics: dict[str, Any]) -> str:
    """The key table printed at the end of a run: overall and per-class metrics with intervals."""
    level = metrics.get("ci", {}).get("level", 0.95)
    overall = pd.DataFrame(overall_table(metrics)).set_index("name")
    overall.columns = ["value", f"{level:.0%} CI"]
    overall.index.name = None
    ci = metrics.get("ci", {}).get("per_class", {})
    per_class = pd.DataFrame(
        {
            label: [
                f"{fmt(metrics['per_class'][name][key])} "
                f"({fmt_interval(ci.get(name, {}).get(key))})"
                for name in metrics["classes"]
            ]
            for key, label in PER_CLASS_COLUMNS
        },
        index=list(metrics["classes"]),
    )
    per_class.insert(0, "n", [metrics["per_class"][name]["support"] for name in metrics["classes"]])
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        return (
            f"Held-out cohort: {metrics['n_subjects']} subjects, {metrics['n_samples']} cases\n"
            f"{overall.to_string()}\n\n{per_class.to_string()}"
        )
