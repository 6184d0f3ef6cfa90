"""Segmentation sources: folders of images and masks, ADE20K's layout, Hugging Face datasets, and their errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from swinkit.data.ade20k import ADE20K_CLASSES
from swinkit.data.images import DataError
from swinkit.data.segmentation import load_segmentation, mask_indices

RNG = np.random.default_rng(0)


def write_pair(root: Path, stem: str, mask: np.ndarray, *, suffix: str = ".jpg", colour: bool = True) -> None:
    """An image of the mask's size (random pixels) and the mask as an L-mode PNG."""
    height, width = mask.shape
    shape = (height, width, 3) if colour else (height, width)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, shape, dtype=np.uint8)).save(root / "images" / f"{stem}{suffix}")
    Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / f"{stem}.png")


def test_folder_with_class_names_reads_indices_and_profiles_the_pixels(tmp_path: Path) -> None:
    first = np.zeros((6, 8), np.uint8)
    first[:, 4:] = 2
    first[0, 0] = 255
    second = np.ones((6, 8), np.uint8)
    write_pair(tmp_path, "a", first)
    write_pair(tmp_path, "b", second, suffix=".png", colour=False)
    (tmp_path / "classes.txt").write_text("sky\nroad\ncar\n\n")

    bundle = load_segmentation(tmp_path, val_split=0)

    assert bundle.classes == ["sky", "road", "car"] and bundle.val is None and len(bundle.train) == 2
    image, mask = bundle.train[0]
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.uint8 and mask.shape == (6, 8)
    assert torch.equal(mask, torch.from_numpy(first)) and image.mode == "RGB" and image.size == (8, 6)
    assert bundle.train[1][0].mode == "L" and torch.equal(bundle.train[1][1], torch.ones(6, 8, dtype=torch.uint8))
    profile = bundle.profile
    assert profile.class_pixels == (23, 48, 24) and profile.ignored == pytest.approx(1 / 96)
    assert (profile.count, profile.height, profile.width, profile.channels) == (2, 6, 8, 3)
    assert pickle.loads(pickle.dumps(bundle.train))[0][1].tolist() == first.tolist()


def test_without_class_names_the_classes_are_numbered_up_to_the_largest_index(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", np.array([[0, 3], [255, 0]]))
    write_pair(tmp_path, "b", np.array([[1, 1], [1, 1]]))
    write_pair(tmp_path, "c", np.array([[0, 0], [0, 0]]))

    bundle = load_segmentation(tmp_path, val_split=0.34, seed=1)

    assert bundle.classes == ["0", "1", "2", "3"]
    assert len(bundle.train) == 2 and len(bundle.val) == 1
    assert sorted(bundle.train.images + bundle.val.images) == sorted(str(p) for p in (tmp_path / "images").iterdir())
    assert bundle.profile.num_classes == 4 and bundle.profile.present <= 3


def test_palette_masks_give_their_indices_not_their_colours(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", np.zeros((4, 4)))
    mask = Image.fromarray(np.array([[0, 1], [2, 255]], np.uint8).repeat(2, 0).repeat(2, 1), mode="P")
    mask.putpalette([200, 10, 10, 10, 200, 10, 10, 10, 200] + [255, 255, 255] * 253)
    mask.save(tmp_path / "masks" / "a.png")

    bundle = load_segmentation(tmp_path, val_split=0)

    assert bundle.train[0][1].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255], [2, 2, 255, 255]]


def test_mask_modes(tmp_path: Path) -> None:
    wide = Image.fromarray(np.array([[0, 7], [255, 300]], np.uint16))
    with pytest.raises(DataError, match=r"m\.png holds values from 0 to 300"):
        mask_indices(wide, "m.png")
    assert mask_indices(Image.fromarray(np.array([[0, 7]], np.uint16)), "m").tolist() == [[0, 7]]
    assert mask_indices(Image.fromarray(np.array([[0, 1]], bool)), "m").tolist() == [[0, 1]]
    assert mask_indices(Image.fromarray(np.array([[0, 1, 150, 255]], np.uint8)), "m", zero_is_ignore=True).tolist() == [
        [255, 0, 149, 255]
    ]


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (
            lambda root: Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "masks" / "a.png"),
            r"masks/a\.png is a RGB image with 3 channels; a mask holds one class index per pixel",
        ),
        (
            lambda root: Image.fromarray(np.zeros((4, 5), np.uint8)).save(root / "masks" / "a.png"),
            r"masks/a\.png: the mask is 5x4 but its image \S*images/a\.jpg is 4x4",
        ),
        (lambda root: (root / "masks" / "a.png").unlink(), r"image \S*images/a\.jpg has no mask in"),
        (
            lambda root: Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "masks" / "z.png"),
            r"mask \S*masks/z\.png has no image in",
        ),
        (
            lambda root: (root / "classes.txt").write_text("one\ntwo\n"),
            r"beyond the 2 classes named .*\n  \S*masks/b\.png holds class index 4",
        ),
        (
            lambda root: (root / "masks" / "a.png").rename(root / "masks" / "a.jpg"),
            r"not \.png, \.bmp, \.tif, \.tiff .*\n  \S*masks/a\.jpg",
        ),
        (lambda root: (root / "images" / "b.jpg").write_bytes(b"not an image"), r"images/b\.jpg: UnidentifiedImage"),
        (lambda root: (root / "classes.txt").write_text("a\n\nb\nc\nd\ne\n"), r"classes\.txt: line 2 is blank"),
    ],
)
def test_bad_pairs_are_named(tmp_path: Path, spoil: object, message: str) -> None:
    write_pair(tmp_path, "a", np.zeros((4, 4)))
    write_pair(tmp_path, "b", np.full((4, 4), 4))
    spoil(tmp_path)  # type: ignore[operator]
    with pytest.raises(DataError, match=message):
        load_segmentation(tmp_path, val_split=0)


def test_ade20k_layout_is_found_and_shifts_labels_down(tmp_path: Path) -> None:
    for split, values in (("training", [[0, 1], [150, 255]]), ("validation", [[2, 2], [2, 0]])):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "annotations" / split).mkdir(parents=True)
        for stem in ("x", "y"):
            image = Image.fromarray(RNG.integers(0, 256, (2, 2, 3), dtype=np.uint8))
            image.save(tmp_path / "images" / split / f"{stem}.jpg")
            Image.fromarray(np.array(values, np.uint8)).save(tmp_path / "annotations" / split / f"{stem}.png")

    bundle = load_segmentation(tmp_path)

    assert bundle.classes == list(ADE20K_CLASSES) and len(bundle.train) == 2 and len(bundle.val) == 2
    assert bundle.train[0][1].tolist() == [[255, 0], [149, 255]]
    assert bundle.val[1][1].tolist() == [[1, 1], [1, 255]]
    assert bundle.profile.class_pixels[0] == 2 and bundle.profile.class_pixels[149] == 2
    assert "validation split" in bundle.source


def test_saved_hugging_face_dataset_with_image_and_mask_columns(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    masks = [np.array([[0, 1, 2]], np.uint8), np.array([[2, 2, 255]], np.uint8), np.array([[1, 0, 0]], np.uint8)]
    images = [Image.fromarray(RNG.integers(0, 256, (1, 3, 3), dtype=np.uint8)) for _ in masks]
    features = datasets.Features(
        {"image": datasets.Image(), "annotation": datasets.Image(), "id": datasets.Value("int64")}
    )
    table = datasets.Dataset.from_dict(
        {"image": images, "annotation": [Image.fromarray(m) for m in masks], "id": [0, 1, 2]}, features
    )
    datasets.DatasetDict({"train": table.select([0, 1]), "validation": table.select([2])}).save_to_disk(tmp_path / "dd")

    bundle = load_segmentation(str(tmp_path / "dd"))

    assert bundle.classes == ["0", "1", "2"] and len(bundle.train) == 2 and len(bundle.val) == 1
    assert bundle.train[1][1].tolist() == masks[1].tolist() and bundle.val[0][1].tolist() == masks[2].tolist()
    assert np.array_equal(np.asarray(bundle.train[0][0]), np.asarray(images[0]))
    assert bundle.profile.class_pixels == (1, 1, 3)
    assert "annotation" in bundle.val.mask_name(0)
