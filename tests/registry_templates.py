"""Contract templates for the format and runtime registries (issue #35), in the style of nncf's
cross-framework test templates (``tests/cross_fw/test_templates``): the tests are written once
against a registry entry's capabilities, and a concrete class gives the entries by a parametrized
fixture (``format_name``, ``runtime_name``). A format or runtime added to a registry is tested by
every contract without a line here; a plugin's registry can subclass the same templates.

The concrete classes: ``tests/unit/exporter/test_format_registry.py`` and
``tests/unit/runtime/test_runtime_registry.py``. Fast: the files are the tiny untrained run's
(``untrained_exports`` in conftest.py)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from edgetransfer import runtime
from edgetransfer.exporter import formats
from edgetransfer.exporter.quantization import CALIBRATION_METHODS, IO_DTYPES, PRECISIONS
from edgetransfer.runtime import spec as runtime_spec
from edgetransfer.runtime.base import Runtime, read_metadata

LAYOUTS = {"nhwc", "nchw"}
GRANULARITIES = {"per_channel", "per_tensor"}
# Max |probability - Keras probability| on the held-out images, per precision (as tests/unit/exporter/
# test_keras_parity.py argues them); fp32 a little looser here, for kernels other than the converter's own.
TOLERANCE = {"fp32": 1e-4, "fp16": 5e-3, "dynamic": 3e-2, "int8": 6e-2, "int16x8": 3e-2}


def _runtimes_of(fmt: str) -> set[str]:
    """The runtimes that run a file of ``fmt``: its own, and those of the packagings of it (TFLM runs
    the .tflite file its C source packages)."""
    packagings = [formats.get(n) for n in formats.names() if formats.get(n).packages == fmt]
    return {*formats.get(fmt).runtimes, *(r for p in packagings for r in p.runtimes)}


class FormatTemplate:
    """What every entry of the format registry must declare and do. Needs a ``format_name`` fixture."""

    def test_declares_its_capabilities(self, format_name):
        spec = formats.get(format_name)
        assert spec.suffix.startswith(".") and formats.for_path(f"m{spec.suffix}") is spec
        assert spec.precisions and set(spec.precisions) <= set(PRECISIONS)
        assert spec.io_dtypes and set(spec.io_dtypes) <= set(IO_DTYPES)
        assert spec.layouts and set(spec.layouts) <= LAYOUTS
        assert spec.calibration_methods and set(spec.calibration_methods) <= set(CALIBRATION_METHODS)
        assert spec.weight_granularities and set(spec.weight_granularities) <= GRANULARITIES
        assert spec.runtimes and set(spec.runtimes) <= set(runtime_spec.names())
        assert all(isinstance(c, str) and c for c in spec.converters)

    def test_its_hooks_resolve(self, format_name):
        spec = formats.get(format_name)
        assert callable(spec.metadata_reader_fn()) and callable(spec.op_reader_fn())
        module = spec.exporter_module()
        if spec.packages:  # a package of another format's file (TFLM's C source of a .tflite)
            assert spec.packages in formats.file_formats() and callable(module.package)
            assert spec.name not in formats.file_formats()
        else:
            assert callable(module.make_source) and callable(module.write)
        ranker = spec.sensitivity_ranker_fn()
        if ranker is not None:
            params = inspect.signature(ranker).parameters
            assert {"layout", "images", "size_allowance"} <= set(params) and len(params) == 6

    def test_its_files_carry_their_labels(self, format_name, untrained_exports, untrained_run):
        files = [a for (fmt, _), a in untrained_exports.items() if fmt == format_name]
        if formats.get(format_name).packages:
            assert not files  # packages are written from the file they package, not exported on their own
            return
        assert files, f"{format_name}: the exporter wrote no file of this format"
        for art in files:
            assert formats.for_path(art.path).name == format_name
            assert read_metadata(art.path)["labels"] == list(untrained_run.classes), art.path.name


class RuntimeTemplate:
    """What every entry of the runtime registry must declare and do. Needs a ``runtime_name`` fixture."""

    def test_spec_resolves_when_installed(self, runtime_name):
        spec = runtime_spec.get(runtime_name)
        assert spec.name == runtime_name and spec.kind in (runtime_spec.HOST, runtime_spec.MCU)
        assert spec.measures <= {runtime_spec.LATENCY, runtime_spec.MEMORY, runtime_spec.PROFILE}
        assert bool(spec.memory) == (runtime_spec.MEMORY in spec.measures)
        if spec.kind == runtime_spec.MCU:
            assert spec.estimate and not spec.measures_latency_here
        assert runtime_name in runtime.RUNTIMES
        if not spec.installed():
            pytest.skip(f"{runtime_name} is not installed here")
        cls = runtime_spec._resolve(spec.factory)
        assert runtime.RUNTIMES[runtime_name] == (cls, spec.modules)
        rt = spec.runtime()
        assert isinstance(rt, cls) and isinstance(rt, Runtime) and rt.name == runtime_name
        assert isinstance(runtime.get_runtime(runtime_name), cls)
        for ref in (spec.ops, spec.memory, spec.estimate):
            if ref:
                assert callable(runtime_spec._resolve(ref))

    def test_runs_every_file_it_takes_as_keras_does(self, runtime_name, untrained_exports, untrained_images):
        """Each exported file this runtime runs (the format registry's ``runtimes``, packagings included, narrowed by the
        runtime's own ``formats``/``precisions``) gives Keras' probabilities at the precision's tolerance."""
        spec = runtime_spec.get(runtime_name)
        if not spec.installed():
            pytest.skip(f"{runtime_name} is not installed here")
        takes = [
            ((fmt, precision), art)
            for (fmt, precision), art in sorted(untrained_exports.items())
            if runtime_name in _runtimes_of(fmt)
            and (not spec.formats or fmt in spec.formats)
            and (not spec.precisions or precision in spec.precisions)
        ]
        assert takes, f"{runtime_name} runs none of the exported files"
        x, ref = untrained_images
        rt = spec.runtime()
        for (_, precision), art in takes:
            session = rt.load(art.path)
            got = np.concatenate([session.run(x[i : i + 1]) for i in range(len(x))])
            assert got.shape == ref.shape and np.isfinite(got).all(), art.path.name
            err = float(np.abs(got - ref).max())
            assert err <= TOLERANCE[precision], f"{runtime_name} on {art.path.name}: max |p - keras| = {err:.2e}"
