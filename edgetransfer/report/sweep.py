"""Rendering of a model search (:class:`edgetransfer.records.SweepResult`): table, fronts, HTML.

Pure functions of the result; nothing here measures anything.
"""

from __future__ import annotations

import html
from pathlib import Path

from ..io import atomic_write
from ..records import SweepResult, SweepStats
from ..records.flows import describe_limits
from . import _CSS, _png, plots

HEADER = ["#", "backbone", "size", "precision", "accuracy", "drop", "size MB", "MACs"]


def rows(result: SweepResult) -> tuple[list[str], list[list[str]]]:
    """Header and one row per configuration: latency per target with its provenance (and, with a
    teacher, whether the configuration was trained plainly or distilled)."""
    head = [*HEADER[:6], *(f"{t} p50" for t in result.targets), *HEADER[6:]]
    if result.teacher is not None:
        head.insert(4, "trained")
    out = []
    for i, p in enumerate(result.configs):
        lat = [
            f"{p.latency[t].p50_ms:.2f} ms {p.latency[t].provenance}" if t in p.latency else "-"
            for t in result.targets
        ]
        out.append(
            [
                str(i),
                p.backbone,
                str(p.image_size),
                p.label,  # fp32, or "fp32 as bf16" for the fp32 file run in bf16 (sweep --bf16)
                f"{p.accuracy:.4f}",
                f"{p.accuracy_drop:+.2f}",
                *lat,
                f"{p.size_bytes / 1e6:.2f}",
                f"{p.macs / 1e6:.0f}M",
            ]
        )
        if result.teacher is not None:
            out[-1].insert(4, "distilled" if p.distilled else "plain")
    return head, out


def _front(result: SweepResult, t: str, front) -> str:
    c = result.configs
    return " -> ".join(f"#{i} {c[i].name} ({c[i].accuracy:.4f}, {c[i].latency[t].p50_ms:.2f} ms)" for i in front)


def twins(result: SweepResult) -> list[tuple[int, int]]:
    """``(distilled, plain)`` index pairs of the same backbone, size and precision."""
    plain = {(p.backbone, p.image_size, p.tag): i for i, p in enumerate(result.configs) if not p.distilled}
    pairs = [(i, plain.get((p.backbone, p.image_size, p.tag))) for i, p in enumerate(result.configs)]
    return [(i, j) for i, j in pairs if result.configs[i].distilled and j is not None]


def teacher_lines(result: SweepResult) -> list[str]:
    """The teacher, and each distilled configuration's accuracy against its plain twin."""
    t = result.teacher
    if t is None:
        return []
    how = "the grid's most accurate group" if t.chosen == "auto" else "given"
    lines = [f"teacher: {t.name} ({how}, float accuracy {t.accuracy:.4f}, {t.macs / 1e6:.0f}M MACs) {t.run}"]
    for i, j in twins(result):
        d, p = result.configs[i], result.configs[j]
        lines.append(
            f"  distilled #{i} {d.name}: accuracy {p.accuracy:.4f} plain (#{j}) -> {d.accuracy:.4f} "
            f"({d.accuracy - p.accuracy:+.4f})"
        )
    if lines[1:]:  # measured twins differ by the load of the moment, not by their graphs
        lines.append(
            "  a distilled model is its plain twin's graph (same ops and size, only the weights differ): "
            "a p50 difference between twins is measurement noise"
        )
    return lines


def front_lines(result: SweepResult) -> list[str]:
    """Per target: the Pareto front (fastest first) and the pick within the budgets."""
    lines = teacher_lines(result)
    for t in result.targets:
        front = _front(result, t, result.pareto[t])
        if t in result.plain_pareto:
            lines.append(f"front on {t} with the teacher (accuracy vs p50): {front or 'none'}")
            plain = _front(result, t, result.plain_pareto[t])
            lines.append(f"front on {t} without it (plain only): {plain or 'none'}")
        else:
            lines.append(f"front on {t} (accuracy vs p50): {front or 'none'}")
        b = result.best[t]
        lim = describe_limits(result.limits[t])
        if b is None:
            c = result.closest.get(t)
            near = f"; closest #{c} {result.configs[c].name}" if c is not None else ""
            lines.append(f"pick on {t} ({lim}): NONE meets the budget{near}")
        else:
            p = result.configs[b]
            lat = p.latency[t]
            lines.append(
                f"pick on {t} ({lim}): #{b} {p.name}, accuracy {p.accuracy:.4f}, p90 {lat.p90_ms:.2f} ms "
                f"({lat.provenance}), {p.size_bytes / 1e6:.2f} MB -> {result.pipelines.get(t, '')}"
            )
    return lines


def timing(s: SweepStats) -> str:
    """This call's seconds, and what computing the configurations cost when they were computed
    (a resumed sweep that computed nothing keeps the original run's figure)."""
    now = f"{s.seconds:.1f} s"
    if s.reused and s.compute_seconds:
        return f"{now} (computing the {s.configs} configurations took {s.compute_seconds:.0f} s in all)"
    return now


def _fronts_png(result: SweepResult) -> str:
    """One panel per target: every configuration grey, the front in colour, the pick starred."""
    plt = plots._plt()
    n = len(result.targets)
    cols = min(2, n)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(6 * cols, 4.2 * ((n + cols - 1) // cols)))
    axes = [axes] if n == 1 else list(getattr(axes, "flat", axes))
    for ax, t in zip(axes, result.targets):
        on = [i for i, p in enumerate(result.configs) if t in p.latency]
        front = set(result.pareto[t])
        for i in on:
            p = result.configs[i]
            x, y = p.latency[t].p50_ms, 100 * p.accuracy
            mark = "^" if p.distilled else "s" if p.execution else "o"  # distilled: triangles; bf16: squares
            ax.scatter(x, y, s=40, marker=mark, color="C0" if i in front else "0.75", zorder=3 if i in front else 2)
            ax.annotate(f"#{i}", (x, y), fontsize=7, color="0.2" if i in front else "0.6", xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
        pts = [(result.configs[i].latency[t].p50_ms, 100 * result.configs[i].accuracy) for i in result.pareto[t]]
        if pts:
            label = "Pareto front" + (" with the teacher" if t in result.plain_pareto else "")
            ax.plot(*zip(*pts), color="C0", lw=1.2, drawstyle="steps-post", label=label)
        if t in result.plain_pareto:
            c = result.configs
            plain = [(c[i].latency[t].p50_ms, 100 * c[i].accuracy) for i in result.plain_pareto[t]]
            ax.plot(
                *zip(*plain),
                color="0.45",
                lw=1,
                ls="--",
                marker="o",
                mfc="none",
                ms=10,
                drawstyle="steps-post",
                label="front without it (circled)",
            )
        b = result.best[t]
        if b is not None:
            p = result.configs[b]
            ax.scatter(p.latency[t].p50_ms, 100 * p.accuracy, marker="*", s=260, color="C3", zorder=4, label="pick")
        lim = result.limits[t].latency_p90_ms
        if lim is not None:
            ax.axvline(lim, color="C3", ls="--", lw=1, label=f"latency budget {lim:g} ms (p90)")
        prov = {result.configs[i].latency[t].provenance for i in on}
        ax.set_title(f"{t} ({'/'.join(sorted(prov))})", fontsize=10)
        ax.set_xlabel("p50 latency, ms")
        ax.set_ylabel("accuracy, %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in axes[n:]:
        ax.axis("off")
    marks = ("; triangles: distilled" if result.teacher else "") + (
        "; squares: fp32 run in bf16" if any(p.execution for p in result.configs) else ""
    )
    title = f"accuracy vs latency per target (grey: dominated{marks})"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _png(fig)


def html_page(result: SweepResult) -> str:
    """A standalone page: the fronts plotted, the picks, every configuration."""
    esc = html.escape
    head, body = rows(result)
    s = result.stats
    table = "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
    for i, r in enumerate(body):
        on_front = any(i in result.pareto[t] for t in result.targets)
        style = "" if on_front else " style='color:#888'"
        table += f"<tr{style}>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>"
    table += "</table>"
    picks = "".join(f"<li>{esc(line)}</li>" for line in front_lines(result))
    return "\n".join(
        [
            f"<!doctype html><html><head><meta charset='utf-8'><title>edgetransfer sweep</title>"
            f"<style>{_CSS}</style></head><body><h1>edgetransfer model search</h1>",
            f"<p>{s.configs} configurations ({s.computed} computed, {s.reused} reused); {s.trained} runs trained "
            f"({s.distilled} distilled), {s.runs_reused} reused; feature cache {s.feature_hits} hits, "
            f"{s.feature_misses} misses; "
            f"conversions and predictions {s.memo_hits} reused, {s.memo_misses} computed; "
            f"{esc(timing(s))}. Accuracy drop is in points below each configuration's own float model; "
            "latency budgets are judged on p90.</p>",
            f"<h2>Pareto fronts</h2><img alt='Pareto fronts' src='data:image/png;base64,{_fronts_png(result)}'>",
            f"<h2>Fronts and picks</h2><ul>{picks}</ul>",
            f"<h2>Every configuration</h2>{table}",
            "<p>Grey rows are on no target's front.</p>",
            *(
                [
                    "<p>With a teacher the fronts and picks range over the plain and the distilled configurations; "
                    "the dashed line is the front of the plain ones alone, from the same sweep. The teacher and "
                    "the picks are chosen on the same held-out split the accuracies are measured on.</p>"
                ]
                if result.teacher is not None
                else []
            ),  # fmt: skip
            *(f"<p>Note: {esc(n)}</p>" for n in result.notes),
            "</body></html>",
        ]
    )


def write_html(result: SweepResult, path: str | Path) -> Path:
    """Write the HTML page atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, html_page(result))
