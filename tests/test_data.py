"""The data layer: every source, the unreadable-image scan, the split, transforms, mixing and the loss."""

from __future__ import annotations

import io
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from swinkit.data import (
    AugmentConfig,
    BadImage,
    BadImagesError,
    BatchMix,
    DataError,
    FileImageDataset,
    Preprocessing,
    TransformedDataset,
    UnreadableImageError,
    build_mixup,
    build_transforms,
    load_data,
    load_images,
    soft_target_cross_entropy,
    stratified_split,
)

RNG = np.random.default_rng(0)


def write_image(path: Path, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> Path:
    """A small image of random pixels at ``path``, in the format its suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    random_image(mode, size).save(path)
    return path


def random_image(mode: str, size: tuple[int, int]) -> Image.Image:
    """A PIL image of random pixels in ``mode`` ("L", "RGB" or "RGBA") and ``size`` (width, height)."""
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], len(mode))
    return Image.fromarray(RNG.integers(0, 256, shape, dtype=np.uint8))


def make_folder(root: Path, counts: dict[str, int]) -> dict[str, list[Path]]:
    """``root/<class>/<i>.png|.jpg``, alternating formats; returns the paths per class."""
    return {
        name: [write_image(root / name / f"{i}.{'png' if i % 2 else 'jpg'}") for i in range(count)]
        for name, count in counts.items()
    }


def truncated_jpeg(path: Path) -> Path:
    """The first half of a JPEG file at ``path``: it opens, but its pixel data stop early."""
    buffer = io.BytesIO()
    random_image("RGB", (64, 48)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


# --- sources ---------------------------------------------------------------------------------


def test_image_folder_reads_sorted_classes_mixed_formats_and_ignores_hidden_files(tmp_path: Path) -> None:
    files = make_folder(tmp_path, {"dog": 3, "cat": 2})
    write_image(tmp_path / "cat" / "nested" / "deep.png")  # sub-folders of a class belong to it
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"\0\1junk")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / "README.txt").write_text("files directly in the root are not images of a class")

    bundle = load_data(str(tmp_path), val_split=0)

    assert bundle.classes == ["cat", "dog"]
    assert bundle.val is None and bundle.skipped == 0
    expected = {str(p): 0 for p in files["cat"]} | {str(tmp_path / "cat/nested/deep.png"): 0}
    expected |= {str(p): 1 for p in files["dog"]}
    assert dict(zip(bundle.train.paths, bundle.train.labels, strict=True)) == expected
    for index in range(len(bundle.train)):
        image, label = bundle.train[index]
        assert isinstance(image, Image.Image) and image.size == (12, 10) and image.mode == "RGB"
        assert label == expected[bundle.train.paths[index]]
    assert "image folder" in bundle.source


def test_csv_with_header_finds_columns_by_name_and_reads_relative_and_absolute_paths(tmp_path: Path) -> None:
    a = write_image(tmp_path / "imgs" / "a.png")
    b = write_image(tmp_path / "elsewhere" / "b.jpg")
    c = write_image(tmp_path / "imgs" / "c.png")
    csv = tmp_path / "list" / "train.csv"
    csv.parent.mkdir()
    csv.write_text(f"label,Path,source\nzebra,../imgs/a.png,web\nant,{b},web\n\nzebra,../imgs/c.png,web\n")

    bundle = load_data(str(csv), val_split=0)

    assert bundle.classes == ["ant", "zebra"]
    assert [Path(p).resolve() for p in bundle.train.paths] == [a, b, c]
    assert bundle.train.labels == [1, 0, 1]
    assert np.array_equal(np.asarray(bundle.train[1][0]), np.asarray(Image.open(b)))


def test_csv_without_header_sorts_integer_labels_numerically(tmp_path: Path) -> None:
    for name in "abcd":
        write_image(tmp_path / f"{name}.png")
    (tmp_path / "data.csv").write_text("a.png,10\nb.png,2\nc.png,1\nd.png,02\n")

    bundle = load_data(str(tmp_path / "data.csv"), val_split=0)

    assert bundle.classes == ["1", "2", "10"]
    assert bundle.train.labels == [2, 1, 0, 1]


def test_saved_hugging_face_dataset_keeps_classlabel_names(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    images = [Image.fromarray(RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)) for _ in range(6)]
    features = datasets.Features(
        {"id": datasets.Value("int64"), "img": datasets.Image(), "label": datasets.ClassLabel(names=["b", "a", "c"])}
    )
    table = datasets.Dataset.from_dict({"id": list(range(6)), "img": images, "label": [0, 1, 2, 2, 1, 0]}, features)
    datasets.DatasetDict({"train": table, "test": table.select([0, 1])}).save_to_disk(str(tmp_path / "dd"))

    bundle = load_data(str(tmp_path / "dd"), val=str(tmp_path / "dd" / "test"))

    assert bundle.classes == ["b", "a", "c"]
    assert bundle.train.labels == [0, 1, 2, 2, 1, 0] and bundle.val.labels == [0, 1]
    for index, image in enumerate(images):
        decoded, _ = bundle.train[index]
        assert np.array_equal(np.asarray(decoded), np.asarray(image))
    assert pickle.loads(pickle.dumps(bundle.train))[3][1] == 2


def test_saved_hugging_face_dataset_with_string_labels(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    images = [Image.fromarray(RNG.integers(0, 256, (4, 4), dtype=np.uint8)) for _ in range(4)]
    table = datasets.Dataset.from_dict(
        {"picture": images, "class": ["owl", "bat", "owl", "bat"]},
        datasets.Features({"picture": datasets.Image(), "class": datasets.Value("string")}),
    )
    table.save_to_disk(str(tmp_path / "ds"))

    bundle = load_data(str(tmp_path / "ds"), val_split=0)

    assert bundle.classes == ["bat", "owl"] and bundle.train.labels == [1, 0, 1, 0]
    assert bundle.train[2][0].mode == "L" and "datasets folder" in bundle.source


def test_digits_are_built_in(tmp_path: Path) -> None:
    bundle = load_data(None, val_split=0)
    assert len(bundle.train) == 1797 and bundle.val is None
    assert bundle.classes == [str(d) for d in range(10)]
    image, label = bundle.train[0]
    assert image.mode == "L" and image.size == (8, 8) and label == 0
    assert bundle.train.pixels.dtype == np.uint8 and bundle.train.pixels.max() == 255
    assert load_data("digits", val_split=0).train.labels == bundle.train.labels


def test_hf_sources_explain_how_to_install_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(DataError, match="pip install datasets"):
        load_data("hf:someone/some-images")


# --- split -----------------------------------------------------------------------------------


def test_stratified_split_keeps_class_proportions_and_is_seeded() -> None:
    counts = [10, 20, 33, 7, 1]
    labels = np.repeat(np.arange(len(counts)), counts)
    RNG.shuffle(labels)
    train, val = stratified_split(labels.tolist(), 0.2, seed=3)

    assert sorted(train + val) == list(range(len(labels))) and not set(train) & set(val)
    assert train == sorted(train) and val == sorted(val)
    for label, count in enumerate(counts):
        in_val = int(np.sum(labels[val] == label))
        assert abs(in_val - 0.2 * count) <= 1 and np.sum(labels[train] == label) >= 1
    assert np.sum(labels[val] == 4) == 0  # a class of one item stays in training
    assert stratified_split(labels.tolist(), 0.2, seed=3) == (train, val)
    assert stratified_split(labels.tolist(), 0.2, seed=4)[1] != val


def test_load_data_splits_off_validation_reproducibly(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": 5, "b": 15})
    first = load_data(str(tmp_path), val_split=0.2, seed=7)
    again = load_data(str(tmp_path), val_split=0.2, seed=7)

    assert first.val.paths == again.val.paths and first.train.paths == again.train.paths
    assert not set(first.train.paths) & set(first.val.paths)
    assert len(first.train) + len(first.val) == 20
    assert sorted(first.val.labels) == [0, 1, 1, 1]
    assert first.val.classes == first.train.classes == ["a", "b"]


# --- unreadable images -----------------------------------------------------------------------


@pytest.fixture
def folder_with_bad_files(tmp_path: Path) -> tuple[Path, set[str]]:
    make_folder(tmp_path, {"a": 4, "b": 4})
    bad = {
        truncated_jpeg(tmp_path / "a" / "truncated.jpg"),
        tmp_path / "b" / "empty.png",
        tmp_path / "b" / "text.png",
        tmp_path / "b" / "notes.txt",
    }
    (tmp_path / "b" / "empty.png").write_bytes(b"")
    (tmp_path / "b" / "text.png").write_text("not a picture")
    (tmp_path / "b" / "notes.txt").write_text("collected from the web")
    return tmp_path, {str(p) for p in bad}


def test_bad_images_stop_the_run_before_training_and_are_listed(folder_with_bad_files: tuple[Path, set[str]]) -> None:
    root, bad = folder_with_bad_files
    with pytest.raises(BadImagesError) as caught:
        load_data(str(root))
    assert {item.name for item in caught.value.bad} == bad
    message = str(caught.value)
    assert message.startswith("4 unreadable image(s) among 12 files")
    assert all(path in message for path in bad)
    assert "truncated" in message and "empty file" in message and "skip_bad_images=True" in message


def test_skip_bad_images_drops_and_counts_them(folder_with_bad_files: tuple[Path, set[str]]) -> None:
    root, bad = folder_with_bad_files
    bundle = load_data(str(root), val_split=0.25, skip_bad_images=True)
    assert bundle.skipped == 4 and {item.name for item in bundle.bad_images} == bad
    kept = set(bundle.train.paths) | set(bundle.val.paths)
    assert len(kept) == 8 and not kept & bad
    assert all(isinstance(bundle.train[i][0], Image.Image) for i in range(len(bundle.train)))


def test_bad_image_report_shows_first_20_and_the_count(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": 2, "b": 2})
    for i in range(25):
        (tmp_path / "a" / f"z{i:02d}.png").write_bytes(b"")
    with pytest.raises(BadImagesError) as caught:
        load_data(str(tmp_path))
    assert len(caught.value.bad) == 25
    listed = [line for line in str(caught.value).splitlines() if "z" in line and "empty file" in line]
    assert len(listed) == 20 and "... and 5 more (25 in all)" in str(caught.value)


def test_unscanned_bad_image_fails_with_its_path_when_read(folder_with_bad_files: tuple[Path, set[str]]) -> None:
    root, _ = folder_with_bad_files
    bundle = load_data(str(root), val_split=0, verify=False)
    index = bundle.train.paths.index(str(root / "b" / "text.png"))
    with pytest.raises(UnreadableImageError, match=r"text\.png"):
        bundle.train[index]


def test_skipping_every_image_of_a_class_is_an_error(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": 3})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(DataError, match="class\\(es\\) b have no readable training image"):
        load_data(str(tmp_path), skip_bad_images=True)


def test_load_images_reports_unreadable_files_one_by_one(tmp_path: Path) -> None:
    good = write_image(tmp_path / "good.png", size=(7, 5))
    broken = truncated_jpeg(tmp_path / "broken.jpg")
    missing = tmp_path / "missing.png"

    results = load_images([good, broken, str(missing)])

    assert [path for path, _ in results] == [str(good), str(broken), str(missing)]
    assert isinstance(results[0][1], Image.Image) and results[0][1].size == (7, 5)
    assert isinstance(results[1][1], BadImage) and "truncated" in results[1][1].reason
    assert isinstance(results[2][1], BadImage) and "FileNotFoundError" in results[2][1].reason


# --- source errors ---------------------------------------------------------------------------


def test_empty_class_folder_is_an_error(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": 2, "c": 2})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / ".DS_Store").write_bytes(b"")
    with pytest.raises(DataError, match="class folder\\(s\\) with no image files: b"):
        load_data(str(tmp_path))


def test_single_class_is_an_error(tmp_path: Path) -> None:
    make_folder(tmp_path, {"only": 3})
    with pytest.raises(DataError, match="single class \\('only'\\)"):
        load_data(str(tmp_path))


def test_folder_without_class_folders_is_an_error(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    with pytest.raises(DataError, match="no class sub-folders"):
        load_data(str(tmp_path))


def test_empty_csv_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("path,label\n")
    with pytest.raises(DataError, match="has no rows"):
        load_data(str(tmp_path / "data.csv"))


def test_csv_naming_missing_files_is_an_error(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    (tmp_path / "data.csv").write_text("a.png,x\ngone.png,y\n")
    with pytest.raises(DataError, match="names 1 file\\(s\\) that do not exist") as caught:
        load_data(str(tmp_path / "data.csv"))
    assert str(tmp_path / "gone.png") in str(caught.value)


def test_validation_classes_must_be_training_classes(tmp_path: Path) -> None:
    make_folder(tmp_path / "train", {"a": 2, "b": 2})
    make_folder(tmp_path / "val", {"a": 1, "zebra": 1})
    with pytest.raises(DataError, match="lacks: zebra"):
        load_data(str(tmp_path / "train"), val=str(tmp_path / "val"))


def test_validation_folder_uses_the_training_class_list(tmp_path: Path) -> None:
    make_folder(tmp_path / "train", {"a": 2, "b": 2, "c": 2})
    make_folder(tmp_path / "val", {"c": 1, "b": 1})
    bundle = load_data(str(tmp_path / "train"), val=str(tmp_path / "val"))
    assert bundle.val.classes == ["a", "b", "c"] and bundle.val.labels == [1, 2]
    assert len(bundle.train) == 6


@pytest.mark.parametrize(
    ("source", "message"),
    [("no/such/place", "does not exist"), ("notes.txt", "not a .csv"), ("hf:", "names no dataset"), ("", "empty")],
)
def test_unusable_sources_are_errors(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=message):
        load_data(str(tmp_path / source) if source in ("no/such/place", "notes.txt") else source)


def test_val_split_must_be_a_fraction() -> None:
    with pytest.raises(DataError, match="val_split must be in \\[0, 1\\)"):
        load_data(None, val_split=1.0)


# --- transforms ------------------------------------------------------------------------------


def gray_pre(size: int) -> Preprocessing:
    return Preprocessing((1, size, size), mean=(0.5,), std=(0.25,))


NO_AUGMENT = AugmentConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, auto_augment="none", re_prob=0.0)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("size", [8, 16, 32])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_transforms_give_float_tensors_of_the_model_shape(train: bool, size: int, in_chans: int) -> None:
    pre = Preprocessing((3, size, size)) if in_chans == 3 else gray_pre(size)
    transform = build_transforms(train, pre, AugmentConfig(re_prob=1.0))
    for mode, source_size in [("RGBA", (21, 13)), ("L", (8, 8)), ("RGB", (5, 40))]:
        image = random_image(mode, source_size)
        for _ in range(3):
            out = transform(image)
            assert out.shape == (in_chans, size, size) and out.dtype == torch.float32
            assert torch.isfinite(out).all()


def test_eval_transform_is_deterministic_and_crops_the_centre() -> None:
    pixels = RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    transform = build_transforms(False, Preprocessing((3, 28, 28), crop_pct=0.875))
    first, second = transform(Image.fromarray(pixels)), transform(Image.fromarray(pixels))
    assert torch.equal(first, second)
    resized = Image.fromarray(pixels).resize((48, 32), Image.Resampling.BICUBIC)  # shorter side int(28 / 0.875)
    expected = v2.functional.to_dtype(v2.functional.pil_to_tensor(resized)[:, 2:30, 10:38], torch.float32, scale=True)
    mean, std = torch.tensor((0.485, 0.456, 0.406))[:, None, None], torch.tensor((0.229, 0.224, 0.225))[:, None, None]
    torch.testing.assert_close(first, (expected - mean) / std)


def test_constant_images_normalise_to_the_expected_values() -> None:
    rgb = Image.fromarray(np.full((30, 20, 3), (200, 100, 50), np.uint8))
    out = build_transforms(False, Preprocessing((3, 16, 16)))(rgb)
    expected = (torch.tensor([200, 100, 50]) / 255 - torch.tensor((0.485, 0.456, 0.406))) / torch.tensor(
        (0.229, 0.224, 0.225)
    )
    torch.testing.assert_close(out, expected[:, None, None].expand(3, 16, 16))
    grey = build_transforms(False, gray_pre(8))(Image.fromarray(np.full((8, 8), 51, np.uint8)))
    torch.testing.assert_close(grey, torch.full((1, 8, 8), (0.2 - 0.5) / 0.25))
    colour_to_grey = build_transforms(False, gray_pre(8))(rgb)  # RGB images are converted to "L" for 1 channel
    assert colour_to_grey.shape == (1, 8, 8) and torch.unique(colour_to_grey).numel() == 1


def test_switched_off_augmentations_leave_only_the_resize() -> None:
    image = Image.fromarray(RNG.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    pre = Preprocessing((3, 16, 16), crop_pct=1.0)
    plain = build_transforms(True, pre, NO_AUGMENT)
    eval_out = build_transforms(False, pre)(image)
    assert all(torch.equal(plain(image), eval_out) for _ in range(3))
    flipping = build_transforms(True, pre, AugmentConfig(**{**NO_AUGMENT.__dict__, "hflip": 1.0}))
    assert torch.equal(flipping(image), eval_out.flip(-1))


def test_augment_names_select_torchvision_transforms() -> None:
    pre = Preprocessing((3, 8, 8))

    def auto_step(name: str) -> list:
        steps = build_transforms(True, pre, AugmentConfig(auto_augment=name)).transforms
        return [s for s in steps if isinstance(s, (v2.RandAugment, v2.TrivialAugmentWide))]

    (rand,) = auto_step("rand-m9-mstd0.5")
    assert (rand.num_ops, rand.magnitude, rand.num_magnitude_bins) == (2, 9, 11)
    (rand,) = auto_step("randaugment")
    assert (rand.num_ops, rand.magnitude) == (2, 9)
    assert isinstance(auto_step("trivial")[0], v2.TrivialAugmentWide) and auto_step("none") == []
    with pytest.raises(DataError, match="auto_augment must be"):
        AugmentConfig(auto_augment="autoaugment-v0")


def test_preprocessing_rejects_mismatched_channels() -> None:
    with pytest.raises(ValueError, match="one value per channel \\(1\\)"):
        Preprocessing((1, 16, 16))
    four = Preprocessing((4, 16, 16), mean=(0.5,) * 4, std=(0.5,) * 4)
    with pytest.raises(ValueError, match="1-channel \\(grey\\) or 3-channel"):
        build_transforms(False, four)


def test_transformed_datasets_pickle_and_load_in_workers(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": 4, "b": 4})
    bundle = load_data(str(tmp_path), val_split=0)
    dataset = TransformedDataset(bundle.train, build_transforms(True, Preprocessing((3, 16, 16))))
    restored = pickle.loads(pickle.dumps(dataset))
    assert isinstance(restored.dataset, FileImageDataset) and restored[0][0].shape == (3, 16, 16)
    images, labels = next(iter(DataLoader(dataset, batch_size=8, num_workers=2)))
    assert images.shape == (8, 3, 16, 16) and sorted(labels.tolist()) == [0] * 4 + [1] * 4


# --- mixing and loss -------------------------------------------------------------------------


def batch(size: int = 6, classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images and labels in which neighbours (the pairs the mixes combine) differ."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(size, 3, 8, 8, generator=generator), torch.tensor([0, 1, 2, 3, 4, 2][:size]) % classes


def test_mixing_is_off_when_both_alphas_are_zero() -> None:
    assert build_mixup(AugmentConfig(mixup=0.0, cutmix=0.0), num_classes=5) is None


def test_mixup_mixes_images_and_targets_with_the_same_weight() -> None:
    torch.manual_seed(0)
    images, labels = batch()
    mixed, targets = build_mixup(AugmentConfig(mixup=0.8, cutmix=0.0, label_smoothing=0.0), 5)(images, labels)
    lam = targets[0, labels[0]]
    torch.testing.assert_close(targets.sum(1), torch.ones(6))
    torch.testing.assert_close(mixed, lam * images + (1 - lam) * images.roll(1, 0))
    torch.testing.assert_close(targets, lam * F.one_hot(labels, 5) + (1 - lam) * F.one_hot(labels.roll(1), 5))


def test_cutmix_pastes_a_box_whose_area_is_the_target_weight() -> None:
    torch.manual_seed(1)
    images, labels = batch()
    mixed, targets = build_mixup(AugmentConfig(mixup=0.0, cutmix=1.0, label_smoothing=0.0), 5)(images, labels)
    own = (mixed == images).all(1)  # (B, H, W): pixels kept from each image
    assert ((mixed == images) | (mixed == images.roll(1, 0))).all()
    torch.testing.assert_close(targets[:, labels[0]][0], own[0].float().mean())
    torch.testing.assert_close(targets.sum(1), torch.ones(6))


def test_mixed_targets_are_smoothed_and_sum_to_one() -> None:
    mix = build_mixup(AugmentConfig(label_smoothing=0.1), 5)
    assert isinstance(mix, BatchMix)
    for seed in range(4):
        torch.manual_seed(seed)
        _, targets = mix(*batch())
        torch.testing.assert_close(targets.sum(1), torch.ones(6))
        assert targets.min() >= 0.1 / 5 - 1e-7 and targets.max() <= 0.9 + 0.1 / 5 + 1e-6
    images, labels = batch()
    collated, soft = mix.collate([(images[i], int(labels[i])) for i in range(6)])
    assert collated.shape == (6, 3, 8, 8) and soft.shape == (6, 5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_soft_target_cross_entropy_matches_cross_entropy(smoothing: float) -> None:
    logits = torch.randn(7, 4, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 3, 1, 2, 2, 0, 3])
    reference = F.cross_entropy(logits, labels, label_smoothing=smoothing)
    one_hot = F.one_hot(labels, 4).float()
    by_hand = -(((1 - smoothing) * one_hot + smoothing / 4) * logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(soft_target_cross_entropy(logits, labels, smoothing), reference)
    torch.testing.assert_close(soft_target_cross_entropy(logits, one_hot, smoothing), reference)
    torch.testing.assert_close(soft_target_cross_entropy(logits, labels.int(), smoothing), reference)
    torch.testing.assert_close(by_hand, reference)


def test_soft_target_cross_entropy_rejects_mismatched_targets() -> None:
    with pytest.raises(DataError, match="target must be integer class indices"):
        soft_target_cross_entropy(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(DataError, match="target must be integer class indices"):
        soft_target_cross_entropy(torch.zeros(3, 4), torch.zeros(3))
