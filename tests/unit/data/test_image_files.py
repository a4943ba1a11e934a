"""Hostile and odd image folders: 16-bit images, foreign content, lying extensions, links out."""

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import make_folder, parse_json, write_image
from PIL import Image

from edgetransfer import data, images
from edgetransfer.errors import DataError


def _gradient16(mode="I;16") -> Image.Image:
    arr = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (8, 1))
    return Image.fromarray(arr) if mode == "I;16" else Image.frombytes(mode, (256, 8), arr.astype(">u2").tobytes())


def _fits_bytes() -> bytes:
    """A minimal 8x8 FITS image (FITS 4.0 standard, section 4: 80-char cards in 2880-byte blocks)."""
    cards = [
        "SIMPLE  =                    T",
        "BITPIX  =                    8",
        "NAXIS   =                    2",
        "NAXIS1  =                    8",
        "NAXIS2  =                    8",
        "END",
    ]
    head = "".join(c.ljust(80) for c in cards).ljust(2880).encode("ascii")
    return head + bytes(range(64)).ljust(2880, b"\0")


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16bit_gradient_is_scaled_not_clipped(tmp_path, mode):
    im = _gradient16(mode)
    rgb = images._to_rgb(im)
    row = np.asarray(rgb)[0, :, 0]
    assert row[0] == 0 and row[-1] == 255 and abs(int(row[128]) - 128) <= 1
    assert (np.asarray(rgb) == 255).mean() < 0.01  # Pillow's convert("RGB") gives 99.6% white


def test_16bit_png_file_in_training_and_runtime_decoders(tmp_path):
    path = tmp_path / "g.png"
    _gradient16().save(path)
    assert Image.open(path).mode == "I;16"
    pil, info = images.decode(path)  # the runtime decoder (Classifier.preprocess) uses decode too
    arr = images.load_array(path, 16, "stretch")  # the training decoder
    assert info.mode == "I;16" and 100 < np.asarray(pil).mean() < 155 and 100 < arr.mean() < 155


def test_32bit_modes_and_arrays():
    small = Image.fromarray(np.full((4, 4), 200, np.int32))  # mode I holding 8-bit values stays as is
    assert small.mode == "I" and np.asarray(images._to_rgb(small))[0, 0, 0] == 200
    wide = Image.fromarray(np.full((4, 4), 65535, np.int32))
    assert np.asarray(images._to_rgb(wide))[0, 0, 0] == 255
    flt = Image.fromarray(np.array([[np.nan, 300.0], [-5.0, 128.0]], np.float32))
    assert np.asarray(images._to_rgb(flt)).shape == (2, 2, 3)
    u16 = images.from_array(np.full((4, 4, 3), 32896, np.uint16))
    assert u16.mode == "RGB" and np.asarray(u16)[0, 0, 0] == 128


def test_foreign_content_is_refused_by_both_decoders(tmp_path):
    fits = tmp_path / "sky.jpg"
    fits.write_bytes(_fits_bytes())
    assert Image.open(fits).format == "FITS"  # what Pillow alone would decode
    with pytest.raises(DataError, match=r"not a JPEG, PNG, GIF, BMP or WebP image \(FITS data\)") as err:
        images.decode(fits)
    assert err.value.path == str(fits)
    tiff = tmp_path / "scan.png"
    Image.new("RGB", (8, 8)).save(tiff, format="TIFF")
    with pytest.raises(DataError, match="TIFF data"):
        images.decode(tiff)


def test_data_load_reports_foreign_lying_loose_and_linked_files(invoke, tmp_path):
    root = make_folder(tmp_path / "ds", {"a": 4, "b": 4})
    (root / "a" / "sky.jpg").write_bytes(_fits_bytes())
    write_image(root / "b" / "really-jpeg.png", fmt="JPEG")
    write_image(root / "README.png")
    (root / "notes.txt").write_text("hi")
    outside = write_image(tmp_path / "secret" / "x.png")
    os.symlink(outside, root / "a" / "link-out.png")
    os.symlink(root / "a" / "000.png", root / "b" / "link-in.png")
    os.symlink(tmp_path / "nowhere.png", root / "b" / "dangling.png")
    (root / "c").symlink_to(tmp_path / "secret", target_is_directory=True)
    write_image(tmp_path / "secret" / "y.png")
    code, out, err = invoke("data", "inspect", root, "--json")
    # class c is a link leaving the data folder: said so, with the option that allows it (issue #26)
    assert code == 2 and "is a symbolic link to" in err and "--follow-links" in err and str(root / "c") in err
    (root / "c").unlink()
    code, out, _ = invoke("data", "inspect", root, "--json")
    assert code == 0, out
    rep = parse_json(out)
    bad = {Path(b["path"]).name: b["reason"] for b in rep["bad_files"]}
    suspect = {Path(s["path"]).name: s["reason"] for s in rep["suspect_files"]}
    assert "FITS data" in bad["sky.jpg"]
    assert "outside the dataset folder" in bad["link-out.png"] and str(outside) in bad["link-out.png"]
    assert "broken symbolic link" in bad["dangling.png"]
    assert "loose file" in bad["README.png"] and "loose file" in bad["notes.txt"]
    assert "named .png but holds JPEG data" in suspect["really-jpeg.png"]  # kept, reported
    assert rep["counts"] == {"a": 4, "b": 6}  # the lying JPEG and the in-tree link are kept


def test_loose_files_beside_splits(tmp_path):
    make_folder(tmp_path / "train", {"a": 2, "b": 2})
    make_folder(tmp_path / "val", {"a": 1, "b": 1})
    write_image(tmp_path / "stray.png")
    write_image(tmp_path / "train" / "stray2.png")
    rep = data.load(tmp_path).report
    assert sorted(Path(b.path).name for b in rep.bad_files) == ["stray.png", "stray2.png"]


def test_class_without_validation_image_warns(tmp_path, caplog):
    make_folder(tmp_path, {"a": 6, "b": 1})
    ds = data.load(tmp_path, val_split=0.3)
    assert "class 'b' has no validation image" in caplog.text  # a warning: line, not a Python UserWarning
    assert ds.report.warnings == (
        ("class 'b' has no validation image: its accuracy will not be measured (add images, or put some in val/)"),
    )
    assert ds.report.to_json()["warnings"] == list(ds.report.warnings)
    # no validation split asked for: only that b is too small to be both trained and validated (issue #26)
    assert data.load(tmp_path).report.warnings == (
        "class 'b' has 1 image: it cannot be both trained and validated (train needs at least 2 per class; add images)",
    )


def test_max_pixels_above_pillows_default_takes_effect(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (10_000, 9_000)).save(path)  # 90 Mpx: over Pillow's 89.5 Mpx default, a few KB on disk
    with pytest.raises(DataError, match="decompression bomb: 90000000 pixels exceeds the limit of 89478485 pixels"):
        images.decode(path)
    monkeypatch.setenv("EDGETRANSFER_MAX_PIXELS", "100000000")
    assert images._open_checked(path).size == (10_000, 9_000)  # opened: header only, no 270 MB decode here
    monkeypatch.setenv("EDGETRANSFER_MAX_PIXELS", "-3")
    from edgetransfer.errors import ConfigError

    with pytest.raises(ConfigError, match="positive whole number"):
        images.decode(path)
