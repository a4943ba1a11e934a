"""Issue 25: class folder names that would break labels.txt are refused; dot folders are reported."""

from __future__ import annotations

import pytest
from conftest import make_folder

from edgetransfer import data
from edgetransfer.errors import DataError


@pytest.mark.parametrize("bad", ["two\nlines", "cr\rhere", "tab\there", "bell\x07", "sep\u2028line"])
def test_class_name_with_a_line_break_or_control_character_is_refused(tmp_path, bad):
    root = make_folder(tmp_path / "d", {"ok": 2, bad: 2}, size=(32, 32))
    with pytest.raises(DataError, match="labels.txt holds one label per line") as err:
        data.load(root)
    assert bad in err.value.path


def test_dot_named_class_folder_is_reported_not_silently_dropped(tmp_path, caplog):
    root = make_folder(tmp_path / "d", {"a": 2, "b": 2, ".c": 2}, size=(32, 32))
    with caplog.at_level("WARNING", logger="edgetransfer"):
        ds = data.load(root)
    assert any(".c" in r.getMessage() and "skipped, it is not a class" in r.getMessage() for r in caplog.records)
    assert ds.classes == ("a", "b")
    assert any(".c" in w for w in ds.report.warnings)


def test_plain_odd_names_still_work(tmp_path):
    root = make_folder(tmp_path / "d", {"a b": 2, "ünï-cødé_1": 2, "it's": 2}, size=(32, 32))
    assert data.load(root).classes == ("a b", "it's", "ünï-cødé_1")
