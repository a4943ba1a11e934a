"""Which recipes a format can produce: the format registry's answer, refused up front.

The recipe itself is a record (:class:`edgetransfer.records.recipe.QuantRecipe`).
"""

from __future__ import annotations

from ...errors import UnsupportedError
from ...records.recipe import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION_SIZE,
    IO_DTYPES,
    PRECISIONS,
    QuantRecipe,
    RecipeFile,
)
from .. import formats

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_CALIBRATION_SIZE",
    "IO_DTYPES",
    "PRECISIONS",
    "QuantRecipe",
    "RecipeFile",
    "check",
]


def check(recipe: QuantRecipe, fmt: str) -> None:
    """Refuse a (format, recipe) pair the toolchain cannot produce."""
    spec = formats.get(fmt)
    if recipe.precision not in spec.precisions:
        able = [f for f in formats.names() if recipe.precision in formats.get(f).precisions]
        raise UnsupportedError(
            f"{fmt} cannot do precision {recipe.precision}",
            fix=f"{fmt} supports {', '.join(spec.precisions)}; {recipe.precision} needs "
            f"--format {' or '.join(able) or '(none)'}",
        )
    if recipe.io_dtype not in spec.io_dtypes:
        able = [f for f in formats.file_formats() if recipe.io_dtype in formats.get(f).io_dtypes]
        raise UnsupportedError(
            f"--io {recipe.io_dtype} is {'/'.join(able)} only: {fmt} int8 keeps "
            f"{'/'.join(spec.io_dtypes)} input and output",
            fix=f"drop --io for --format {fmt}",
        )
    unknown = [o for o in recipe.options if o not in spec.quantizer_options]
    if unknown:
        raise UnsupportedError(
            f"{fmt} int8 has no quantizer option {', '.join(unknown)}",
            fix=f"{fmt} offers {', '.join(spec.quantizer_options) or 'none'}",
        )
