"""``validate --device-result``: the latency of the files a device's results name, taken from them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .. import gate
from ..evaluation.device_results import latency_of
from ..records.device import DeviceResult
from ..records.measure import ValidationReport


def apply_to_report(
    report: ValidationReport, results: dict[str, list[DeviceResult]], targets: dict
) -> ValidationReport:
    """``report`` with the latency of each file named in ``results`` (file name -> its results) taken from
    them on every target, and each target's best pick made again. ``targets``: name -> profile."""
    records = []
    for m in report.records:
        found = results.get(Path(m.artifact).name)
        if found and not m.execution:
            lat, repeats = latency_of(found)
            m = dataclasses.replace(m, latency=lat, p90_repeats=repeats, settings={})
        records.append(m)
    return dataclasses.replace(report, records=tuple(records), best=gate.best_per_target(records, targets))
