"""The memo's float-graph entries (issue 30): a precision added later to the same weights, in
another folder, converts from the traced graph a first export stored, without tracing again,
and writes the same bytes as an export that traced."""

from __future__ import annotations

from edgetransfer.memo import Memo


def test_a_new_precision_reuses_the_traced_graph(untrained_run, tmp_path, monkeypatch):
    from edgetransfer.exporter.artifacts import export
    from edgetransfer.exporter.formats import tflite
    from edgetransfer.exporter.quantization import QuantRecipe

    memo = Memo(tmp_path / "memo")
    export(untrained_run, ["tflite"], [QuantRecipe.fp32()], out=tmp_path / "a", memo=memo)
    assert list((tmp_path / "memo" / "sources").rglob("*"))  # the traced SavedModel, stored

    traced = []
    original = tflite.Source.__init__
    monkeypatch.setattr(tflite.Source, "__init__", lambda self, *a, **k: (traced.append(1), original(self, *a, **k)))
    hits = memo.hits
    (fp16,) = export(untrained_run, ["tflite"], [QuantRecipe.fp16()], out=tmp_path / "b", memo=memo)
    # from the memo: the traced source and the float model's held-out predictions (the reference the
    # export stores, issue 39); fp16 itself converted
    assert not traced and memo.hits == hits + 2
    assert "from" not in fp16.manifest.converter
    monkeypatch.setattr(tflite.Source, "__init__", original)
    (plain,) = export(untrained_run, ["tflite"], [QuantRecipe.fp16()], out=tmp_path / "c")
    assert fp16.path.read_bytes() == plain.path.read_bytes()
