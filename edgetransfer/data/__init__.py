"""Image-folder datasets: discovery, per-file checks, stratified splits and the inspect report.

Layout (the Keras / torchvision convention)::

    DIR/<class>/*.jpg                     one pool, split with ``val_split``
    DIR/{train,val[,test]}/<class>/*.jpg  given splits
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import random
import statistics
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .. import images, progress
from ..errors import ConfigError, DataError

SPLIT_NAMES = ("train", "val", "test")
# One image to train on and one to validate with: below that a class is never scored (issue #26).
MIN_PER_CLASS = 2
log = logging.getLogger("edgetransfer")
_DUP_FIX = "delete one copy of each duplicate so train and val do not share images"


@dataclass(frozen=True)
class ImageFile:
    """One usable image: where it is, its class index, its split and its content hash."""

    path: Path
    label: int
    split: str
    sha256: str


@dataclass(frozen=True)
class FileIssue:
    """A file that was skipped (``bad``) or kept but looks wrong (``suspect``)."""

    path: str
    reason: str

    def to_json(self) -> dict:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class DataReport:
    """What ``data inspect`` prints: everything learnt from reading every file once."""

    root: str
    classes: tuple[str, ...]
    counts: dict  # split -> class -> usable images (class -> n without given splits)
    bad_files: tuple[FileIssue, ...]
    suspect_files: tuple[FileIssue, ...]
    duplicates: tuple[tuple[str, ...], ...]
    formats: dict
    modes: dict
    size_range: dict
    exif_rotated: tuple[str, ...]
    imbalance: float
    warnings: tuple[str, ...] = ()  # dataset-level problems that do not stop training

    def to_json(self) -> dict:
        return {
            "root": self.root,
            "classes": list(self.classes),
            "counts": self.counts,
            "bad_files": [b.to_json() for b in self.bad_files],
            "suspect_files": [s.to_json() for s in self.suspect_files],
            "duplicates": [list(d) for d in self.duplicates],
            "formats": self.formats,
            "modes": self.modes,
            "size_range": self.size_range,
            "exif_rotated": list(self.exif_rotated),
            "imbalance": self.imbalance,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class Dataset:
    """A checked image-folder dataset with its splits."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[ImageFile, ...]
    report: DataReport
    split_source: str = "folders"  # "folders", "none" or "val_split=<f>,seed=<n>"

    def split(self, name: str) -> tuple[ImageFile, ...]:
        """The files of one split (``train``, ``val``, ``test``); empty if absent."""
        return tuple(f for f in self.files if f.split == name)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in SPLIT_NAMES if any(f.split == s for f in self.files))

    def fingerprint(self) -> str:
        """sha256 over classes, splits and file contents: same data, same fingerprint."""
        h = hashlib.sha256("\n".join(self.classes).encode())
        for f in sorted(self.files, key=lambda f: (f.split, f.label, f.sha256)):
            h.update(f"{f.split}:{f.label}:{f.sha256}\n".encode())
        return h.hexdigest()


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _layout(root: Path) -> dict[str, Path]:
    """Map split name -> folder holding class sub-folders."""
    if not root.exists():
        raise DataError("no such directory", path=root, fix="pass the folder that holds one sub-folder per class")
    if not root.is_dir():
        raise DataError("not a directory", path=root, fix="pass the folder that holds one sub-folder per class")
    given = {s: root / s for s in SPLIT_NAMES if (root / s).is_dir()}
    if "train" in given:
        return given
    return {"all": root}


def _hidden_class_warnings(layout: dict[str, Path]) -> tuple[str, ...]:
    """A dot-named folder beside the classes is skipped (.git, .ipynb_checkpoints): said, not silent."""
    out = tuple(
        f"folder {str(p)!r} starts with '.': skipped, it is not a class (rename it to make it one)"
        for folder in dict.fromkeys(layout.values())
        for p in sorted(folder.iterdir())
        if p.is_dir() and p.name.startswith(".") and p.name not in (".", "..")
    )
    for w in out:
        log.warning("%s", w)
    return out


def _check_class_name(name: str, folder: Path) -> None:
    """A class name becomes one line of labels.txt (MediaPipe, the Task Library): a line break or
    other control character in it would shift every later label, so it is refused."""
    bad = [c for c in name if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")]
    if bad:
        raise DataError(
            f"class folder name {name!r} holds {', '.join(sorted({repr(c) for c in bad}))}: "
            "labels.txt holds one label per line",
            path=folder / name,
            fix="rename the folder to a plain name (letters, digits, spaces, - and _)",
        )


def _list_classes(layout: dict[str, Path]) -> tuple[str, ...]:
    first = next(iter(layout.values()))
    classes = tuple(p.name for p in _class_dirs(first))
    for name in classes:
        _check_class_name(name, first)
    if not classes:
        raise DataError(
            "no class folders found",
            path=first,
            fix="put each class's images in its own sub-folder, e.g. DIR/cats/*.jpg and DIR/dogs/*.jpg",
        )
    if len(classes) == 1:
        raise DataError(
            f"only one class folder ({classes[0]!r}); a classifier needs at least two",
            path=first,
            fix="add a sub-folder for every other class",
        )
    for split, folder in layout.items():
        if folder == first:
            continue
        here = {p.name for p in _class_dirs(folder)}
        missing, extra = sorted(set(classes) - here), sorted(here - set(classes))
        if missing or extra:
            what = "; ".join(
                s
                for s in (
                    f"missing in {split}: {missing}" if missing else "",
                    f"not in {first.name}: {extra}" if extra else "",
                )
                if s
            )
            raise DataError(
                f"class folders differ between splits ({what})",
                path=folder,
                fix=f"give {split}/ exactly the class folders of {first.name}/",
            )
    return classes


def _loose_files(root: Path, layout: dict[str, Path]) -> list[FileIssue]:
    """Files lying beside the class (or split) folders: they belong to no class."""
    folders = {root, *layout.values()}
    return [
        FileIssue(str(p), "loose file beside the class folders: it belongs to no class and is ignored")
        for folder in sorted(folders)
        for p in sorted(folder.iterdir())
        if not p.is_dir() and not p.name.startswith(".")
    ]


def _linked_folder_base(folder: Path, base: Path, follow_links: bool) -> Path:
    """Where the files of ``folder`` may live: inside ``base``, or, for a split or class folder
    that is a symbolic link leaving it, inside the link's target when ``follow_links`` allows
    it; else a DataError that says so (issue #26: it blamed the images instead)."""
    real = folder.resolve()
    if real.is_relative_to(base):
        return base
    link = next((p for p in (folder.parent, folder) if p.is_symlink()), folder)
    if not follow_links:
        raise DataError(
            f"{link.name}/ is a symbolic link to {link.resolve()}, outside the data folder {base}: not followed",
            path=link,
            fix="allow it with --follow-links (data inspect, train), or pass the real folder as --data",
        )
    return real


def _candidates(
    layout: dict[str, Path], classes: Iterable[str], root: Path | None = None, follow_links: bool = False
) -> tuple[list[tuple[Path, int, str]], list[FileIssue]]:
    """Every file of every class folder, and the files skipped on the way (links out of ``root``).

    ``rglob`` does not descend into linked directories but does yield linked files, and a class
    folder may itself be a link; a path that resolves outside the dataset is reported, not read.
    """
    base = (root or next(iter(layout.values()))).resolve()
    out, skipped = [], []
    for split, folder in layout.items():
        for label, name in enumerate(classes):
            allowed = _linked_folder_base(folder / name, base, follow_links)
            entries = sorted(p for p in (folder / name).rglob("*") if not p.name.startswith("."))
            if not any(p.is_file() or p.is_symlink() for p in entries):  # links out: reported, not "empty"
                raise DataError(
                    "empty class folder",
                    path=folder / name,
                    fix="add images to it, or remove the folder if the class is not wanted",
                )
            for p in entries:
                if p.is_symlink() and not p.exists():
                    skipped.append(FileIssue(str(p), f"broken symbolic link (to {os.readlink(p)})"))
                elif not p.is_file():
                    continue
                elif not p.resolve().is_relative_to(allowed):
                    skipped.append(
                        FileIssue(
                            str(p), f"symbolic link to {p.resolve()}, outside the dataset folder {base}: not followed"
                        )
                    )
                else:
                    out.append((p, label, split))
    return out, skipped


def vanished(path: str | Path) -> DataError:
    """The error for an image that was there at the scan and is gone when training reads it."""
    return DataError(
        "the image is no longer there: it was deleted or moved after the folder was scanned",
        path=path,
        fix="restore the file, or run again (a new scan leaves it out); do not edit the data folder during a run",
    )


def _check(path: Path) -> tuple[str, images.DecodedInfo | None, str | None]:
    """Hash and fully decode one file; return (sha256, info, reason-if-bad)."""
    if path.suffix.lower() not in images.IMAGE_SUFFIXES:
        return (
            "",
            None,
            f"not an image file type ({path.suffix or 'no suffix'}); expected one of {sorted(images.IMAGE_SUFFIXES)}",
        )
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        _, info = images.decode(path)
    except DataError as exc:
        return "", None, exc.problem
    except OSError as exc:
        return "", None, f"cannot read: {exc.strerror or exc}"
    return digest, info, None


# The scans shared inside a :func:`checked_once` block, by (folder, split, seed, links); None outside one.
_shared_scans: dict[tuple, Dataset] | None = None


@contextlib.contextmanager
def checked_once() -> Iterator[None]:
    """Within the block, each image folder is scanned and checked once per split setting.

    Training, int8 calibration and held-out scoring each load the data folder; in a sweep that
    redrew the "checking images" pass (hashing and decoding every file) three times per
    configuration. Inside this block :func:`load` answers repeated calls with the same folder and
    split from the first scan. The folder must not change during the block (the sweep fingerprints
    it first and records that fingerprint in every configuration). Nested blocks share the outer
    block's scans.
    """
    global _shared_scans
    if _shared_scans is not None:
        yield
        return
    _shared_scans = {}
    try:
        yield
    finally:
        _shared_scans = None


def load(
    root: str | Path,
    *,
    val_split: float | None = None,
    seed: int = 0,
    workers: int | None = None,
    follow_links: bool = False,
) -> Dataset:
    """Scan, check every file and split an image-folder dataset (once per :func:`checked_once` block).

    Args:
        root: the dataset folder.
        val_split: fraction of each class moved to ``val`` when the folder has no ``val/``.
        seed: seed of that split.
        workers: decoding threads (default: CPU count).
        follow_links: read split or class folders that are symbolic links leaving ``root``
            (refused by default, with an error saying so).

    Raises:
        DataError: the folder cannot be used (missing, no classes, one class, an empty class,
            classes differing between splits, a class left with no usable image).
    """
    shared = _shared_scans
    if shared is None:
        return _scan(root, val_split=val_split, seed=seed, workers=workers, follow_links=follow_links)
    key = (str(Path(root).resolve()), val_split, seed, follow_links)
    if key not in shared:
        shared[key] = _scan(root, val_split=val_split, seed=seed, workers=workers, follow_links=follow_links)
    return shared[key]


def _scan(root: str | Path, *, val_split: float | None, seed: int, workers: int | None, follow_links: bool) -> Dataset:
    root = Path(root)
    if val_split is not None and not 0.0 < val_split < 1.0:
        raise ConfigError(f"--val-split {val_split} is outside (0, 1)", fix="use a fraction such as 0.2")
    layout = _layout(root)
    classes = _list_classes(layout)
    cands, skipped = _candidates(layout, classes, root, follow_links)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        results = list(progress.iterate(pool.map(lambda c: _check(c[0]), cands), "images checked", total=len(cands)))
    good, infos, bad = [], {}, _loose_files(root, layout) + skipped
    for (path, label, split), (digest, info, reason) in zip(cands, results):
        if reason:
            bad.append(FileIssue(str(path), reason))
        else:
            good.append(ImageFile(path, label, split, digest))
            infos[path] = info
    _require_usable(good, classes, layout)
    source = "folders"
    if "all" in layout:
        good = _stratified(good, val_split or 0.0, seed)
        source = f"val_split={val_split},seed={seed}" if val_split else "none"
    elif val_split is not None and "val" not in layout:
        good = _stratified(good, val_split, seed)
        source = f"val_split={val_split},seed={seed}"
    report = _report(root, classes, layout, good, infos, bad)
    report = dataclasses.replace(report, warnings=report.warnings + _hidden_class_warnings(layout))
    return Dataset(root, classes, tuple(good), report, source)


def _require_usable(good: list[ImageFile], classes, layout) -> None:
    have = {(f.split, f.label) for f in good}
    for split, folder in layout.items():
        for label, name in enumerate(classes):
            if (split, label) not in have:
                raise DataError(
                    "no usable image in class folder (every file failed to decode or was skipped)",
                    path=folder / name,
                    fix="run `edgetransfer data inspect` to see why each file failed",
                )


def _stratified(files: list[ImageFile], val_split: float, seed: int) -> list[ImageFile]:
    """Seeded per-class split of the ``train``/``all`` pool into ``train`` and ``val``."""
    rng = random.Random(seed)
    by_class: dict[int, list[ImageFile]] = defaultdict(list)
    for f in files:
        by_class[f.label].append(f)
    out = []
    for label in sorted(by_class):
        group = sorted(by_class[label], key=lambda f: str(f.path))
        rng.shuffle(group)
        n_val = max(1, round(len(group) * val_split)) if val_split and len(group) > 1 else 0
        out += [ImageFile(f.path, f.label, "val", f.sha256) for f in group[:n_val]]
        out += [ImageFile(f.path, f.label, "train", f.sha256) for f in group[n_val:]]
    return out


def _report(root, classes, layout, good, info_by_path, bad) -> DataReport:
    infos = [info_by_path[f.path] for f in good]
    splits = sorted({f.split for f in good}, key=lambda s: (SPLIT_NAMES + ("all",)).index(s))
    by_split = {
        s: {c: sum(1 for f in good if f.split == s and f.label == i) for i, c in enumerate(classes)} for s in splits
    }
    counts: dict = by_split
    if "all" in layout and "val" not in splits:  # one unsplit pool: class -> images (a split shows train/val)
        counts = {c: sum(v[c] for v in by_split.values()) for c in classes}
    per_class = Counter(f.label for f in good)
    imbalance = round(max(per_class.values()) / max(1, min(per_class.values())), 3)
    by_hash: dict[str, list[str]] = defaultdict(list)
    for f in good:
        by_hash[f.sha256].append(str(f.path))
    dups = tuple(tuple(v) for v in by_hash.values() if len(v) > 1)
    widths, heights = [i.width for i in infos], [i.height for i in infos]
    return DataReport(
        root=str(root),
        classes=tuple(classes),
        counts=counts,
        bad_files=tuple(bad),
        suspect_files=_mislabelled(good, infos) + _suspects(good, infos),
        duplicates=dups,
        formats=dict(Counter(i.format for i in infos)),
        modes=dict(Counter(i.mode for i in infos)),
        size_range={"min": [min(widths), min(heights)], "max": [max(widths), max(heights)]},
        exif_rotated=tuple(str(f.path) for f, i in zip(good, infos) if i.exif_rotated),
        imbalance=imbalance,
        warnings=_split_warnings(classes, good),
    )


def _mislabelled(good: list[ImageFile], infos: list[images.DecodedInfo]) -> tuple[FileIssue, ...]:
    """Files whose extension names another format than their content (kept: the content is allowed)."""
    out = []
    for f, i in zip(good, infos):
        named = images.SUFFIX_FORMATS.get(f.path.suffix.lower())
        real = "JPEG" if i.format == "MPO" else i.format
        if named and real != named:
            out.append(
                FileIssue(
                    str(f.path),
                    f"named {f.path.suffix} but holds {real} data (kept; rename it so other tools read it right)",
                )
            )
    return tuple(out)


def _split_warnings(classes, good: list[ImageFile]) -> tuple[str, ...]:
    """A class with no validation image when there is a validation split (its accuracy is
    unmeasured), and a class too small to be both trained and validated (issue #26: 1 image gave
    "val accuracy 1.0000" measured on the other class alone). Logged as ``warning:`` lines, not
    Python ``UserWarning`` (which would print our source path)."""
    out: list[str] = []
    if any(f.split == "val" for f in good):
        have = {f.label for f in good if f.split == "val"}
        out += [
            f"class {c!r} has no validation image: its accuracy will not be measured (add images, or put some in val/)"
            for i, c in enumerate(classes)
            if i not in have
        ]
    per_class = Counter(f.label for f in good)
    out += [
        f"class {c!r} has {per_class[i]} image{'s' if per_class[i] != 1 else ''}: it cannot be both trained and "
        f"validated (train needs at least 2 per class; add images)"
        for i, c in enumerate(classes)
        if per_class[i] < MIN_PER_CLASS and not any(f.split == "val" for f in good)
    ]
    for w in out:
        log.warning("%s", w)
    return tuple(out)


def _suspects(good: list[ImageFile], infos: list[images.DecodedInfo]) -> tuple[FileIssue, ...]:
    # ``infos`` is aligned with ``good``.
    """Files that decode but stand out from the rest, e.g. a logo or 'image not found' graphic.

    A placeholder among photos has a few dozen colours where the photos have thousands;
    the test is relative to the dataset's median so a grayscale dataset flags nothing.
    """
    median = statistics.median(i.unique_colors for i in infos)
    if median < 1024:
        return ()
    return tuple(
        FileIssue(
            str(f.path),
            f"only {i.unique_colors} distinct colours where the median image has "
            f"{'over 4096' if median > 4096 else int(median)}: likely a placeholder or graphic, not a photo",
        )
        for f, i in zip(good, infos)
        if i.unique_colors < 256
    )
