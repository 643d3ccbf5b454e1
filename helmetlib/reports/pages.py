"""The HTML the runner and the evaluator write (run page, runs index, evaluation page) and the decision block the
comparison notebook shows: one stylesheet, one banner style, the decision first.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime

from helmetlib.evaluation.metrics import METRIC_LABELS
from helmetlib.evaluation.results import Audit, ModelResult, PreviousRunComparison, Selection
from helmetlib.evaluation.uncertainty import Interval
from helmetlib.run.config import COMPLETED, NOTHING_DEPLOYED, RunConfig
from helmetlib.run.folder import ReportsFolder, RunFolder, RunRecord

esc = html.escape
STATUS_WORDS = {"nothing_deployed": "nothing deployed"}  # a run's status as the pages write it

STYLE = """<style>
.hl{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;line-height:1.35}
body.hl{margin:1.2em 2em;max-width:78em}
.hl h1{font-size:1.5em;margin:.2em 0 .3em}.hl h2{font-size:1.15em;margin:.9em 0 .3em}
.hl table{border-collapse:collapse;margin:.3em 0}
.hl td,.hl th{border:1px solid #ccc;padding:.2em .55em;text-align:right;font-size:.92em}
.hl th{background:#f2f2f2;text-align:left}.hl small,.hl .muted{color:#666}
.hl-banner{padding:.45em .8em;margin:.35em 0;border-left:6px solid;font-weight:600;font-size:.95em}
.hl-banner.danger{background:#fde8e8;border-color:#c00}.hl-banner.warning{background:#fff6d6;border-color:#c90}
.hl-banner.ok{background:#e8f6e8;border-color:#2a2}.hl-banner.info{background:#eef3fb;border-color:#47c}
.hl-decision{border:2px solid #335;border-radius:6px;padding:.5em 1em .6em;margin:.6em 0;background:#fafbff}
.hl-decision h2{margin-top:.1em}.hl-answer{font-size:1.2em;margin:.2em 0 .4em}
.hl-decision p{margin:.25em 0}.hl .ok{color:#070;font-weight:600}.hl .failed,.hl .interrupted{color:#c00;
font-weight:600}.hl .running{color:#c90;font-weight:600}.hl .nothing_deployed{color:#c00;font-weight:600}
</style>"""


def in_notebook(fragment: str):
    """A page fragment (banners, the decision block) as notebook output, with its stylesheet."""
    from IPython.display import HTML

    return HTML(STYLE + fragment)


def page(title: str, body: str) -> str:
    """A complete page in the one stylesheet."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>{STYLE}</head>"
        f"<body class='hl'>{body}</body></html>"
    )


def banner(text: str, level: str = "warning") -> str:
    """One banner (`danger`, `warning`, `ok` or `info`), the same on every page and in every report."""
    return f"<div class='hl-banner {level}'>{esc(text)}</div>"


def config_banners(config: RunConfig, *, uses_backbone: bool = True) -> str:
    """The banners every report of a run shows: a backbone that is not ImageNet's, the synthetic demo set."""
    parts = []
    if uses_backbone and config.weights.banner():
        parts.append(banner(config.weights.banner(), config.weights.banner_level))
    if config.demo:
        parts.append(banner(config.demo_note, "info"))
    return "".join(parts)


def _interval(interval: Interval | None) -> str:
    if interval is None:
        return "<td>-</td>"
    return f"<td>{interval.value:.3f} <small>({interval.low:.2f} to {interval.high:.2f})</small></td>"


def decision_html(
    config: RunConfig,
    results: dict[str, ModelResult],
    selection: Selection | None,
    audit: Audit | None,
    comparison: PreviousRunComparison | None = None,
) -> str:
    """The decision block: which model, how sure, which threshold to deploy, what to worry about."""
    from helmetlib.evaluation.selection import f1_spread
    from helmetlib.reports.narrative import run_warnings

    parts = ["<section class='hl hl-decision'><h2>Decision</h2>"]
    if comparison is not None and comparison.regressions:
        parts.append(
            banner(f"REGRESSION since run {comparison.previous_run}: " + "; ".join(comparison.regressions), "danger")
        )
    if selection is None or selection.selected_model is None:
        parts.append(f"<p class='hl-answer failed'>Nothing to deploy: {esc(NOTHING_DEPLOYED)}.</p>")
    else:
        name, threshold = selection.deployed, selection.threshold
        result = results.get(selection.selected_model)
        cross = selection.cross_ensemble
        if name == selection.selected_model:
            deployed = f" ({esc(result.deployed)})" if result else ""
        else:
            deployed = f" (the cross-architecture ensemble of {esc(' and '.join(cross.members))})" if cross else ""
        parts.append(
            f"<p class='hl-answer'>Deploy <b>{esc(name)}</b>{deployed} at threshold <b>{threshold.value:.3f}</b> "
            f"<span class='muted'>({esc(threshold.description)})</span>.</p>"
        )
        parts.append(_test_table(config, selection))
        if selection.calibration is not None:
            parts.append(f"<p><b>Probabilities:</b> {esc(selection.calibration.text())}.</p>")
        if selection.verdict is not None:
            parts.append(f"<p><b>Runner-up:</b> {esc(selection.verdict.text)}</p>")
        if cross is not None:
            parts.append(f"<p><b>Across architectures:</b> {esc(cross.text)}</p>")
        if result:
            spread = f" (range {_range(result)})" if _range(result) else ""
            parts.append(f"<p><b>Seeds:</b> {esc(result.name)} validation F1 {esc(f1_spread(result))}{spread}.</p>")
    uses_backbone = any(result.weights for result in results.values())
    weights = config.weights.describe() if uses_backbone else "no backbone model in this run"
    parts.append(
        f"<p><b>Weights:</b> {esc(weights)}. <b>Leakage:</b> {esc(audit.verdict if audit else 'not audited')}</p>"
    )
    for level, warning in run_warnings(config, results, selection, audit):
        parts.append(banner(warning, level))
    parts.append("</section>")
    return "".join(parts)


def _test_table(config: RunConfig, selection: Selection) -> str:
    """The deployed model's test scores with intervals: the deployed decision (and the study's own, when the
    deployed threshold decides otherwise)."""
    columns = [(metric, METRIC_LABELS[metric]) for metric in ("accuracy", "f1", "bare_head_recall")]
    header = "".join(f"<th>{label}</th>" for _, label in columns)
    rows = [(f"deployed: {selection.threshold.value:.3f} on {_scale(selection)}", selection.test_intervals)]
    if selection.threshold.rule != "fixed":  # the fixed rule is the study's decision: the same row again
        rows.append(
            (f"the study's {config.threshold:g} on the model's output", selection.test_intervals_at_study_threshold)
        )
    body = "".join(
        f"<tr><th>{esc(label)}</th>" + "".join(_interval(intervals.get(key)) for key, _ in columns) + "</tr>"
        for label, intervals in rows
    )
    return f"<table><tr><th>test ({selection.test.n} images, 95 % bootstrap CI)</th>{header}</tr>{body}</table>"


def _scale(selection: Selection) -> str:
    """The probability the deployed threshold applies to, in words."""
    return (
        "calibrated P(helmet)"
        if selection.calibration or selection.deployed != selection.selected_model
        else "P(helmet)"
    )


def _figure_tag(fig, *, fmt: str = "png") -> str:
    """The figure as an `<img>` with its description as alternative text (`plots.description`), closed."""
    import matplotlib.pyplot as plt

    from helmetlib.reports.plots import description

    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=80, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    text = esc(description(fig), quote=True)
    kind = "svg+xml" if fmt == "svg" else fmt
    return f'<img alt="{text}" title="{text}" src=\'data:image/{kind};base64,{data}\'>'


def run_page(record: RunRecord, folder: RunFolder) -> str:
    """A run's landing page: status, the decision, the change since the last run, the reports in run order and
    every model's spread over seeds."""
    config = record.config
    status = record.status
    duration = _duration(record.total_seconds)
    data = record.data
    data_text = f"data {esc(data.path)} (hash {data.content_hash}, {data.images} images)" if data else ""
    parts = [
        f"<h1>Helmet study run {esc(record.run_id)}</h1>",
        f"<p>Status: <span class='{status}'>{STATUS_WORDS.get(status, status).upper()}</span> · started "
        f"{_when(record.started)} · {duration} · "
        f"{data_text}</p>",
    ]
    if status not in COMPLETED:
        parts.append(banner(f"{status.upper()} at {record.stage or '?'}: {record.reason or ''}", "danger"))
    if record.selection is None:  # otherwise the decision block carries these banners
        parts.append(config_banners(config, uses_backbone=any(r.weights for r in record.models.values())))
    else:
        parts.append(
            decision_html(config, record.models, record.selection, record.audit, record.comparison_with_previous)
        )
    parts.append(_comparison_html(record.comparison_with_previous))
    reports = _reports_in_run_order(record)
    written = [(stem, label) for stem, label in reports if folder.html(stem).is_file()]
    parts.append("<h2>Reports</h2><ul>")
    for stem, label in written:
        reader, with_code, notebook = (
            esc(path.name) for path in (folder.html(stem), folder.code_html(stem), folder.notebook(stem))
        )
        parts.append(
            f"<li><a href='{reader}'>{esc(label)}</a> <small>(<a href='{with_code}'>with code</a>, "
            f"<a href='{notebook}'>notebook</a>)</small></li>"
        )
    parts.append("</ul>")
    never_run = [label for stem, label in reports if not folder.started(stem)]
    if never_run and status not in COMPLETED:
        parts.append(
            f"<p class='muted'>Not run (the run ended at {esc(record.stage or '?')}): {esc(', '.join(never_run))}.</p>"
        )
    if record.models:
        parts.append(_models_table(record))
    parts.append(
        "<p><a href='run.json'>run.json</a> · <a href='config.json'>config.json</a> · "
        "<a href='../index.html'>all runs</a></p>"
    )
    return page(f"Helmet study run {record.run_id}", "".join(parts))


def _reports_in_run_order(record: RunRecord) -> list[tuple[str, str]]:
    """(notebook stem, title) of every report the run's settings ask for, in the order the run writes them."""
    from helmetlib.run.config import COMPARISON, EDA

    stems = [(EDA, "Data exploration and leakage audit")]
    stems += [(RunFolder.model_stem(name), f"Model {name}") for name in record.config.models]
    stems.append((COMPARISON, "Comparison and selection"))
    return stems


def _models_table(record: RunRecord) -> str:
    from helmetlib.core.specs import get_spec
    from helmetlib.evaluation.selection import mean_f1

    rows = []
    for name, result in record.models.items():
        spread = result.summary["f1"]
        marker = " ★" if name == record.selected_model else ""
        state = (
            "collapsed"
            if result.collapsed
            else (
                f"{sum(r.collapsed for r in result.repeats)} collapsed"
                if any(r.collapsed for r in result.repeats)
                else "ok"
            )
        )
        restarts = sum(len(r.restarts) for r in result.repeats)
        one_fit = " (deterministic: one fit)" if get_spec(name).deterministic else ""
        f1 = f"{mean_f1(result):.3f}" + (f" ± {spread.std:.3f}" if len(result.repeats) > 1 else "")
        rows.append(
            f"<tr><th>{esc(name)}{marker}</th><td>{len(result.repeats)}{one_fit}</td><td>{f1}</td>"
            f"<td>{_range(result) or '—'}</td><td>{esc(state)}</td><td>{restarts}</td>"
            f"<td>{esc(result.deployed)}</td><td>{result.validation.accuracy:.3f}</td>"
            f"<td>{result.validation.f1:.3f}</td><td>{result.validation.bare_head_recall:.3f}</td>"
            f"<td>{esc(result.trained_on)}</td></tr>"
        )
    return (
        "<h2>Models on validation (selection is made here)</h2><table><tr><th>model</th><th>repeats</th>"
        "<th>mean F1 ± sd</th><th>F1 range</th><th>collapse</th><th>restarts</th><th>deployed</th>"
        "<th>accuracy</th><th>F1</th><th>bare-head recall</th><th>trained on</th></tr>" + "".join(rows) + "</table>"
    )


def _when(started: str) -> str:
    """A run's start as a reader writes it, in UTC: "2026-12-05 09:08 UTC"."""
    return datetime.fromisoformat(started).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: float | None) -> str:
    """ "8 min 54 s", "41 s", or "-" for a run that did not record one."""
    if seconds is None:
        return "-"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _range(result: ModelResult) -> str:
    """The range of validation F1 over the repeats, "" for a single fit."""
    spread = result.summary["f1"]
    return f"{spread.min:.3f} to {spread.max:.3f}" if len(result.repeats) > 1 else ""


def _comparison_html(comparison: PreviousRunComparison | None) -> str:
    if comparison is None:
        return ""
    if not comparison.same_data or comparison.previous_run is None:
        return f"<h2>Since the previous run</h2><p>{esc(comparison.note)}</p>"
    labelled = [(f"selected model, test {METRIC_LABELS[change.metric]}", change) for change in comparison.test]
    labelled += [
        (f"{name}, validation {METRIC_LABELS[change.metric]}", change)
        for name, changes in comparison.validation.items()
        for change in changes
    ]
    rows = "".join(
        f"<tr><th>{esc(label)}</th><td>{change.previous:.3f}</td><td>{change.current:.3f}</td>"
        f"{_interval(change.change)}<td>{'<b class=failed>regression</b>' if change.regression else 'no'}</td></tr>"
        for label, change in labelled
    )
    return (
        f"<h2>Since the previous run ({esc(comparison.previous_run)})</h2><p>{esc(comparison.note)}</p>"
        "<table><tr><th></th><th>previous</th><th>now</th><th>change (paired 95 % CI)</th><th>regression</th></tr>"
        f"{rows}</table>"
    )


def runs_index(out: ReportsFolder) -> str:
    """Every run in `out` once, newest first: status, duration, data, selected model, test metrics with
    intervals, regressions; and the selected model's test accuracy and bare-head recall over time."""
    runs, unreadable = out.scan()
    rows = []
    for folder, record in runs:
        selection = record.selection
        intervals = selection.test_intervals if selection else {}
        regression = record.comparison_with_previous.regressions if record.comparison_with_previous else []
        weights = record.config.weights
        selected = record.models.get(record.selected_model) if record.selected_model else None
        flag = (
            banner(weights.describe(), weights.banner_level)
            if selected and selected.weights and weights.banner()
            else ""
        )
        threshold = f"{selection.threshold.value:.3f}" if selection and selection.threshold else "-"
        rows.append(
            f"<tr><th><a href='{esc(folder.path.name)}/index.html'>{esc(record.run_id)}</a></th>"
            f"<td>{_when(record.started)}</td>"
            f"<td class='{record.status}'>{STATUS_WORDS.get(record.status, record.status)}</td>"
            f"<td>{_duration(record.total_seconds)}</td>"
            f"<td>{record.data.content_hash if record.data else '-'}</td>"
            f"<td>{esc(str(record.selected_model or '-'))}{flag}</td><td>{threshold}</td>"
            f"{_interval(intervals.get('accuracy'))}{_interval(intervals.get('bare_head_recall'))}"
            f"<td>{'<b class=failed>regression</b>' if regression else 'none'}</td></tr>"
        )
    for folder, reason in unreadable:
        rows.append(
            f"<tr><th>{esc(folder.name)}</th><td colspan=9 class=failed>unreadable, skipped: {esc(reason)}</td></tr>"
        )
    trend = _trend_figure([record for _, record in runs])
    body = (
        "<h1>Helmet study runs</h1>"
        + (trend or "")
        + "<table><tr><th>run</th><th>started</th><th>status</th><th>duration</th><th>data hash</th><th>selected</th>"
        "<th>threshold</th><th>test accuracy</th><th>test bare-head recall</th><th>regressions</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    return page("Helmet study runs", body)


def _trend_figure(records: list[RunRecord]) -> str | None:
    points = [
        (datetime.fromisoformat(r.started), r.selection.test_intervals)
        for r in reversed(records)
        if r.status == "ok" and r.selection and r.selection.test_intervals
    ]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.2))
    positions = list(range(len(points)))  # one step per run: the axis fits one run or a year of them
    for key, label in (("accuracy", "test accuracy"), ("bare_head_recall", "test bare-head recall")):
        values = [intervals[key] for _, intervals in points]
        ax.errorbar(
            positions,
            [v.value for v in values],
            yerr=[[v.value - v.low for v in values], [v.high - v.value for v in values]],
            marker="o",
            capsize=3,
            label=label,
        )
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("Selected model over time (95 % CI)", fontsize=9)
    from helmetlib.reports.plots import described

    described(
        fig, f"The deployed model's test accuracy and bare-head recall with 95 % intervals over {len(points)} runs"
    )
    step = max(1, len(points) // 12)
    ax.set_xticks(positions[::step], [time.strftime("%Y-%m-%d %H:%M") for time, _ in points][::step])
    ax.set_xlim(-0.5, len(points) - 0.5)
    fig.autofmt_xdate()
    return _figure_tag(fig, fmt="svg")


def _precision_note(precision: str) -> str:
    """What the evaluation's backbone precision means for its numbers (nothing in float32, helmet-predict's own)."""
    if precision == "float32":
        return ""
    return f" (the backbone computed in {precision} here: each P(helmet) within a few thousandths of it)"


def evaluation_page(result, run: RunRecord, run_page, out) -> str:
    """`helmet-evaluate`'s page: the verdict first (the deployed model here against its own test scores), the
    weights banner and a link back to the run; then the metrics with intervals, what was not scored, ROC / PR curves
    and a confusion matrix per model."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from helmetlib.evaluation.uncertainty import curves
    from helmetlib.reports import plots

    evaluation = result.evaluation
    columns = [(metric, METRIC_LABELS[metric]) for metric in ("accuracy", "f1", "bare_head_recall")]
    rows = "".join(
        f"<tr><th>{esc(name)}{' ★' if name == evaluation.deployed else ''}</th>"
        + "".join(_interval(model.intervals.get(metric)) for metric, _ in columns)
        + f"<td>{model.roc_auc:.3f}</td><td>{model.brier:.3f}</td><td>{model.threshold:.3f}</td></tr>"
        for name, model in evaluation.models.items()
    )
    header = "".join(f"<th>{label}</th>" for _, label in columns) + "<th>ROC AUC</th><th>Brier</th><th>threshold</th>"
    curves_tag = _figure_tag(
        plots.roc_pr_curves({name: curves(result.labels[name], p) for name, p in result.probabilities.items()})
    )
    matrices = "".join(
        _figure_tag(plots.confusion_heatmap(np.array(model.confusion), title=name))
        for name, model in evaluation.models.items()
    )
    data, verdict = evaluation.data, evaluation.verdict(run) or "No deployed model was scored."
    link = os.path.relpath(run_page, out)
    uses_backbone = any(result.weights for result in run.models.values())
    body = (
        f"<h1>Generalisation check of run {esc(run.run_id)}</h1>"
        f"<section class='hl hl-decision'><h2>Verdict</h2><p class='hl-answer'>{esc(verdict)}</p>"
        + config_banners(run.config, uses_backbone=uses_backbone)
        + f"<p>On {esc(data.path)} ({data.images:,} images, hash {data.content_hash}); each model at its card's "
        f"threshold, on P(helmet) as helmet-predict answers{_precision_note(evaluation.backbone_precision)}; "
        "★ deployed. "
        f"<a href='{esc(link)}'>The run's page</a>.</p>"
        + (f"<p><b>Not scored:</b> {esc(evaluation.dropped.text())}.</p>" if evaluation.dropped else "")
        + "</section>"
        + f"<h2>Metrics (95 % bootstrap intervals)</h2><table><tr><th>model</th>{header}</tr>{rows}</table>"
        f"<h2>ROC and precision-recall</h2>{curves_tag}<h2>Confusion matrices</h2>{matrices}"
    )
    return page(f"helmet-evaluate · run {run.run_id}", body)
