"""Rendering of a per-tensor int8 diagnosis (:class:`edgetransfer.records.QuantDiagnosis`): HTML with a plot.

Pure functions of the record; nothing here measures anything.
"""

from __future__ import annotations

import html
from pathlib import Path

from ..errors import ConfigError
from ..exporter.formats.tensor_stats import FLOOR_DB
from ..exporter.quantization.diagnose import summary, table
from ..io import atomic_write
from ..records import QuantDiagnosis
from . import _CSS, _png, plots

TITLE = "<title>edgetransfer quant diagnosis</title>"  # how an existing page is known as ours
SHOWN = 40  # rows in the page's table (the JSON has every tensor)


def _plot(d: QuantDiagnosis) -> str:
    """Per tensor in graph order: above, the SNR accumulated up to it (lower is worse); below, the noise its
    op adds as a share of the tensor's signal power (taller is worse; the worst in red). The x axis names
    the Keras layers."""
    plt = plots._plt()
    order = sorted(range(len(d.tensors)), key=lambda i: d.tensors[i].position)
    ts = [d.tensors[i] for i in order]
    worst = {order.index(i) for i in range(min(max(d.top, 5), len(ts)))}
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(max(8.0, 0.14 * len(ts)), 6.0))
    x = list(range(len(ts)))
    top.plot(x, [t.snr_db for t in ts], color="C0", lw=1.4, marker=".")
    top.set_ylabel("accumulated SNR, dB")
    top.set_title(f"{Path(d.file).name}: int8 vs float per tensor, graph order (red: worst {len(worst)})", fontsize=10)
    added = [0.0 if t.added_db >= FLOOR_DB else 100 * 10 ** (-t.added_db / 10) for t in ts]
    bottom.bar(x, added, color=["C3" if i in worst else "0.6" for i in x])
    bottom.set_ylabel("noise the op adds, % of signal")
    step = max(1, len(ts) // 60)
    bottom.set_xticks(x[::step], [(t.layer or t.op_type).split(",")[0][:24] for t in ts][::step], rotation=90,
                      fontsize=6)  # fmt: skip
    for ax in (top, bottom):
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
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
    """Refuse, before any work, a page path holding a file that is not such a page nor empty (ConfigError, exit 2)."""
    path = Path(path)
    if path.exists() and not (path.is_file() and path.stat().st_size == 0):  # an empty file holds nothing (mktemp)
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
