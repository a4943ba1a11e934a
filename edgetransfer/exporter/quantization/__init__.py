"""Quantization: recipes (what a file's precision is) and calibration data (what int8 is fitted to)."""

from __future__ import annotations

from .calibration import Calibration, calibration_set
from .recipe import CALIBRATION_METHODS, IO_DTYPES, PRECISIONS, QuantRecipe

__all__ = ["CALIBRATION_METHODS", "IO_DTYPES", "PRECISIONS", "Calibration", "QuantRecipe", "calibration_set"]
