"""Third-party chatter silenced at its source: prints and log records of libraries that talk to the
user directly, turned into edgetransfer debug records (``-vv`` shows them). Infrastructure: imported
by the formats and the quantization stage alike, imports nothing of edgetransfer."""

from __future__ import annotations

import logging

log = logging.getLogger("edgetransfer")


def quiet_onnxruntime_quantization() -> None:
    """ONNX Runtime's quantization tools talk to the user directly: ``calibrate.py`` prints its
    progress to stdout ("Collecting tensor data and making histogram ...", "Number of histogram bins :
    128 (The number may increase depends on the data it collects)", "Finding optimal threshold ...":
    onnxruntime/quantization/calibrate.py, entropy and percentile collectors), and ``quantize.py`` logs
    "Please consider to run pre-processing before quantization" on the *root* logger whenever a model
    lacks its pre-processing tag (``quantize_dynamic`` never gets one from us). Both reach a ``--json``
    document's stdout or the user's terminal (issues #26, #38). Here they become edgetransfer debug
    records (``-vv`` shows them): every ``print`` of the calibrate module without an explicit ``file=``,
    and every root-logger record issued from inside ``onnxruntime/quantization/``. Idempotent; a no-op
    without onnxruntime."""
    try:
        from onnxruntime.quantization import calibrate
    except Exception:  # not installed, or a build that fails to import: nothing prints then
        return
    if getattr(calibrate, "_edgetransfer_quiet", False):
        return

    def _print(*args, **kwargs) -> None:
        if kwargs.get("file") is not None:  # an explicit stream was asked for: not chatter
            print(*args, **kwargs)
            return
        log.debug("onnxruntime calibration: %s", kwargs.get("sep", " ").join(str(a) for a in args))

    calibrate.print = _print  # a module global shadowing the builtin
    logging.getLogger().addFilter(_ort_root_records_to_debug)
    calibrate._edgetransfer_quiet = True


def _ort_root_records_to_debug(record: logging.LogRecord) -> bool:
    """A root-logger filter: ONNX Runtime quantization's ``logging.warning(...)`` calls become debug records."""
    where = record.pathname.replace("\\", "/")
    if "/onnxruntime/quantization/" not in where:
        return True
    log.debug("onnxruntime quantization: %s", record.getMessage())
    return False
