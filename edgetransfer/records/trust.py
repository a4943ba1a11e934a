"""A record read from disk speaks of one file: check that it is this file.

Measurements, device results and reports name the file they measured, but a name proves
nothing (issue 37: a report of one ``model.tflite`` judged another file of the same name). Every
record that measured a file carries its sha256; a reader given the file compares them here.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError


def require_same_file(path: str | Path, recorded: str, where: str, digest: str | None = None) -> str:
    """The sha256 of ``path`` when it is the one ``recorded`` at ``where`` (e.g.
    ``validation.json: records[0].sha256``); else a :class:`ConfigError` naming that key and the file.

    Args:
        digest: ``path``'s sha256 when the caller has it already (hashed once for many records).
    """
    from ..io import sha256_file

    digest = digest or sha256_file(path)
    if not recorded:
        raise ConfigError(
            f"{where} is empty: the record does not say which file it measured, so it cannot be "
            f"trusted for {Path(path).name}",
            path=path,
            fix="measure the file again with this version of edgetransfer (validate writes its sha256)",
        )
    if recorded != digest:
        raise ConfigError(
            f"{where} is {recorded[:12]}..., but {Path(path).name} has sha256 {digest[:12]}...: the record "
            "measured another file of the same name",
            path=path,
            fix="judge the report written for this file (or measure this file again)",
        )
    return digest
