import json

import edgetransfer
from edgetransfer.cli import cli

GROUPS = ["data", "backbones", "train", "import", "export", "validate", "check", "targets", "quickstart"]


def test_version(invoke):
    code, out, _ = invoke("--version")
    assert code == 0 and edgetransfer.__version__ in out


def test_help_lists_every_command_group(invoke):
    code, out, _ = invoke("--help")
    assert code == 0
    for name in GROUPS:
        assert f"\n  {name} " in out, name


def test_public_api_is_pinned():
    # Growing the public API is a decision: update this list on purpose.
    assert sorted(edgetransfer.__all__) == sorted(
        [
            "__version__",
            "Budget",
            "Classifier",
            "ConfigError",
            "DataError",
            "DataReport",
            "Dataset",
            "EdgeTransferError",
            "ExportError",
            "ExportedArtifact",
            "FileIssue",
            "ImageFile",
            "Measurement",
            "MissingDependencyError",
            "QuantDiagnosis",
            "QuantRecipe",
            "RuntimeBackendError",
            "SweepResult",
            "ToolchainError",
            "TrainConfig",
            "TrainedModel",
            "UnsafeFileError",
            "UnsupportedError",
            "ValidationReport",
            "Verdict",
            "WeightsError",
            "check",
            "diagnose_quantization",
            "export",
            "judge",
            "import_model",
            "load_dataset",
            "sweep",
            "train",
            "validate",
        ]
    )
    for name in edgetransfer.__all__:
        assert hasattr(edgetransfer, name), name


def test_import_does_not_load_tensorflow():
    import subprocess
    import sys

    code = "import sys, edgetransfer, edgetransfer.cli; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_unknown_option_is_usage_error(invoke):
    code, _, err = invoke("data", "inspect", "--no-such-flag", ".")
    assert code == 2 and "no-such-flag" in err


def test_json_stdout_is_one_document(invoke, tmp_path):
    from conftest import make_folder

    make_folder(tmp_path / "ds", {"a": 3, "b": 3})
    code, out, _ = invoke("-v", "data", "inspect", tmp_path / "ds", "--json")
    assert code == 0
    assert json.loads(out)["classes"] == ["a", "b"]


def test_debug_flag_shows_traceback_instead_of_message(runner, tmp_path):
    res = runner.invoke(cli, ["--debug", "data", "inspect", str(tmp_path / "missing")])
    assert res.exit_code != 0 and isinstance(res.exception, edgetransfer.DataError)
