"""The export stage: a trained run becomes files a device runs, each with its manifest.

- :mod:`.artifacts`: :func:`export` (plan the jobs, write each file, the index) and
  :class:`ExportedArtifact`, an exported file read back with its manifest.
- :mod:`.formats`: the format registry (TFLite, ONNX, TFLM), one module per format.
- :mod:`.quantization`: recipes, calibration, the diagnosis and the accuracy-bounded search.

The package is named for the stage, not the verb: ``edgetransfer.export`` is the function.
"""

from .artifacts import ExportedArtifact, export, plan, write_artifact

__all__ = ["ExportedArtifact", "export", "plan", "write_artifact"]
