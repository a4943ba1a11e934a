"""strict_yaml on hostile and sloppy YAML: every refusal is a ConfigError naming the file."""

import time

import pytest

from edgetransfer import strict_yaml as sy
from edgetransfer.errors import EXIT_USAGE, ConfigError

# The 678-byte alias bomb of issue #13 (nine levels of nine aliases: 9**9 leaves when walked).
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")
)


def _refused(text, match, path="prof.yaml"):
    with pytest.raises(ConfigError, match=match) as err:
        sy.load_text(text, path=path)
    assert err.value.path == path and err.value.fix and err.value.exit_code == EXIT_USAGE
    return err.value


def test_plain_yaml_reads_like_safe_load():
    text = "name: x\nbase: &b {lat: 1.5, n: 2}\nother:\n  <<: *b\n  n: 3\nlist: [a, b]\nshared: [*b, *b]\n"
    assert sy.load_text(text, path="p.yaml") == {
        "name": "x",
        "base": {"lat": 1.5, "n": 2},
        "other": {"lat": 1.5, "n": 3},
        "list": ["a", "b"],
        "shared": [{"lat": 1.5, "n": 2}] * 2,
    }
    assert sy.load_text("", path="p.yaml") is None


def test_duplicate_key_names_key_and_lines():
    err = _refused("budgets:\n  accuracy_drop: 1.0\n  accuracy_drop: 50.0\n", "duplicate key 'accuracy_drop'")
    assert "line 3" in err.problem and "first on line 2" in err.problem
    _refused("{a: 1, a: 2}", "duplicate key 'a' on line 1")


def test_alias_bomb_is_refused_fast():
    assert len(BOMB) < 700
    t0 = time.perf_counter()
    _refused(BOMB, "alias bomb")
    assert time.perf_counter() - t0 < 2


def test_recursive_alias_does_not_hang():
    assert sy.load_text("a: &a [1, *a]", path="p.yaml")["a"][0] == 1


@pytest.mark.parametrize(
    "text",
    [
        "[" * 20000 + "]" * 20000,
        "{a: " * 20000 + "1" + "}" * 20000,
        "a:\n" + "".join("  " * i + " -\n" for i in range(1, 200)),
    ],
)
def test_deep_nesting_is_refused_without_traceback(text):
    _refused(text, "nesting deeper than 50")


def test_invalid_utf8_and_size(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8") as err:
        sy.load_file(bad)
    assert err.value.path == str(bad)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (sy.MAX_BYTES + 1))
    with pytest.raises(ConfigError, match="byte limit"):
        sy.load_file(big)
    with pytest.raises(ConfigError, match="cannot read"):
        sy.load_file(tmp_path / "missing.yaml")


def test_syntax_error_names_file_and_line():
    err = _refused("a: [1, 2\n", "not valid YAML")
    assert "prof.yaml" in err.problem and "line" in err.problem


@pytest.mark.parametrize(
    "value, match",
    [
        ("10ms", "must be a number, not '10ms'"),
        (float("inf"), "finite"),
        (True, "a number"),
        (None, "not null"),
        (-1.0, "at least 0"),
    ],
)
def test_want_number_refusals(value, match):
    with pytest.raises(ConfigError, match=match) as err:
        sy.want_number(value, "budgets.latency_p90_ms", "t.yaml", min=0)
    assert err.value.render().startswith("t.yaml: key 'budgets.latency_p90_ms'") and err.value.fix


def test_want_number_explains_yaml11_exponent_and_overflow():
    raw = sy.load_text("a: 1e400\nb: 1.0e+400\nc: 1e-3\n", path="t.yaml")
    with pytest.raises(ConfigError, match="must be a number") as err:
        sy.want_number(raw["c"], "c", "t.yaml")
    assert "signed exponent" in err.value.fix
    for key in "ab":
        with pytest.raises(ConfigError, match=f"key '{key}' must be a"):
            sy.want_number(raw[key], key, "t.yaml")
    assert sy.want_number(3, "x", "t.yaml", min=0, max=5) == 3.0


def test_want_int_and_lists():
    assert sy.want_int(2, "threads", "t.yaml", min=1) == 2 and sy.want_int(4.0, "threads", "t.yaml") == 4
    for bad, match in (
        (2.5, "whole number, not 2.5"),
        ("ten", "whole number, not 'ten'"),
        (0, "at least 1"),
        (False, "whole number"),
    ):
        with pytest.raises(ConfigError, match=match):
            sy.want_int(bad, "train.epochs", "t.yaml", min=1)
    with pytest.raises(ConfigError, match="list of strings, not 'tflite'") as err:
        sy.want_str_list("tflite", "formats", "t.yaml")
    assert "formats: [tflite]" in err.value.fix
    with pytest.raises(ConfigError, match="list of strings"):
        sy.want_str_list(["tflite", 3], "formats", "t.yaml")
    with pytest.raises(ConfigError, match="unknown value 'tflit'") as err:
        sy.want_str_list(["tflit"], "formats", "t.yaml", choices=["tflite", "onnx"])
    assert "did you mean 'tflite'" in err.value.fix
    assert sy.want_str_list(["onnx"], "formats", "t.yaml", choices=["tflite", "onnx"]) == ("onnx",)
    with pytest.raises(ConfigError, match="a string, not True"):
        sy.want_str(True, "runtime", "t.yaml")
