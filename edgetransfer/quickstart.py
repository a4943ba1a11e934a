"""The main job on an embedded default: real data from PyPI, real pretrained weights.

scikit-learn's handwritten digits (1,797 real 8x8 scans) written out as an image folder,
EfficientNet-Lite0 with its offline ImageNet weights, the features workflow at 128 px.
Each later stage of the path joins here as it lands.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from . import data as data_lib
from . import samples
from .train import TrainConfig, TrainedModel, train

DEFAULT_CONFIG = TrainConfig(backbone="efficientnet_lite0", workflow="features", image_size=128, epochs=30,
                             patience=5, val_split=0.2, seed=0)


@dataclass(frozen=True)
class QuickstartResult:
    dataset: Path
    report: data_lib.DataReport
    run: TrainedModel
    seconds: float

    def to_json(self) -> dict:
        m = self.run.manifest
        return {"dataset": str(self.dataset), "counts": self.report.counts, "run_dir": str(self.run.run_dir),
                "backbone": m["backbone"], "workflow": m["workflow"], "val_accuracy": m["metrics"]["val_accuracy"],
                "train_seconds": m["train_seconds"], "seconds": round(self.seconds, 1)}


def run(out_dir: str | Path = "quickstart-out", config: TrainConfig = DEFAULT_CONFIG) -> QuickstartResult:
    """Write the digits folder, check it, train on it; a previous run in ``out_dir`` is replaced."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    folder = samples.write_digits(out_dir / "digits")
    ds = data_lib.load(folder, val_split=config.val_split, seed=config.seed)
    run_dir = out_dir / "run"
    for stale in (run_dir, run_dir.with_name("run.partial")):
        shutil.rmtree(stale, ignore_errors=True)
    trained = train(folder, config, out=run_dir)
    return QuickstartResult(folder, ds.report, trained, time.perf_counter() - start)
