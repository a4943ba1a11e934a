"""Rendering of a per-tensor int8 diagnosis (:class:`edgetransfer.records.QuantDiagnosis`): HTML with a plot.

Pure functions of the record; nothing here measures anything.
"""

from __future__ import annotations

import html
from pathlib import Path

from ..errors import ConfigError
from ..io import atomic_write
from ..quantization.diagnose import summary, table
from ..records import QuantDiagnosis
from . import _CSS, _png, plots

TITLE = "<title>edgetransfer quant diagnosis</title>"  # how an existing page is known as ours
SHOWN = 40  # rows in the page's table (the JSON has every tensor)


def _plot(d: QuantDiagnosis) -> str:
    """Per tensor in graph order: the SNR accumulated up to it (line) and the SNR of what its op adds (bars,
    the worst ``top`` in red); the x axis names the Keras layers where there is room."""
    plt = plots._plt()
    order = sorted(range(len(d.tensors)), key=lambda i: d.tensors[i].position)
    ts = [d.tensors[i] for i in order]
    worst = {order.index(i) for i in range(min(max(d.top, 5), len(ts)))}
    fig, ax = plt.subplots(figsize=(max(8.0, 0.12 * len(ts)), 4.2))
    x = range(len(ts))
    ax.bar(x, [t.added_db for t in ts], color=["C3" if i in worst else "0.7" for i in x], label="adds (dB)")
    ax.plot(x, [t.snr_db for t in ts], color="C0", lw=1.4, marker=".", label="accumulated SNR (dB)")
    step = max(1, len(ts) // 40)
    ax.set_xticks(list(x)[::step], [(t.layer or t.op_type)[:28] for t in ts][::step], rotation=90, fontsize=6)
    ax.set_ylabel("SNR against float, dB (lower is worse)")
    ax.set_title(f"{Path(d.file).name}: error per tensor, graph order (red: worst {len(worst)})", fontsize=10)
    ax.set_ylim(0, min(60.0, max([t.added_db for t in ts] + [t.snr_db for t in ts] + [10.0]) + 5))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _png(fig)


def html_page(d: QuantDiagnosis) -> str:
    """A standalone page: the plot, the summary, the worst tensors with their measured fixes."""
    esc = html.escape
    head, rows = table(d, SHOWN)
    body = "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
    for r in rows:
        body += "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>"
    body += "</table>"
    more = f"<p>{len(d.tensors) - SHOWN} more tensors in the JSON (--json).</p>" if len(d.tensors) > SHOWN else ""
    return "\n".join(
        [
            f"<!doctype html><html><head><meta charset='utf-8'>{TITLE}<style>{_CSS}</style></head><body>",
            "<h1>edgetransfer int8 diagnosis</h1>",
            *(f"<p>{esc(line)}</p>" for line in summary(d)),
            f"<h2>Error per tensor</h2><img alt='error per tensor' src='data:image/png;base64,{_plot(d)}'>",
            f"<h2>Worst tensors</h2>{body}{more}",
            "</body></html>",
        ]
    )


def check_path(path: str | Path) -> Path:
    """Refuse, before any work, a page path holding a file that is not such a page (ConfigError, exit 2)."""
    path = Path(path)
    if path.exists():
        try:
            ours = path.is_file() and TITLE in path.read_text(encoding="utf-8", errors="replace")[:4096]
        except OSError:
            ours = False
        if not ours:
            raise ConfigError(
                "refusing to write the diagnosis page over a file edgetransfer did not write",
                path=path,
                fix="choose another --html path",
            )
    return path


def write_html(d: QuantDiagnosis, path: str | Path) -> Path:
    """Write the page atomically; never over a file that is not such a page."""
    path = check_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, html_page(d))
