"""Detection folders (COCO and YOLO), their checks, the joint transforms and the collate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as coco_mask
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes

from detection_folders import write_shapes_coco, write_shapes_yolo
from swinkit.data import DataError
from swinkit.data.detection import collate, detection_transforms, load_detection
from swinkit.model import create_model

WIDTH, HEIGHT = 64, 48


def coco_folder(root: Path, annotations: list[dict], categories: list[dict] | None = None) -> Path:
    """Two images (64x48): 'a.png' (id 5) and 'b.png' (id 9, a negative unless annotated)."""
    (root / "images").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        Image.new("RGB", (WIDTH, HEIGHT), (90, 120, 150)).save(root / "images" / name)
    images = [{"id": 5, "file_name": "a.png", "width": WIDTH, "height": HEIGHT}]
    images.append({"id": 9, "file_name": "b.png", "width": WIDTH, "height": HEIGHT})
    categories = categories or [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]
    data = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations.json").write_text(json.dumps(data))
    return root


def square_mask(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def test_a_coco_folder_gives_xyxy_boxes_contiguous_labels_and_decoded_masks(tmp_path):
    rle = coco_mask.encode(np.asfortranarray(square_mask(40, 20, 60, 44)))
    annotations = [
        {"id": 1, "image_id": 5, "category_id": 7, "bbox": [4, 6, 26, 34], "iscrowd": 0,
         "segmentation": [[4, 6, 30, 6, 30, 40, 4, 40]], "area": 884},
        {"id": 2, "image_id": 5, "category_id": 3, "bbox": [40, 20, 20, 24], "iscrowd": 1,
         "segmentation": {"size": [HEIGHT, WIDTH], "counts": rle["counts"].decode("ascii")}},
    ]
    dataset = load_detection(coco_folder(tmp_path, annotations))
    assert dataset.layout == "coco" and dataset.has_masks
    assert dataset.names == ("cat", "dog") and dataset.category_ids == (3, 7)
    image, target = dataset[0]
    assert isinstance(image, tv_tensors.Image) and image.shape == (3, HEIGHT, WIDTH) and image.dtype == torch.uint8
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["boxes"].format.name == "XYXY"
    assert target["boxes"].tolist() == [[4, 6, 30, 40], [40, 20, 60, 44]]
    assert target["labels"].tolist() == [2, 1] and target["iscrowd"].tolist() == [0, 1]
    assert target["area"].tolist() == [884, 480] and target["image_id"].item() == 5
    assert isinstance(target["masks"], tv_tensors.Mask) and target["masks"].shape == (2, HEIGHT, WIDTH)
    # pycocotools rasterises a polygon to the pixels whose centres it covers: columns 4..29, rows 6..39 here.
    assert np.array_equal(target["masks"][0].numpy(), square_mask(4, 6, 30, 40))
    assert np.array_equal(target["masks"][1].numpy(), square_mask(40, 20, 60, 44))
    _, negative = dataset[1]
    assert negative["boxes"].shape == (0, 4) and negative["masks"].shape == (0, HEIGHT, WIDTH)
    ground_truth = dataset.coco_dict()
    assert [a["bbox"] for a in ground_truth["annotations"]] == [[4, 6, 26, 34], [40, 20, 20, 24]]
    assert [a["category_id"] for a in ground_truth["annotations"]] == [7, 3]


def test_a_yolo_folder_denormalises_its_lines_and_reads_names_from_yaml(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for name in ("a.png", "b.jpg"):
        Image.new("RGB", (WIDTH, HEIGHT)).save(tmp_path / "images" / name)
    (tmp_path / "labels" / "a.txt").write_text("1 0.5 0.25 0.25 0.5\n\n0 0.125 0.75 0.25 0.5\n")
    (tmp_path / "data.yaml").write_text("names:\n  0: cat\n  1: dog\n")
    dataset = load_detection(tmp_path)
    assert dataset.layout == "yolo" and dataset.names == ("cat", "dog") and dataset.category_ids == (0, 1)
    assert not dataset.has_masks and len(dataset) == 2
    _, target = dataset[0]
    assert target["boxes"].tolist() == [[24, 0, 40, 24], [0, 24, 16, 48]]
    assert target["labels"].tolist() == [2, 1] and target["area"].tolist() == [384, 384]
    assert dataset[1][1]["boxes"].shape == (0, 4)
    assert [a["category_id"] for a in dataset.coco_dict()["annotations"]] == [1, 0]


def test_the_shapes_folders_read_the_same_in_both_layouts(tmp_path):
    coco = load_detection(write_shapes_coco(tmp_path / "coco", count=4))
    yolo = load_detection(write_shapes_yolo(tmp_path / "yolo", count=4))
    for index in range(4):
        (coco_image, coco_target), (yolo_image, yolo_target) = coco[index], yolo[index]
        assert torch.equal(coco_image, yolo_image)
        torch.testing.assert_close(coco_target["boxes"], yolo_target["boxes"], atol=1e-4, rtol=0)
        assert torch.equal(coco_target["labels"], yolo_target["labels"])
        assert torch.equal(masks_to_boxes(coco_target["masks"]) + torch.tensor([0, 0, 1, 1]), coco_target["boxes"])


@pytest.mark.parametrize(
    "annotation, message",
    [
        ({"bbox": [50, 10, 20, 10]}, r"annotation 4 \(image 5\) has box \[50, 10, 20, 10\] .* outside its 64x48"),
        ({"category_id": 11}, r"annotation 4 \(image 5\) has category_id 11, .* known ids: \[3, 7\]"),
        ({"bbox": [5, 5, 0, 10]}, r"annotation 4 \(image 5\) has an empty or degenerate box"),
        ({"bbox": [5, 5, 10]}, r"annotation 4 \(image 5\) has bbox \[5, 5, 10\]; expected \[x, y, width, height\]"),
        ({"image_id": 6}, r"annotation 4 \(image 6\) refers to an image id that 'images' does not list"),
    ],
)
def test_a_bad_coco_annotation_is_named_with_its_file(tmp_path, annotation, message):
    bad = {"id": 4, "image_id": 5, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 0} | annotation
    folder = coco_folder(tmp_path, [bad])
    with pytest.raises(DataError, match=str(folder / "annotations.json").replace("\\", "\\\\") + ": " + message):
        load_detection(folder)


@pytest.mark.parametrize(
    "line, message",
    [
        ("0 0.5 0.5 0.2", r"a.txt: line 2 has 4 fields; expected 5: class cx cy w h"),
        ("2 0.5 0.5 0.2 0.2", r"a.txt: line 2 has class 2; the class names give 2 classes"),
        ("0 0.9 0.5 0.4 0.2", r"a.txt: line 2 has box .* outside its 64x48 image"),
        ("1 0.5 0.5 0.0 0.2", r"a.txt: line 2 has an empty or degenerate box"),
        ("one 0.5 0.5 0.2 0.2", r"a.txt: line 2: 'one 0.5 0.5 0.2 0.2' is not 'class cx cy w h'"),
    ],
)
def test_a_bad_yolo_line_is_named_with_its_file_and_line(tmp_path, line, message):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (WIDTH, HEIGHT)).save(tmp_path / "images" / "a.png")
    (tmp_path / "labels" / "a.txt").write_text(f"0 0.5 0.5 0.2 0.2\n{line}\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    with pytest.raises(DataError, match=message):
        load_detection(tmp_path)


def test_a_folder_of_neither_layout_says_what_is_accepted(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="neither annotations.json .* nor a labels/ folder"):
        load_detection(tmp_path)
    (tmp_path / "labels").mkdir()
    with pytest.raises(DataError, match="needs the class names: classes.txt or data.yaml"):
        load_detection(tmp_path)


def flip_dataset(tmp_path: Path):
    annotations = [
        {"id": 1, "image_id": 5, "category_id": 7, "bbox": [4, 6, 26, 34], "iscrowd": 0,
         "segmentation": [[4, 6, 30, 6, 30, 40, 4, 40]]},
        {"id": 2, "image_id": 5, "category_id": 3, "bbox": [40, 20, 20, 24], "iscrowd": 0,
         "segmentation": [[40, 20, 60, 20, 60, 44, 40, 44]]},
    ]
    return load_detection(coco_folder(tmp_path, annotations))


def test_the_flip_moves_boxes_and_masks_together(tmp_path):
    dataset = flip_dataset(tmp_path).with_transforms(detection_transforms(train=True, crop=False, photometric=False))
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        image, target = dataset[0]
        assert image.dtype == torch.float32 and image.max() <= 1.0
        boxes = target["boxes"].tolist()
        assert boxes in ([[4, 6, 30, 40], [40, 20, 60, 44]], [[34, 6, 60, 40], [4, 20, 24, 44]])
        seen.add(boxes[0][0])
        assert torch.equal(masks_to_boxes(target["masks"]) + torch.tensor([0, 0, 1, 1]), target["boxes"])
    assert seen == {4, 34}


def test_the_crop_keeps_only_valid_boxes_with_their_masks_labels_and_flags(tmp_path):
    dataset = flip_dataset(tmp_path).with_transforms(detection_transforms(train=True, photometric=True))
    sizes = set()
    for seed in range(15):
        torch.manual_seed(seed)
        for index in range(2):
            image, target = dataset[index]
            height, width = image.shape[1:]
            sizes.add((height, width))
            boxes = target["boxes"]
            count = len(boxes)
            assert all(len(target[key]) == count for key in ("labels", "area", "iscrowd", "masks"))
            assert target["masks"].shape[1:] == (height, width) and tuple(boxes.canvas_size) == (height, width)
            if count:
                assert (boxes[:, 2:] - boxes[:, :2] >= 1).all()
                assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
                assert torch.equal(masks_to_boxes(target["masks"]) + torch.tensor([0, 0, 1, 1]), boxes)
    assert len(sizes) > 2


def test_the_collate_keeps_lists_and_multi_scale_training_picks_among_the_sizes(tmp_path):
    dataset = load_detection(write_shapes_coco(tmp_path, count=4)).with_transforms(detection_transforms(train=False))
    images, targets = collate([dataset[0], dataset[3]])
    assert len(images) == 2 and [t["image_id"].item() for t in targets] == [10, 40]
    model = create_model("fasterrcnn_swin_atto", num_classes=3, min_size=(32, 48, 80), max_size=80).train()
    sizes = {tuple(model.transform(images, targets)[0].image_sizes[0]) for _ in range(30)}
    assert sizes == {(32, 32), (48, 48), (80, 80)}
    assert model.eval().transform(images)[0].image_sizes[0] == (80, 80)
