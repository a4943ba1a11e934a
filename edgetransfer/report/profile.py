"""Rendering of per-op profiles, tuned settings and bf16 executions (``validate --profile/--tune/--bf16``).

Pure functions of a :class:`~edgetransfer.records.measure.ValidationReport`: text lines for the CLI and an
HTML section (a bar per op type, then the top ops) for :func:`edgetransfer.report.html_page`.
"""

from __future__ import annotations

import html
from pathlib import Path

from ..records.profile import OpProfile, short_name

# Bars of the HTML section: one per op type, at most this many (the rest are summed into "other").
MAX_TYPES = 12


def _head(m, prof: OpProfile) -> str:
    threads = f"{prof.threads or 'default'} thread" + ("" if prof.threads == 1 else "s")
    return f"{Path(m.artifact).name} ({m.label}) on {m.target}, {prof.runtime}, {threads}"


def _settings(s: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in s.items()) or "defaults"


def speed_lines(report, top: int = 10) -> list[str]:
    """Text: tuned settings with their gain, then each profile (worst ops first), or why there is none."""
    out = []
    for m in report.records:
        for name, t in (m.tuning or {}).items():
            if "error" in t:
                out.append(f"tuning {Path(m.artifact).name} on {m.target}, {name}: not tuned ({t['error']})")
                continue
            gain = f", {t['default_p50_ms'] / t['p50_ms']:.2f}x the default" if t.get("default_p50_ms") else ""
            out.append(
                f"tuned {Path(m.artifact).name} on {m.target}, {name}: {_settings(t['settings'])} "
                f"({t['p50_ms']:.2f} ms vs default {_settings(t['default_settings'])} "
                f"{t['default_p50_ms'] or float('nan'):.2f} ms{gain}; {t['trials']} settings, {t['rounds']} rounds)"
            )
        if m.settings and not m.tuning:
            out.append(f"settings of {Path(m.artifact).name} ({m.label}) on {m.target}: {_settings(m.settings)}")
        for prof in m.profiles:
            out.append(f"profile: {_head(m, prof)}")
            out += ["  " + line for line in prof.render(top).splitlines()]
    return out


def _bars(prof: OpProfile) -> str:
    """One horizontal bar per op type, its width the type's share of the ops' sum."""
    types = list(prof.by_type().items())
    if len(types) > MAX_TYPES:
        types = types[: MAX_TYPES - 1] + [("other", sum(ms for _, ms in types[MAX_TYPES - 1 :]))]
    total = prof.total_ms or 1.0
    rows = "".join(
        f"<tr class='optype'><td>{html.escape(t)}</td><td>{ms:.3f}</td><td style='text-align:left'>"
        f"<div class='bar' style='width:{max(1, round(300 * ms / total))}px'></div> {100 * ms / total:.1f}%</td></tr>"
        for t, ms in types
    )
    return f"<table><tr><th>op type</th><th>ms</th><th>share of the ops' time</th></tr>{rows}</table>"


def _top_ops(prof: OpProfile, top: int) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in ("op", "type", "layer", "kind", "shape", "ms", "%", "MMAC", "GMAC/s", "% of peak", "kernel")
    )
    rows = []
    for o in prof.ops[:top]:
        cells = [
            short_name(o.name)[-60:],
            o.type,
            o.layer or "-",
            o.kind or "-",
            "x".join(str(d) for d in o.shape) or "-",
            f"{o.time_ms:.3f}",
            f"{100 * o.share:.1f}",
            f"{o.macs / 1e6:.2f}" if o.macs else "-",
            f"{o.gmacs:.1f}" if o.gmacs else "-",
            f"{100 * o.peak_share:.0f}" if o.peak_share else "-",
            o.kernel or "-",
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table class='topops'><tr>{head}</tr>{''.join(rows)}</table>"


def html_section(report, top: int = 15) -> str:
    """``<h2>Where the milliseconds go</h2>`` with each profile's bars and top ops; ``""`` without profiles."""
    parts = []
    for m in report.records:
        for prof in m.profiles:
            title = f"<h3>{html.escape(_head(m, prof))}</h3>"
            if not prof.supported:
                parts.append(f"{title}<p>No per-op profile: {html.escape(prof.reason)}.</p>")
                continue
            share = prof.peak_share()
            peaks = ", ".join(f"{k} {v:.0f} GMAC/s" for k, v in prof.peaks.items() if v)
            rated = f"; the file runs at {100 * share:.0f}% of this host's measured peak ({peaks})" if share else ""
            parts.append(
                f"{title}<p>Ops sum {prof.total_ms:.2f} ms of {prof.wall_ms:.2f} ms per run over {prof.runs} runs "
                f"({html.escape(prof.source)}; settings: {html.escape(_settings(prof.settings))}){rated}. "
                "Worst first: the ops losing the most milliseconds against the peak.</p>"
                + _bars(prof)
                + _top_ops(prof, top)
            )
    if not parts:
        return ""
    return "<h2>Where the milliseconds go</h2>" + "".join(parts)
