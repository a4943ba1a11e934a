"""Rendering of a model search (:class:`edgetransfer.search.SweepResult`): table, fronts, HTML.

Pure functions of the result; nothing here measures anything.
"""

from __future__ import annotations

import html
from pathlib import Path

from ..io import atomic_write
from . import _CSS, _png, plots

HEADER = ["#", "backbone", "size", "precision", "accuracy", "drop", "size MB", "MACs"]


def rows(result) -> tuple[list[str], list[list[str]]]:
    """Header and one row per configuration: latency per target with its provenance."""
    head = [*HEADER[:6], *(f"{t} p50" for t in result.targets), *HEADER[6:]]
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
                p.precision,
                f"{p.accuracy:.4f}",
                f"{p.accuracy_drop:+.2f}",
                *lat,
                f"{p.size_bytes / 1e6:.2f}",
                f"{p.macs / 1e6:.0f}M",
            ]
        )
    return head, out


def front_lines(result) -> list[str]:
    """Per target: the Pareto front (fastest first) and the pick within the budgets."""
    lines = []
    for t in result.targets:
        front = " -> ".join(
            f"#{i} {result.configs[i].name} ({result.configs[i].accuracy:.4f}, "
            f"{result.configs[i].latency[t].p50_ms:.2f} ms)"
            for i in result.pareto[t]
        )
        lines.append(f"front on {t} (accuracy vs p50): {front or 'none'}")
        b = result.best[t]
        lim = result.limits[t].describe()
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


def _fronts_png(result) -> str:
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
            ax.scatter(x, y, s=40, color="C0" if i in front else "0.75", zorder=3 if i in front else 2)
            ax.annotate(f"#{i}", (x, y), fontsize=7, color="0.2" if i in front else "0.6", xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
        pts = [(result.configs[i].latency[t].p50_ms, 100 * result.configs[i].accuracy) for i in result.pareto[t]]
        if pts:
            ax.plot(*zip(*pts), color="C0", lw=1.2, drawstyle="steps-post", label="Pareto front")
        b = result.best[t]
        if b is not None:
            p = result.configs[b]
            ax.scatter(p.latency[t].p50_ms, 100 * p.accuracy, marker="*", s=260, color="C3", zorder=4, label="pick")
        lim = result.limits[t].latency_ms
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
    fig.suptitle("accuracy vs latency per target (grey: dominated)", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def _stats_line(s) -> str:
    """What this call did. A resumed sweep that reused every configuration says so, rather than
    reading as the sweep's own cost ("0 computed ... 0 s", issue #26)."""
    if s.reused and not s.computed:
        return (
            f"{s.configs} configurations, all reused from the earlier sweep in this folder (resumed: their "
            f"figures are the ones measured then); this call took {s.seconds:.0f} s."
        )
    return (
        f"This call: {s.configs} configurations ({s.computed} computed, {s.reused} reused); {s.trained} runs "
        f"trained, {s.runs_reused} reused; feature cache {s.feature_hits} hits, {s.feature_misses} misses; "
        f"conversions and predictions {s.memo_hits} reused, {s.memo_misses} computed; {s.seconds:.0f} s."
    )


def html_page(result) -> str:
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
            f"<p>{_stats_line(s)} Accuracy drop is in points below each configuration's own float model; "
            "latency budgets are judged on p90.</p>",
            f"<h2>Pareto fronts</h2><img alt='Pareto fronts' src='data:image/png;base64,{_fronts_png(result)}'>",
            f"<h2>Fronts and picks</h2><ul>{picks}</ul>",
            f"<h2>Every configuration</h2>{table}",
            "<p>Grey rows are on no target's front.</p>",
            *(f"<p>Note: {esc(n)}</p>" for n in result.notes),
            "</body></html>",
        ]
    )


def write_html(result, path: str | Path) -> Path:
    """Write the HTML page atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, html_page(result))
