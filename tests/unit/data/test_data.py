"""The dataset layer: counts on real data, every bad input, every odd file."""

from pathlib import Path

import numpy as np
import pytest
from conftest import jpeg_bytes, make_folder, parse_json, write_image
from PIL import Image

from edgetransfer import data, images


def test_hymenoptera_counts_per_split_and_class(invoke, hymenoptera):
    code, out, _ = invoke("data", "inspect", hymenoptera, "--json")
    assert code == 0
    rep = parse_json(out)
    assert rep["classes"] == ["ants", "bees"]
    assert rep["counts"] == {"train": {"ants": 124, "bees": 121}, "val": {"ants": 70, "bees": 83}}
    assert rep["bad_files"] == []
    # The GIF placeholder decodes, so it is counted, but it is reported.
    assert [Path(s["path"]).name for s in rep["suspect_files"]] == ["imageNotFound.gif"]


# --- bad input: exit 2 and the offending path named -------------------------------------


def test_missing_path(invoke, tmp_path):
    code, _, err = invoke("data", "inspect", tmp_path / "nope")
    assert code == 2 and "nope" in err and "no such directory" in err


def test_no_class_folders(invoke, tmp_path):
    write_image(tmp_path / "loose.png")
    code, _, err = invoke("data", "inspect", tmp_path)
    assert code == 2 and str(tmp_path) in err and "no class folders" in err


def test_single_class(invoke, tmp_path):
    make_folder(tmp_path, {"only": 3})
    code, _, err = invoke("data", "inspect", tmp_path)
    assert code == 2 and "only one class" in err and str(tmp_path) in err


def test_empty_class_folder(invoke, tmp_path):
    make_folder(tmp_path, {"a": 3})
    (tmp_path / "b").mkdir()
    code, _, err = invoke("data", "inspect", tmp_path)
    assert code == 2 and "empty class folder" in err and str(tmp_path / "b") in err


def test_class_in_train_not_in_val(invoke, tmp_path):
    make_folder(tmp_path / "train", {"a": 3, "b": 3})
    make_folder(tmp_path / "val", {"a": 2})
    code, _, err = invoke("data", "inspect", tmp_path)
    assert code == 2 and str(tmp_path / "val") in err and "missing in val: ['b']" in err


def test_class_with_only_broken_files(invoke, tmp_path):
    make_folder(tmp_path, {"a": 2})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.jpg").write_bytes(b"")
    code, _, err = invoke("data", "inspect", tmp_path)
    assert code == 2 and "no usable image" in err and str(tmp_path / "b") in err


def test_bad_val_split(invoke, tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2})
    code, _, err = invoke("data", "inspect", tmp_path, "--val-split", "1.5")
    assert code == 2 and "--val-split" in err


# --- odd files: reported and skipped, never a crash ------------------------------------------


def test_bad_files_are_reported_and_skipped(invoke, tmp_path, monkeypatch):
    make_folder(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "a" / "zero.jpg").write_bytes(b"")
    (tmp_path / "a" / "trunc.jpg").write_bytes(jpeg_bytes()[:300])
    (tmp_path / "b" / "text.jpg").write_text("not an image")
    (tmp_path / "b" / "notes.txt").write_text("hello")
    write_image(tmp_path / "b" / "huge.png", size=(300, 300))
    monkeypatch.setenv("EDGETRANSFER_MAX_PIXELS", "50000")
    code, out, _ = invoke("data", "inspect", tmp_path, "--json")
    assert code == 0
    rep = parse_json(out)
    reasons = {Path(b["path"]).name: b["reason"] for b in rep["bad_files"]}
    assert set(reasons) == {"zero.jpg", "trunc.jpg", "text.jpg", "notes.txt", "huge.png"}
    assert "0 bytes" in reasons["zero.jpg"]
    assert "truncated" in reasons["trunc.jpg"] or "decode" in reasons["trunc.jpg"]
    assert "decompression bomb" in reasons["huge.png"]
    assert "not an image file type" in reasons["notes.txt"]
    assert rep["counts"] == {"a": 3, "b": 3}  # never silently counted


@pytest.mark.parametrize(
    "mode,fmt,suffix",
    [
        ("L", "PNG", ".png"),
        ("P", "GIF", ".gif"),
        ("CMYK", "JPEG", ".jpg"),
        ("RGBA", "PNG", ".png"),
        ("RGB", "BMP", ".bmp"),
        ("RGB", "WEBP", ".webp"),
        ("LA", "PNG", ".png"),
    ],
)
def test_modes_and_formats_decode_to_rgb(tmp_path, mode, fmt, suffix):
    path = write_image(tmp_path / f"x{suffix}", mode=mode, fmt=fmt)
    arr = images.load_array(path, 16)
    assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8


def test_exif_rotation_applied_and_reported(invoke, tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2})
    im = Image.fromarray(np.zeros((20, 60, 3), np.uint8))  # 60 wide, 20 tall
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    path = tmp_path / "a" / "rot.jpg"
    im.save(path, exif=exif)
    upright, info = images.decode(path)
    assert upright.size == (20, 60) and info.exif_rotated
    rep = parse_json(invoke("data", "inspect", tmp_path, "--json")[1])
    assert rep["exif_rotated"] == [str(path)]


def test_duplicates_by_content(invoke, tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "b" / "copy.png").write_bytes((tmp_path / "a" / "000.png").read_bytes())
    rep = parse_json(invoke("data", "inspect", tmp_path, "--json")[1])
    assert [sorted(Path(p).name for p in g) for g in rep["duplicates"]] == [["000.png", "copy.png"]]


def test_imbalance_and_sizes(invoke, tmp_path):
    make_folder(tmp_path, {"a": 6, "b": 2}, size=(40, 30))
    rep = parse_json(invoke("data", "inspect", tmp_path, "--json")[1])
    assert rep["imbalance"] == 3.0
    assert rep["size_range"] == {"min": [40, 30], "max": [40, 30]}


# --- splits ---------------------------------------------------------------------------------


def test_stratified_split_is_seeded_and_per_class(tmp_path):
    make_folder(tmp_path, {"a": 10, "b": 20})
    one = data.load(tmp_path, val_split=0.2, seed=3)
    two = data.load(tmp_path, val_split=0.2, seed=3)
    other = data.load(tmp_path, val_split=0.2, seed=4)
    val = lambda ds: sorted(str(f.path) for f in ds.split("val"))
    assert val(one) == val(two) != val(other)
    assert one.report.counts == {"train": {"a": 8, "b": 16}, "val": {"a": 2, "b": 4}}  # the split is shown (#11)
    per_class = [sum(1 for f in one.split("val") if f.label == k) for k in (0, 1)]
    assert per_class == [2, 4]
    assert one.fingerprint() == two.fingerprint() != other.fingerprint()


def test_given_splits_are_kept(tmp_path):
    make_folder(tmp_path / "train", {"a": 4, "b": 4})
    make_folder(tmp_path / "val", {"a": 2, "b": 2})
    ds = data.load(tmp_path)
    assert (len(ds.split("train")), len(ds.split("val"))) == (8, 4)
    assert ds.split_source == "folders"


def test_resize_policies(tmp_path):
    path = write_image(tmp_path / "wide.png", size=(80, 20), color=(255, 255, 255))
    im, _ = images.decode(path)
    padded = np.asarray(images.resize(im, 40, "pad"))
    cropped = np.asarray(images.resize(im, 40, "crop"))
    assert padded.shape == cropped.shape == (40, 40, 3)
    assert padded[0].mean() == 0 and cropped[0].mean() > 100  # pad adds black bands


def test_tf_pipeline_batches_and_augments(tmp_path):
    from edgetransfer.data import tfdata as pipeline

    make_folder(tmp_path, {"a": 3, "b": 3})
    ds = data.load(tmp_path, val_split=0.34)
    tfds = pipeline.image_dataset(ds.split("train"), 24, batch_size=2, shuffle=True, augment=pipeline.augmentation(0))
    batches = list(tfds.as_numpy_iterator())
    x, y = batches[0]
    assert x.shape == (2, 24, 24, 3) and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 255
    assert sum(len(b[1]) for b in batches) == len(ds.split("train"))
