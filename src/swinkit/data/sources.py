"""Where training images come from: :func:`load_data` reads any supported source into a :class:`DataBundle`.

Accepted sources (the ``--data`` and ``--val`` strings):

- ``None`` or ``"digits"``: scikit-learn's bundled 8x8 handwritten digits (1,797 grey images,
  classes ``"0"`` .. ``"9"``), so that training runs anywhere without a download. The word
  always means the built-in set; write ``./digits`` for a folder of that name.
- ``hf:NAME`` or ``hf:NAME:SPLIT``: a dataset on the Hugging Face Hub (online), split ``train``
  unless named.
- a folder written by ``datasets``' ``save_to_disk`` (it holds ``state.json`` or
  ``dataset_dict.json``); for a ``DatasetDict`` the ``train`` split (or its only split) is read,
  and another split is read by pointing at its sub-folder (``DIR/test``).
- a ``.csv`` file of ``path,label`` rows.
- an image folder, ``ROOT/<class name>/<image files>``.

File rules for image folders: class folders are the sorted names of ROOT's sub-folders;
every file below a class folder (at any depth) is taken as an image of that class, whatever
its extension, and the scan decides whether it is one. A stray ``notes.txt`` is therefore
reported as an unreadable file rather than silently dropped: it usually means the folder is
not what the user thinks, and skipping it must be asked for (``skip_bad_images``). Hidden
files and folders (names starting with ``.``, such as ``.DS_Store`` or
``.ipynb_checkpoints``) and the operating systems' ``Thumbs.db`` and ``desktop.ini`` are
ignored, as are files directly in ROOT.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from swinkit.data.images import SHOWN_BAD_IMAGES, BadImage, BadImagesError, DataError
from swinkit.data.memory import DecodedImageDataset, decode_into_memory, in_memory
from swinkit.data.imagesets import (
    ArrayImageDataset,
    FileImageDataset,
    HFImageDataset,
    ImageDataset,
    scan_images,
    stratified_split,
)

DIGITS = "digits"
HUB_PREFIX = "hf:"
IGNORED_FILE_NAMES = frozenset({"thumbs.db", "desktop.ini"})
CSV_PATH_HEADERS = ("path", "file", "filename", "file_name", "filepath", "image", "image_path")
CSV_LABEL_HEADERS = ("label", "class", "class_name", "target", "category")
HF_LABEL_NAMES = ("label", "labels", "fine_label", "class", "target", "category")

_ACCEPTED = (
    "an image folder (ROOT/<class>/<images>), a .csv file of path,label rows, a folder written by "
    "datasets' save_to_disk, hf:NAME[:SPLIT] for a Hugging Face Hub dataset, or 'digits'"
)


@dataclasses.dataclass
class DataBundle:
    """What :func:`load_data` returns: raw train and validation datasets and what describes them.

    ``train`` and ``val`` yield ``(PIL.Image.Image, int)`` (wrap them in
    :class:`~swinkit.data.TransformedDataset` for tensors); labels index ``classes``.
    ``skipped`` counts the unreadable images left out (``skip_bad_images=True``) and
    ``bad_images`` lists them; ``source`` describes where the data came from, for logs.
    """

    train: ImageDataset
    val: ImageDataset | None
    classes: list[str]
    skipped: int
    source: str
    bad_images: list[BadImage] = dataclasses.field(default_factory=list)


def load_data(
    data: str | os.PathLike[str] | None,
    *,
    val: str | os.PathLike[str] | None = None,
    val_split: float = 0.1,
    seed: int = 0,
    skip_bad_images: bool = False,
    verify: bool = True,
    workers: int | None = None,
    keep_in_memory: int | None = None,
) -> DataBundle:
    """Read a training source (and a validation source, or split one off) and check every image.

    ``data`` is any source listed in this module's docstring. The validation set is ``val``
    when given, read with the training class list (an error if it has classes the training
    set lacks; ``val_split`` is then unused); otherwise a stratified, seeded ``val_split``
    fraction of ``data`` (0: no validation set). With ``verify`` (the default) every image is
    decoded first, in ``workers`` threads: unreadable ones raise :class:`BadImagesError`
    listing them, or with ``skip_bad_images`` are left out and counted in ``skipped``.
    With ``keep_in_memory`` (a byte limit) that decoding keeps the pixels when training and
    validation images together take at most that much, as uint8
    (:func:`~swinkit.data.memory.decode_into_memory`), so that no file is read again.
    Raises :class:`DataError` for a source that is missing, empty, has an empty class or a
    single class, or (a CSV) names files that do not exist.
    """
    if not 0.0 <= val_split < 1.0:
        raise DataError(f"val_split must be in [0, 1) (0 for no validation set), got {val_split}")
    train, source = read_source(data)
    if len(train) == 0:
        raise DataError(f"{source} holds no images")
    present = sorted({train.classes[label] for label in train.labels})
    if len(present) < 2:
        raise DataError(
            f"{source} has a single class ({present[0]!r}); classification needs images of at least 2 classes"
        )
    validation = None
    if val is not None:
        validation, val_source = read_source(val, classes=train.classes)
        if len(validation) == 0:
            raise DataError(f"validation source {val_source} holds no images")
        source = f"{source}; validation: {val_source}"

    bad: list[BadImage] = []
    if verify:
        train, validation, bad = _drop_unreadable(train, validation, skip_bad_images, workers, keep_in_memory)

    if val is None and val_split > 0:
        train_rows, val_rows = stratified_split(train.labels, val_split, seed)
        if not val_rows:
            raise DataError(
                f"val_split={val_split} of {len(train)} images leaves no validation image "
                "(each class keeps at least one training image); use a larger val_split, pass val, or val_split=0"
            )
        train, validation = train.subset(train_rows), train.subset(val_rows)
        source = f"{source}; validation: {val_split:g} of it (stratified, seed {seed})"
    return DataBundle(train, validation, list(train.classes), len(bad), source, bad)


def load_unlabelled(
    data: str | os.PathLike[str],
    *,
    val_split: float = 0.1,
    seed: int = 0,
    skip_bad_images: bool = False,
    keep_in_memory: int | None = None,
) -> DataBundle:
    """Every image file below the folder ``data``, at any depth, as an unlabelled set (for pre-training).

    Sub-folders are not classes: every item has label 0 of the one class ``"image"``. Hidden
    files and folders are ignored as in image folders (module docstring); any other file is
    decoded, and an unreadable one raises :class:`BadImagesError` listing it unless
    ``skip_bad_images``. A seeded random ``val_split`` fraction (0: none) is held out.
    Raises :class:`DataError` for a missing folder or one without images.
    """
    root = Path(data).expanduser()
    if not root.is_dir():
        raise DataError(f"{data} is not a folder; pre-training reads every image file below a folder")
    if not 0.0 <= val_split < 1.0:
        raise DataError(f"val_split must be in [0, 1) (0 for no validation set), got {val_split}")
    files = _files_below(root)
    if not files:
        raise DataError(f"folder {root} holds no files; put the images anywhere below it")
    images: ImageDataset = FileImageDataset(files, [0] * len(files), ["image"])
    images, _, bad = _drop_unreadable(images, None, skip_bad_images, None, keep_in_memory)
    if len(images) == 0:
        raise DataError(f"folder {root} holds no readable image")
    source = f"unlabelled image folder {root.resolve()} ({len(images):,} images)"
    validation = None
    held = round(val_split * len(images))
    if held:
        order = np.random.default_rng(seed).permutation(len(images))
        validation, images = images.subset(sorted(order[:held])), images.subset(sorted(order[held:]))
        source += f"; validation: {held} of them (seed {seed})"
    return DataBundle(images, validation, ["image"], len(bad), source, bad)


def read_source(data: str | os.PathLike[str] | None, classes: Sequence[str] | None = None) -> tuple[ImageDataset, str]:
    """Read one source without scanning its images; return the dataset and a description of it.

    With ``classes`` (a training class list) labels index that list, and a source with a class
    outside it raises :class:`DataError`; without, the source's own classes are used.
    """
    if data is None or (isinstance(data, str) and data == DIGITS):
        return read_digits(classes), "scikit-learn digits (8x8 grey, bundled)"
    if isinstance(data, str) and data.startswith(HUB_PREFIX):
        name, _, split = data[len(HUB_PREFIX) :].partition(":")
        if not name:
            raise DataError(f"{data!r} names no dataset; write hf:NAME or hf:NAME:SPLIT")
        split = split or "train"
        return read_hub(name, split, classes), f"Hugging Face Hub dataset {name} (split {split})"
    if not os.fspath(data):
        raise DataError(f"the data source is an empty string; accepted: {_ACCEPTED}")
    path = Path(data).expanduser()
    if not path.exists():
        raise DataError(f"data source {str(data)!r} does not exist; accepted: {_ACCEPTED}")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DataError(f"{path} is a file but not a .csv; accepted: {_ACCEPTED}")
        return read_csv(path, classes), f"CSV {path.resolve()}"
    if _is_saved_hf_dataset(path):
        return read_saved_hf(path, classes), f"datasets folder {path.resolve()}"
    return read_image_folder(path, classes), f"image folder {path.resolve()}"


def read_image_folder(root: Path, classes: Sequence[str] | None = None) -> FileImageDataset:
    """Read ``ROOT/<class>/<files>`` (see the module docstring for which files count).

    Classes are ROOT's sorted sub-folder names. Raises :class:`DataError` when ROOT has no
    class folder or a class folder holds no file.
    """
    class_dirs = sorted(entry for entry in os.listdir(root) if not _ignored(entry) and (root / entry).is_dir())
    if not class_dirs:
        raise DataError(
            f"image folder {root} has no class sub-folders; expected {root}/<class name>/<image files>, "
            "one sub-folder per class"
        )
    paths: list[str] = []
    names: list[str] = []
    empty: list[str] = []
    for class_name in class_dirs:
        files = _files_below(root / class_name)
        if not files:
            empty.append(class_name)
        paths += files
        names += [class_name] * len(files)
    if empty:
        raise DataError(
            f"image folder {root}: class folder(s) with no image files: {', '.join(empty)}; "
            "every class needs at least one image (remove or fill these folders)"
        )
    own_classes = class_dirs if classes is None else list(classes)
    return FileImageDataset(paths, _label_indices(names, own_classes, f"image folder {root}"), own_classes)


def read_csv(csv_path: Path, classes: Sequence[str] | None = None) -> FileImageDataset:
    """Read a CSV of ``path,label`` rows; paths are absolute or relative to the CSV's folder.

    A first row with a cell naming a path column (``path``, ``file``, ``filename``,
    ``image`` ...) is a header: the path and label columns are then found by name
    (``label``, ``class``, ``target`` ...), and other columns are ignored. Without a header the
    first two columns are used. Class names are the sorted distinct labels, in numeric order
    when every label is an integer. Raises :class:`DataError` for an empty CSV, a malformed
    row, or paths that do not exist (listing the first 20 and the count).
    """
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        rows = [(number, row) for number, row in enumerate(csv.reader(handle), 1) if any(c.strip() for c in row)]
    if rows and any(cell.strip().lower() in CSV_PATH_HEADERS for cell in rows[0][1]):
        header = [cell.strip().lower() for cell in rows.pop(0)[1]]
        path_col = next(header.index(name) for name in CSV_PATH_HEADERS if name in header)
        label_col = next((header.index(name) for name in CSV_LABEL_HEADERS if name in header), None)
        if label_col is None:
            raise DataError(
                f"CSV {csv_path}: the header {header} has no label column; "
                f"name it one of {', '.join(CSV_LABEL_HEADERS)}"
            )
    else:
        path_col, label_col = 0, 1
    if not rows:
        raise DataError(f"CSV {csv_path} has no rows; expected path,label rows (an optional header first)")
    paths: list[str] = []
    names: list[str] = []
    for number, row in rows:
        cells = [cell.strip() for cell in row]
        if len(cells) <= max(path_col, label_col) or not cells[path_col] or not cells[label_col]:
            raise DataError(f"CSV {csv_path}, line {number}: expected a path and a label, got {row}")
        path = Path(cells[path_col]).expanduser()
        paths.append(os.fspath(path if path.is_absolute() else csv_path.parent / path))
        names.append(cells[label_col])
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        shown = "\n".join(f"  {path}" for path in missing[:SHOWN_BAD_IMAGES])
        more = f"\n  ... and {len(missing) - SHOWN_BAD_IMAGES} more" if len(missing) > SHOWN_BAD_IMAGES else ""
        raise DataError(
            f"CSV {csv_path} names {len(missing)} file(s) that do not exist (relative paths are read from "
            f"{csv_path.parent}):\n{shown}{more}"
        )
    names = _canonical_names(names)
    own_classes = _sorted_class_names(names) if classes is None else list(classes)
    return FileImageDataset(paths, _label_indices(names, own_classes, f"CSV {csv_path}"), own_classes)


def read_digits(classes: Sequence[str] | None = None) -> ArrayImageDataset:
    """Load scikit-learn's bundled 8x8 digits (no download) as grey uint8 images, classes ``"0"`` .. ``"9"``.

    The 0..16 ink levels are scaled to 0..255.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DataError("the built-in digits dataset needs scikit-learn: pip install scikit-learn") from exc
    bunch = load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    names = [str(int(target)) for target in bunch.target]
    own_classes = [str(digit) for digit in range(10)] if classes is None else list(classes)
    return ArrayImageDataset(pixels, _label_indices(names, own_classes, "digits"), own_classes, origin="digits")


def read_saved_hf(path: Path, classes: Sequence[str] | None = None) -> HFImageDataset:
    """Read a folder written by ``datasets``' ``save_to_disk`` (a ``Dataset``, or a ``DatasetDict``'s train split)."""
    datasets = _import_datasets()
    loaded = datasets.load_from_disk(os.fspath(path))
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if "train" in loaded:
            loaded = loaded["train"]
        elif len(splits) == 1:
            loaded = loaded[splits[0]]
        else:
            raise DataError(
                f"datasets folder {path} holds splits {splits} and none is 'train'; "
                f"point at one split's folder, e.g. {path / splits[0]}"
            )
    return _from_hf(loaded, os.fspath(path), classes)


def read_hub(name: str, split: str, classes: Sequence[str] | None = None) -> HFImageDataset:
    """Download (or reuse from the cache) split ``split`` of Hub dataset ``name`` with ``datasets.load_dataset``."""
    datasets = _import_datasets()
    try:
        loaded = datasets.load_dataset(name, split=split)
    except (OSError, ValueError) as exc:
        raise DataError(f"could not load Hugging Face Hub dataset {name!r}, split {split!r}: {exc}") from exc
    return _from_hf(loaded, f"hf:{name}:{split}", classes)


def _from_hf(table: Any, origin: str, classes: Sequence[str] | None) -> HFImageDataset:
    """Find the image column (feature ``datasets.Image``) and the label column of a ``datasets.Dataset``.

    The label column is a ``ClassLabel`` column (preferring the names in
    :data:`HF_LABEL_NAMES` when there are several), whose names become the class names; or
    else an integer or string column with one of those names, read like CSV labels.
    """
    datasets = _import_datasets()
    features = table.features
    image_columns = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
    if not image_columns:
        raise DataError(f"{origin}: no image column (feature type datasets.Image) among the columns {list(features)}")
    class_label_columns = [name for name, feature in features.items() if isinstance(feature, datasets.ClassLabel)]
    named = [name for name in HF_LABEL_NAMES if name in features]
    preferred = [name for name in named if name in class_label_columns] or class_label_columns or named
    if not preferred:
        raise DataError(
            f"{origin}: no label column among {list(features)}; expected a ClassLabel column or one named "
            f"{', '.join(HF_LABEL_NAMES)}"
        )
    label_column = preferred[0]
    values = table.with_format("arrow")[label_column].to_pylist()
    feature = features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        unlabelled = sum(1 for value in values if value is None or value < 0)
        if unlabelled:
            raise DataError(
                f"{origin}: {unlabelled} row(s) have no label (-1) in column {label_column!r}; "
                "a split without labels (often 'test') cannot be used for training or validation"
            )
        names = [feature.names[value] for value in values]
        own_classes = list(feature.names)
    else:
        if any(not isinstance(value, (int, str)) for value in values):
            raise DataError(f"{origin}: label column {label_column!r} must hold integers or strings")
        names = _canonical_names([str(value) for value in values])
        own_classes = _sorted_class_names(names)
    if classes is not None:
        own_classes = list(classes)
    image_column = image_columns[0]
    encoded = table.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))
    labels = _label_indices(names, own_classes, origin)
    return HFImageDataset(encoded, image_column, range(len(labels)), labels, own_classes, origin)


def _drop_unreadable(
    train: ImageDataset, val: ImageDataset | None, skip: bool, workers: int | None, keep: int | None = None
) -> tuple[ImageDataset, ImageDataset | None, list[BadImage]]:
    """Scan train and val (decoding them into memory within ``keep`` bytes); raise on unreadable images or drop them."""
    if keep is None:
        found = {"train": scan_images(train, workers=workers), "val": scan_images(val, workers=workers) if val else []}
    else:
        train, found_train = decode_into_memory(train, keep, workers=workers)
        left = keep - (train.nbytes if isinstance(train, DecodedImageDataset) else 0)
        found = {"train": found_train, "val": []}
        if val is not None:
            val, found["val"] = decode_into_memory(val, left if in_memory(train) else 0, workers=workers)
    bad = [item for items in found.values() for _, item in items]
    if not bad:
        return train, val, []
    if not skip:
        raise BadImagesError(bad, total=len(train) + (len(val) if val else 0))
    before = Counter(train.labels)
    train = _without(train, found["train"])
    val = _without(val, found["val"]) if val is not None else None
    kept = set(train.labels)
    emptied = sorted(train.classes[label] for label in before if label not in kept)
    if emptied:
        raise DataError(
            f"after leaving out {len(bad)} unreadable image(s), class(es) {', '.join(emptied)} have no "
            "readable training image left"
        )
    return train, val, bad


def _without(dataset: ImageDataset, found: list[tuple[int, BadImage]]) -> ImageDataset:
    dropped = {index for index, _ in found}
    return dataset.subset([i for i in range(len(dataset)) if i not in dropped]) if dropped else dataset


def _files_below(folder: Path) -> list[str]:
    """All non-ignored files below ``folder``, at any depth, in sorted order (following links)."""
    files = []
    for directory, subdirs, names in os.walk(folder, followlinks=True):
        subdirs[:] = sorted(name for name in subdirs if not _ignored(name))
        files += [os.path.join(directory, name) for name in sorted(names) if not _ignored(name)]
    return files


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED_FILE_NAMES


def _is_saved_hf_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def _canonical_names(names: list[str]) -> list[str]:
    """Write integer labels canonically (``"007"`` -> ``"7"``) so that they sort and match as numbers."""
    if names and all(re.fullmatch(r"[+-]?\d+", name) for name in names):
        return [str(int(name)) for name in names]
    return names


def _sorted_class_names(names: list[str]) -> list[str]:
    """Distinct labels, sorted as integers when all are integers, else as strings."""
    unique = set(names)
    if all(re.fullmatch(r"-?\d+", name) for name in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def _label_indices(names: Sequence[str], classes: Sequence[str], origin: str) -> list[int]:
    """Each item's class name as an index into ``classes``; unknown names raise :class:`DataError`."""
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(names) - index.keys())
    if unknown:
        raise DataError(
            f"{origin} has class(es) the training set lacks: {', '.join(unknown)}; "
            f"the training classes are {', '.join(classes)}"
        )
    return [index[name] for name in names]


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise DataError(
            "reading Hugging Face datasets (hf:NAME or a save_to_disk folder) needs the optional "
            "'datasets' package: pip install datasets"
        ) from exc
    return datasets
