"""Every record that crosses a stage or touches disk: frozen, with a kind, a schema version and
``to_json`` / ``from_json`` that refuse unknown or missing keys (the shape of ai-edge-quantizer's
``qtyping.py``: one place for the types, owned by no producer).

- ``base``: the :class:`Record` mixin and its strict decoder.
- ``vocab``: the vocabularies (precision, provenance, measure mode, status) as enums.
- ``run``: the run manifest and the exported file's manifest.
- ``measure``: budgets, measurements, validation report, checks and verdicts.
- ``export``: export index, quantization recipe and attempts, TFLM bundle.
- ``flows``: sweep points and results, pipeline state.
"""

from .base import Record
from .run import ArtifactManifest, DataInfo, IOSpec, Metrics, RunManifest

__all__ = ["ArtifactManifest", "DataInfo", "IOSpec", "Metrics", "Record", "RunManifest"]
