"""The main job on an embedded default: real data from PyPI, real pretrained weights.

scikit-learn's handwritten digits (1,797 real 8x8 scans) written out as an image folder;
EfficientNet-Lite0 with its offline ImageNet weights, features workflow at 96 px; TFLite
and ONNX in fp32/fp16/int8; validation on the host CPU and three estimated mobile
targets; a budget check; the HTML report.

The quickstart is a pipeline file built in code (:func:`default_flow`) and run by
:func:`edgetransfer.flows.pipeline.run`: the same stages as ``edgetransfer run`` and the sweep.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..data import samples
from ..training import TrainConfig
from . import pipeline as flow_lib

TRAIN = TrainConfig(
    backbone="efficientnet_lite0",
    workflow="features",
    image_size=96,
    epochs=40,
    patience=5,
    learning_rate=3e-3,
    val_split=0.2,
    seed=0,
)


def default_flow(out_dir: str | Path) -> flow_lib.Flow:
    out_dir = Path(out_dir)
    return flow_lib.Flow(
        data=str(out_dir / "digits"),
        out=str(out_dir),
        train=TRAIN,
        export=flow_lib.ExportSpec(("tflite", "onnx"), ("fp32", "fp16", "int8"), "auto", 200),
        validate=flow_lib.ValidateSpec(("host-cpu", "pixel4-cpu", "pixel4-gpu", "edgetpu"), 1.0),
        # 8x8 digit scans are far from ImageNet: full int8 costs about 2.5 points here
        # (measured: TFLite 2.5, ONNX 1.4 to 2.0), so the demo's budget leaves room for it.
        check=flow_lib.CheckSpec(
            "model_int8_iouint8.tflite", "host-cpu", max_latency_ms=50.0, max_accuracy_drop=3.5, max_size_mb=5.0
        ),
        base=".",
    )


@dataclass(frozen=True)
class QuickstartResult:
    result: flow_lib.FlowResult
    seconds: float

    def to_json(self) -> dict:
        r = self.result
        return {
            "run_dir": str(r.run.run_dir),
            "val_accuracy": r.run.val_accuracy,
            "workflow": r.run.manifest.workflow,
            "artifacts": [a.to_json() for a in r.artifacts],
            "best": {t: b.to_json() for t, b in r.report.best.items()},
            "verdict": r.verdict.to_json() if r.verdict else None,
            "report": str(r.report_path),
            "seconds": round(self.seconds, 1),
        }


def run(out_dir: str | Path = "quickstart-out", log=print) -> QuickstartResult:
    """Write the digits folder (once) and run the whole pipeline on it."""
    start = time.perf_counter()
    samples.write_digits(Path(out_dir) / "digits")
    result = flow_lib.run(default_flow(out_dir), log=log)
    return QuickstartResult(result, time.perf_counter() - start)
