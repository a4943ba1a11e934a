"""Issue 25: a model's file name never reaches a shell as code through a ``command`` runner template.

20 hostile names (quotes of both kinds, ``$()``, backticks, ``;``, ``|``, newline, leading ``-``)
through templates that call no shell, ``sh -c '...'``, ``sh -c "..."`` and ``ssh host '...'`` (a
stand-in ssh that hands the joined words to ``sh -c``, as a real remote login shell does).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from edgetransfer.evaluation import runners

PY = sys.executable
HOSTILE = [
    'q";touch PWNED;".tflite',
    "q';touch PWNED;'.tflite",
    "$(touch PWNED).tflite",
    "`touch PWNED`.tflite",
    "a;touch PWNED.tflite",
    "a|touch PWNED.tflite",
    "a&&touch PWNED.tflite",
    "a\ntouch PWNED\n.tflite",
    "-rf.tflite",
    "--help.tflite",
    "a b.tflite",
    "a\tb.tflite",
    "'\"'\"'$(touch PWNED)'.tflite",
    "x'$(touch PWNED)'.tflite",
    'x"$(touch PWNED)".tflite',
    "x\\'; touch PWNED; echo .tflite",
    "*.tflite",
    "~root.tflite",
    "ünï cødé.tflite",
    "a>PWNED.tflite",
]
# bench.py checks it got the model's bytes, then prints bench JSON.
BENCH = """
import json, sys
data = open(sys.argv[1], "rb").read()
assert data == b"MODEL-BYTES", data
print(json.dumps({"p50": 1.0, "p90": 1.0, "p99": 1.0, "mean": 1.0, "std": 0.0, "runs": 3}))
"""
FAKE_SSH = f"""#!{PY}
import subprocess, sys
args = sys.argv[1:]
while args and args[0].startswith("-"):
    args = args[2:] if args[0] in ("-o", "-p") else args[1:]
sys.exit(subprocess.run(["sh", "-c", " ".join(args[1:])]).returncode)
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "bench.py").write_text(BENCH)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(work)  # a command that ran would touch PWNED here
    return tmp_path


TEMPLATES = [
    f"{PY} {{bench}} {{{{model}}}}",
    f"sh -c '{PY} {{bench}} {{{{model}}}} {{{{threads}}}}'",
    f'sh -c "{PY} {{bench}} {{{{model}}}}"',
    f"ssh -o BatchMode=yes pi@device '{PY} {{bench}} {{{{model}}}}'",
    f'ssh pi@device "cd /tmp && {PY} {{bench}} {{{{model}}}}"',
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_hostile_model_names_run_no_command(setup, template):
    template = template.format(bench=setup / "bench.py")
    ok = 0
    for name in HOSTILE:
        model = setup / "models" / name.replace("/", "_")
        model.parent.mkdir(exist_ok=True)
        model.write_bytes(b"MODEL-BYTES")
        res = runners.parse(template, "profile.yaml").run(model, threads=2)
        assert res.latency.p50 == 1.0, name
        ok += 1
        leaked = [p for p in setup.rglob("PWNED*")]
        assert not leaked, (name, template, leaked)
    assert ok == len(HOSTILE) == 20


def test_real_path_in_the_environment(setup):
    model = setup / 'q";touch PWNED;".onnx'
    model.write_bytes(b"MODEL-BYTES")
    script = setup / "env.py"
    script.write_text(
        "import json, os, sys\n"
        "assert open(os.environ['EDGETRANSFER_MODEL'], 'rb').read() == b'MODEL-BYTES'\n"
        "assert sys.argv[1].endswith('.onnx')\n"
        "print(json.dumps({'p50': 2.0, 'p90': 2.0, 'p99': 2.0, 'mean': 2.0, 'std': 0.0, 'runs': 1}))\n"
    )
    res = runners.parse(f"sh -c '{PY} {script} {{model}}'", "p.yaml").run(model)
    assert res.latency.p50 == 2.0
    alias = Path(res.command[-1].split()[-1].rstrip("'"))
    assert not alias.parent.exists()  # the link's folder is gone afterwards
    assert not list(setup.rglob("PWNED*"))
