"""Rendering of validation reports: plain table, Markdown, HTML with plots, JSON.

Pure functions of a :class:`edgetransfer.records.ValidationReport` (plus an optional
verdict from ``check``); nothing here measures anything.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from ..io import atomic_write
from . import plots
from .profile import html_section
from .profile import speed_lines as speed_lines


def _drop(r) -> str:
    """Points of accuracy the file loses against the float model (negative: it gained)."""
    return f"{r.accuracy_drop:.2f}" if getattr(r, "accuracy_drop", None) is not None else "-"


def _accuracy(r) -> str:
    """``0.9530 (litert, host)`` / ``0.9480 (device: pi4 over ssh; agrees with host 99.2%)``: who produced it."""
    by = getattr(r, "accuracy_by", "")
    dev = getattr(r, "device_accuracy", None)
    if dev is not None:
        by += f"; agrees with host {100 * dev.agreement:.1f}%"
    return f"{r.accuracy:.4f}" + (f" ({by})" if by else "")


def _kib(n: int | None, ok: bool | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:,.0f}" + ("" if ok or ok is None else " (over)")


def _has_memory(report) -> bool:
    return any(getattr(r, "memory", None) for r in report.records)


def table(report) -> tuple[list[str], list[list[str]]]:
    """The per-file table: header and rows. A ``drop`` column (points lost against the float
    model, as the README promises); RAM and flash in KiB when a target is a microcontroller."""
    memory = _has_memory(report)
    header = HEADER[:4] + ["drop"] + HEADER[4:]
    if memory:
        header = header[:-1] + ["RAM KiB", "flash KiB"] + header[-1:]
    rows = []
    for r in report.records:
        lat = r.latency
        row = [
            Path(r.artifact).name,
            r.target,
            getattr(r, "label", r.precision),  # "fp32 as bf16": bf16 execution of the fp32 file
            _accuracy(r),
            _drop(r),
            f"{r.agreement:.4f}" if r.agreement is not None else "-",
            f"{lat.p50:.2f}",
            f"{lat.p90:.2f}",
            lat.provenance,
            str(lat.detail.get("runtime") or lat.host.get("device") or "-"),
            f"{r.size_bytes / 1e6:.2f}",
        ]
        if memory:
            m = getattr(r, "memory", None) or {}
            row += [_kib(m.get("arena_bytes"), m.get("ram_ok")), _kib(m.get("flash_bytes"), m.get("flash_ok"))]
        rows.append([*row, _compat(r.compatibility)])
    return header, rows


def best_how(b) -> str:
    """`` with openvino in bf16 (settings ...)``: how the best figure was had."""
    out = f" with {b.runtime}" if b.runtime else ""
    out += f" in {b.execution}" if getattr(b, "execution", "") else ""
    settings = getattr(b, "settings", None)
    return out + (" (" + ", ".join(f"{k}={v}" for k, v in settings.items()) + ")" if settings else "")


def float_model_words(report) -> str:
    """``Float model accuracy 0.9500, Keras p50 3.10 ms``, or that there is no float model."""
    ref = report.reference
    if ref is None:
        return "No float model (a run imported from an exported file: accuracy without a drop)"
    if ref.latency is None:
        return f"Float model accuracy {ref.accuracy:.4f} (stored with the export: {ref.model})"
    return f"Float model accuracy {ref.accuracy:.4f}, Keras p50 {ref.latency.p50:.2f} ms"


def _rows(report) -> list[list[str]]:
    """Rows of :func:`table` (kept for callers of the old name)."""
    return table(report)[1]


def best(report) -> dict:
    """``report.best`` without a file that does not fit its target's memory: a file that cannot
    run there is never the best (issue #26); such a target maps to None."""
    unfit = {(r.artifact, r.target) for r in report.records if not r.fits}
    out: dict = {t: (None if (b.artifact, t) in unfit else b) for t, b in report.best.items()}
    for _, target in sorted(unfit):
        out.setdefault(target, None)  # a target where nothing fits is said, not left out
    return out


HEADER = [
    "artifact",
    "target",
    "precision",
    "accuracy",
    "agreement",
    "p50 ms",
    "p90 ms",
    "latency is",
    "runtime / device",
    "MB",
    "delegated",
]


def _compat(c: dict | None) -> str:
    if not c:
        return "-"
    return f"{100 * c['ops_share']:.0f}% ops, {c['partitions']} part." if not c["full"] else "all"


def markdown(report, verdict=None) -> str:
    lines = [
        "# edgetransfer validation",
        "",
        f"Data: `{report.data}` ({report.held_out.get('split')}, {report.held_out.get('images')} images). "
        f"{float_model_words(report)} on "
        f"{report.host.get('cpu', '?')} ({report.host.get('cores')} cores). Latency marked *measured* ran here "
        "(or on the device through its runner); *estimated* comes from the per-op cost model.",
        "",
    ]
    header, rows = table(report)
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "## Best artifact per target", ""]
    lines += [
        f"- **{t}**: `{Path(b.artifact).name}` ({b.p50_ms:.2f} ms, {b.provenance}, accuracy {b.accuracy:.4f})"
        if b is not None
        else f"- **{t}**: none (no file fits its memory)"
        for t, b in best(report).items()
    ]
    if report.findings:
        lines += ["", "## Findings", ""] + [f"- {f}" for f in report.findings]
    if verdict is not None:
        lines += ["", f"## Budgets: {verdict.status.upper()}", ""]
        lines += [f"- {c.status}: {c.message}" for c in verdict.checks]
    return "\n".join(lines) + "\n"


def _plain_value(v) -> str:
    """A host fact as text: lists joined, mappings as ``key: value`` pairs (not raw JSON)."""
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_plain_value(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_plain_value(x) for x in v)
    return "-" if v is None else str(v)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plots._plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


# One colour per precision, so a glance tells fp32 from int8 whatever the file order (issue #26).
_PRECISION_COLOURS = {"fp32": "C0", "fp16": "C2", "int8": "C3", "int16x8": "C4", "dynamic": "C1"}


def _styles(records) -> dict[str, tuple[str, str]]:
    """File name -> (colour by precision, marker): each file of a precision gets its own marker."""
    out: dict[str, tuple[str, str]] = {}
    per_colour: dict[str, int] = {}
    for r in records:
        name = Path(r.artifact).name
        if name in out:
            continue
        colour = _PRECISION_COLOURS.get(str(r.precision), "C7")
        i = per_colour[colour] = per_colour.get(colour, -1) + 1
        out[name] = (colour, "osD^vP*Xh<>p"[i % 12])
    return out


def _tradeoff(report) -> str:
    """Accuracy vs p50 per target. Each file keeps one colour and marker in every panel and is
    named in one legend (annotations overprinted when files sat on the same point)."""
    plt = plots._plt()
    targets = sorted({r.target for r in report.records})
    names = list(dict.fromkeys(Path(r.artifact).name for r in report.records))
    style = _styles(report.records)
    cols = min(3, len(targets))
    rows_n = (len(targets) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.6 * cols, 3.4 * rows_n + 0.4 * len(names) / 3), squeeze=False)
    accs = [100 * r.accuracy for r in report.records if r.accuracy is not None]
    accs += [100 * report.reference.accuracy] if report.reference is not None else []
    low = max(0.0, min(accs) - 2.0)
    for ax, t in zip(axes.flat, targets):
        here = [r for r in report.records if r.target == t]
        # Files at the same point (to the plotted precision) are drawn as concentric markers,
        # the first largest, so none hides another (issue #26).
        stack: dict[tuple, int] = {}
        for r in here:
            key = (round(r.latency.p50, 2), round(100 * r.accuracy, 2))
            stack[key] = stack.get(key, 0) + 1
        seen: dict[tuple, int] = {}
        for r in here:
            colour, marker = style[Path(r.artifact).name]
            measured = r.latency.provenance != "estimated"
            key = (round(r.latency.p50, 2), round(100 * r.accuracy, 2))
            k = seen[key] = seen.get(key, -1) + 1
            ax.scatter(
                r.latency.p50,
                100 * r.accuracy,
                s=60 + 90 * (stack[key] - 1 - k),
                marker=marker,
                edgecolors=colour,
                facecolors=colour if measured else "none",
                linewidths=1.5,
                zorder=3 + k,
                clip_on=False,
            )
        if report.reference is not None:
            ax.axhline(100 * report.reference.accuracy, color="grey", ls=":", lw=1)
        ax.set_ylim(low, 100.0)  # accuracy cannot exceed 100%: the axis stops there
        ax.set_title(t, fontsize=10)
        ax.set_xlabel("p50 latency, ms (filled: measured, hollow: estimated)", fontsize=7)
        ax.set_ylabel("accuracy, %")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(targets) :]:
        ax.axis("off")
    handles = [plt.Line2D([], [], ls="", marker=style[n][1], color=style[n][0], label=n) for n in names]
    fig.legend(handles=handles, loc="lower center", ncol=min(3, len(names)), fontsize=8, frameon=False)
    fig.suptitle("accuracy vs latency per target (dotted: float model)", fontsize=11)
    fig.tight_layout(rect=(0, 0.06 + 0.03 * ((len(names) + 2) // 3), 1, 1))
    return _png(fig)


def _distributions(report) -> str | None:
    """One box per (file, target) that was measured, labelled with the file's own name."""
    plt = plots._plt()
    ref = report.reference
    series = {"keras float (host)": list(ref.latency.samples)} if ref is not None and ref.latency is not None else {}
    for r in report.records:
        if r.latency.provenance != "estimated" and r.latency.samples:
            series.setdefault(f"{Path(r.artifact).name} ({r.target})", list(r.latency.samples))
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(series) + 1.5))
    ax.boxplot(list(series.values()), vert=False, showfliers=True, flierprops={"markersize": 2})
    ax.set_yticks(range(1, len(series) + 1), list(series.keys()), fontsize=8)
    ax.set_xscale("log")
    # minor log ticks get labels like 2x10^-1 that overprint each other: label decades only
    ax.xaxis.set_minor_formatter(_lazy_ticker().NullFormatter())
    ax.set_xlabel("latency per image, ms (log scale), measured runs")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _png(fig)


def _confusion(report) -> str:
    name = Path(next(iter(report.best.values())).artifact).name if report.best else "keras-float"
    matrix = np.array(report.confusion.get(name) or report.confusion["keras-float"])
    fig, ax = plots._plt().subplots(figsize=(4.5, 4))
    plots.draw_confusion(ax, matrix, report.classes, f"confusion: {name}")
    return _png(fig)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
td:first-child,th:first-child{text-align:left}.estimated{color:#8a5a00}.measured{color:#11620f}.on-device{color:#0b4f8a}
.fail{color:#b00020;font-weight:bold}.pass{color:#11620f;font-weight:bold}img{max-width:100%}
.bar{display:inline-block;height:10px;background:#3b6ea5;vertical-align:middle}"""


def html_page(report, verdict=None) -> str:
    """A standalone HTML page: tables, plots (inline PNG), findings and the budget verdict."""
    esc = html.escape
    header, rows = table(report)
    kind = header.index("latency is")
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td class='{esc(c) if i == kind else ''}'>{esc(c)}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>edgetransfer report</title>"
        f"<style>{_CSS}</style></head><body><h1>edgetransfer validation</h1>",
        f"<p>Data <code>{esc(report.data)}</code> ({esc(str(report.held_out.get('split')))}, "
        f"{report.held_out.get('images')} images); {esc(float_model_words(report))} on "
        f"{esc(str(report.host.get('cpu')))} "
        f"({report.host.get('cores')} cores). <span class='measured'>measured</span> figures ran on the host or "
        f"the device; <span class='estimated'>estimated</span> ones come from the per-op cost model.</p>",
    ]
    if verdict is not None:
        cls = "pass" if verdict.status == "passed" else "fail"
        items = "".join(
            f"<li class='{'pass' if c.status == 'passed' else 'fail'}'>{esc(c.message)}</li>" for c in verdict.checks
        )
        parts.append(f"<h2>Budgets: <span class='{cls}'>{esc(verdict.status.upper())}</span></h2><ul>{items}</ul>")
    parts.append(f"<h2>Every artifact on every target</h2><table><tr>{head}</tr>{body}</table>")
    parts.append(
        "<h2>Best artifact per target</h2><ul>"
        + "".join(
            (
                f"<li><b>{esc(t)}</b>: {esc(Path(b.artifact).name)}{esc(best_how(b))} "
                f"({b.p50_ms:.2f} ms, {esc(b.provenance)})</li>"
                if b is not None
                else f"<li><b>{esc(t)}</b>: none (no file fits its memory)</li>"
            )
            for t, b in best(report).items()
        )
        + "</ul>"
    )
    parts.append(
        f"<h2>Accuracy vs latency</h2><img alt='accuracy vs latency' src='data:image/png;base64,{_tradeoff(report)}'>"
    )
    dist = _distributions(report)
    if dist:
        parts.append(
            f"<h2>Latency distributions</h2><img alt='latency distributions' src='data:image/png;base64,{dist}'>"
        )
    parts.append(
        f"<h2>Confusion matrix</h2><img alt='confusion matrix' src='data:image/png;base64,{_confusion(report)}'>"
    )
    speed = html_section(report)
    if speed:
        parts.append(speed)
    if report.findings:
        parts.append("<h2>Findings</h2><ul>" + "".join(f"<li>{esc(f)}</li>" for f in report.findings) + "</ul>")
    host_rows = "".join(
        f"<tr><td>{esc(str(k))}</td><td>{esc(_plain_value(v))}</td></tr>" for k, v in report.host.items()
    )
    parts.append(f"<h2>Host</h2><table class='host'>{host_rows}</table></body></html>")
    return "\n".join(parts)


def write(report, path: str | Path, verdict=None) -> Path:
    """Write ``.html``, ``.md`` or ``.json`` by suffix, atomically."""
    path = Path(path)
    if path.suffix == ".html":
        text = html_page(report, verdict)
    elif path.suffix == ".md":
        text = markdown(report, verdict)
    else:
        text = json.dumps({**report.to_json(), **({"verdict": verdict.to_json()} if verdict else {})}, indent=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, text)


def _lazy_ticker():
    from .. import _lazy

    return _lazy.require("matplotlib.ticker")
