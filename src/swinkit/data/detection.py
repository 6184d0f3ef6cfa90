"""Detection data: COCO-format and YOLO folders read into samples that torchvision's detectors take.

Two layouts of a folder are understood:

- **COCO**: ``images/`` and ``annotations.json`` (``images`` with ``id``, ``file_name``,
  ``width``, ``height``; ``annotations`` with ``id``, ``image_id``, ``category_id``,
  ``bbox`` as ``[x, y, width, height]`` in pixels, ``iscrowd``, and optionally
  ``segmentation`` as polygons or RLE; ``categories`` with ``id`` and ``name``, ids in any
  order and not necessarily contiguous).
- **YOLO**: ``images/`` and ``labels/`` with one ``<image stem>.txt`` per image, one
  ``class cx cy w h`` line per object (centre and size normalised by the image's size), and
  the class names in ``classes.txt`` (one per line) or a ``data.yaml`` whose ``names`` is a
  list or an index-to-name mapping. An image without a label file has no objects.

A sample is ``(tv_tensors.Image, target)`` with the target torchvision's detectors take:
``boxes`` (``tv_tensors.BoundingBoxes``, XYXY pixels), ``labels`` (``1..K``, 0 being the
background), ``masks`` (``tv_tensors.Mask``, ``(N, H, W)``, when the annotations carry
segmentations), ``image_id``, ``area`` and ``iscrowd``. Images without objects are kept as
negatives. Every annotation is checked when the folder is read; a bad one raises
:class:`~swinkit.data.DataError` naming the file, the annotation and what is accepted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from swinkit.data.images import DataError, decode_image

COCO_FILE = "annotations.json"
IMAGES_DIR = "images"
LABELS_DIR = "labels"
YOLO_NAMES = ("classes.txt", "data.yaml")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: How far (pixels) a box may reach past the image edge before it is refused; it is clipped to the image.
EDGE_TOLERANCE = 1.0

Target = dict[str, torch.Tensor]
Sample = tuple[tv_tensors.Image, Target]


@dataclasses.dataclass(frozen=True)
class Instance:
    """One annotated object: ``box`` XYXY pixels, ``label`` 1..K, COCO ``segmentation`` (polygons or RLE) or None."""

    box: tuple[float, float, float, float]
    label: int
    area: float
    iscrowd: bool
    segmentation: list | dict | None


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image of a detection folder: its file, size, id and objects."""

    path: Path
    image_id: int
    width: int
    height: int
    instances: tuple[Instance, ...]


class DetectionDataset(torch.utils.data.Dataset):
    """Images with boxes (and masks) from a COCO or YOLO folder; see the module's description.

    ``names`` are the class names of labels ``1..K``; ``category_ids`` the dataset's id of
    each (COCO's own ids, or the YOLO class indices). ``coco`` is the ground truth as
    COCO's API reads it (:meth:`coco_dict`), for COCO's metric. ``transforms`` take and
    return ``(image, target)`` (torchvision transforms v2; see :func:`detection_transforms`).
    """

    def __init__(
        self,
        root: Path,
        layout: str,
        records: Sequence[ImageRecord],
        names: Sequence[str],
        category_ids: Sequence[int],
        transforms: Callable[[tv_tensors.Image, Target], Sample] | None = None,
    ) -> None:
        self.root = root
        self.layout = layout
        self.records = list(records)
        self.names = tuple(names)
        self.category_ids = tuple(category_ids)
        self.transforms = transforms
        segmented = [i.segmentation is not None for r in self.records for i in r.instances]
        self.has_masks = bool(segmented) and all(segmented)

    def __len__(self) -> int:
        return len(self.records)

    def with_transforms(self, transforms: Callable[[tv_tensors.Image, Target], Sample] | None) -> DetectionDataset:
        """The same images with other transforms."""
        return DetectionDataset(self.root, self.layout, self.records, self.names, self.category_ids, transforms)

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        pixels = np.asarray(decode_image(record.path).convert("RGB"))
        image = tv_tensors.Image(torch.from_numpy(pixels.copy()).permute(2, 0, 1))
        size = (record.height, record.width)
        if tuple(image.shape[1:]) != size:
            raise DataError(
                f"{record.path}: the image is {image.shape[2]}x{image.shape[1]} but its annotations say "
                f"{record.width}x{record.height} (width x height)"
            )
        boxes = torch.tensor([i.box for i in record.instances], dtype=torch.float32).reshape(-1, 4)
        target: Target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=size),
            "labels": torch.tensor([i.label for i in record.instances], dtype=torch.int64),
            "image_id": torch.tensor(record.image_id),
            "area": torch.tensor([i.area for i in record.instances], dtype=torch.float32),
            "iscrowd": torch.tensor([i.iscrowd for i in record.instances], dtype=torch.int64),
        }
        if self.has_masks:
            masks = [decode_segmentation(i.segmentation, *size) for i in record.instances]
            stacked = torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, *size), dtype=torch.uint8)
            target["masks"] = tv_tensors.Mask(stacked)
        if self.transforms is not None:
            return self.transforms(image, target)
        return image, target

    def coco_dict(self) -> dict[str, list]:
        """The ground truth in COCO's JSON form (boxes ``xywh``, the dataset's category ids) for pycocotools."""
        images, annotations = [], []
        for record in self.records:
            name = record.path.relative_to(self.root / IMAGES_DIR).as_posix()
            images.append({"id": record.image_id, "file_name": name, "width": record.width, "height": record.height})
            for instance in record.instances:
                x0, y0, x1, y1 = instance.box
                annotation = {
                    "id": len(annotations) + 1,
                    "image_id": record.image_id,
                    "category_id": self.category_ids[instance.label - 1],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": instance.area,
                    "iscrowd": int(instance.iscrowd),
                }
                if instance.segmentation is not None:
                    annotation["segmentation"] = instance.segmentation
                annotations.append(annotation)
        categories = [{"id": i, "name": n} for i, n in zip(self.category_ids, self.names)]
        return {"images": images, "annotations": annotations, "categories": categories}


def decode_segmentation(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, or RLE with counts as a list or a string) as an ``(H, W)`` uint8 mask."""
    from pycocotools import mask as coco_mask

    if isinstance(segmentation, list):
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = coco_mask.frPyObjects(segmentation, height, width)
    else:
        rle = dict(segmentation, counts=segmentation["counts"].encode("ascii"))
    return coco_mask.decode(rle).astype(np.uint8)


def load_detection(root: str | os.PathLike[str], transforms: Callable | None = None) -> DetectionDataset:
    """Read a COCO (``annotations.json``) or YOLO (``labels/``) detection folder; see the module's description.

    Raises DataError naming the file and the annotation for a box outside its image, an
    unknown category or class, an empty or degenerate box, a malformed line or file.
    """
    path = Path(root).expanduser()
    if not (path / IMAGES_DIR).is_dir():
        raise DataError(f"{path} has no {IMAGES_DIR}/ folder; a detection folder holds it and {COCO_FILE} or labels/")
    if (path / COCO_FILE).is_file():
        return read_coco(path, transforms)
    if (path / LABELS_DIR).is_dir():
        return read_yolo(path, transforms)
    raise DataError(
        f"{path} has neither {COCO_FILE} (COCO format) nor a {LABELS_DIR}/ folder (YOLO format); one of them "
        f"must sit beside {IMAGES_DIR}/"
    )


def read_coco(root: Path, transforms: Callable | None = None) -> DetectionDataset:
    """A COCO-format folder: ``images/`` plus ``annotations.json``."""
    file = root / COCO_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{file} is not valid JSON: {error}") from error
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(data.get(key), list)]
    if missing:
        raise DataError(f"{file} needs the lists 'images', 'annotations' and 'categories'; missing: {missing}")
    categories = sorted(data["categories"], key=lambda c: c["id"])
    label_of = {c["id"]: index + 1 for index, c in enumerate(categories)}
    by_image: dict[int, list[Instance]] = {image["id"]: [] for image in data["images"]}
    sizes = {image["id"]: (image["width"], image["height"]) for image in data["images"]}
    for annotation in data["annotations"]:
        where = f"{file}: annotation {annotation.get('id')} (image {annotation.get('image_id')})"
        if annotation.get("image_id") not in by_image:
            raise DataError(f"{where} refers to an image id that 'images' does not list")
        if annotation.get("category_id") not in label_of:
            raise DataError(
                f"{where} has category_id {annotation.get('category_id')!r}, which 'categories' does not list; "
                f"known ids: {sorted(label_of)}"
            )
        width, height = sizes[annotation["image_id"]]
        box = checked_box(annotation.get("bbox"), width, height, where)
        area = float(annotation.get("area", (box[2] - box[0]) * (box[3] - box[1])))
        crowd = bool(annotation.get("iscrowd", 0))
        segmentation = annotation.get("segmentation") or None
        by_image[annotation["image_id"]].append(
            Instance(box, label_of[annotation["category_id"]], area, crowd, segmentation)
        )
    records = []
    for image in data["images"]:
        image_path = root / IMAGES_DIR / image["file_name"]
        if not image_path.is_file():
            raise DataError(f"{file}: image {image['id']} is {image['file_name']!r}, not found in {root / IMAGES_DIR}")
        instances = tuple(by_image[image["id"]])
        records.append(ImageRecord(image_path, image["id"], image["width"], image["height"], instances))
    dataset = DetectionDataset(
        root, "coco", records, [c["name"] for c in categories], [c["id"] for c in categories], transforms
    )
    plain = [record.image_id for record in records for instance in record.instances if instance.segmentation is None]
    if plain and len(plain) < sum(len(record.instances) for record in records):
        raise DataError(
            f"{file}: some annotations have a segmentation and {len(plain)} have none (the first in image "
            f"{plain[0]}); give every annotation a segmentation (polygons or RLE), or none"
        )
    return dataset


def checked_box(bbox: object, width: int, height: int, where: str) -> tuple[float, float, float, float]:
    """A COCO ``[x, y, w, h]`` box as XYXY inside a ``width x height`` image; DataError for a bad one."""
    if not isinstance(bbox, Sequence) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
        raise DataError(f"{where} has bbox {bbox!r}; expected [x, y, width, height], four numbers in pixels")
    x, y, w, h = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise DataError(f"{where} has an empty or degenerate box {list(bbox)} (width and height must be > 0)")
    if x < -EDGE_TOLERANCE or y < -EDGE_TOLERANCE or x + w > width + EDGE_TOLERANCE or y + h > height + EDGE_TOLERANCE:
        raise DataError(
            f"{where} has box {list(bbox)} (x, y, width, height) reaching outside its {width}x{height} image; "
            f"boxes must lie within the image (up to {EDGE_TOLERANCE:g} pixel over, which is clipped)"
        )
    return max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))


def read_yolo_names(root: Path) -> list[str]:
    """Class names of a YOLO folder, from ``classes.txt`` or ``data.yaml``'s ``names``."""
    classes = root / YOLO_NAMES[0]
    if classes.is_file():
        return [line.strip() for line in classes.read_text(encoding="utf-8").splitlines() if line.strip()]
    config = root / YOLO_NAMES[1]
    if not config.is_file():
        raise DataError(f"{root} (YOLO layout) needs the class names: {' or '.join(YOLO_NAMES)}")
    try:
        import yaml
    except ImportError as error:
        raise DataError(
            f"{config} needs the 'yaml' package to read (pip install pyyaml), or give {YOLO_NAMES[0]} instead"
        ) from error
    names = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("names")
    if isinstance(names, Mapping) and sorted(names) == list(range(len(names))):
        return [str(names[index]) for index in range(len(names))]
    if isinstance(names, list):
        return [str(name) for name in names]
    raise DataError(f"{config}: 'names' must be a list of class names or a mapping 0..K-1 to names, got {names!r}")


def read_yolo(root: Path, transforms: Callable | None = None) -> DetectionDataset:
    """A YOLO folder: ``images/``, ``labels/*.txt`` and the class names."""
    names = read_yolo_names(root)
    images = sorted(p for p in (root / IMAGES_DIR).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    labels_dir = root / LABELS_DIR
    stems = {p.relative_to(root / IMAGES_DIR).with_suffix("") for p in images}
    orphans = sorted(p for p in labels_dir.rglob("*.txt") if p.relative_to(labels_dir).with_suffix("") not in stems)
    if orphans:
        raise DataError(f"{orphans[0]} has no image in {root / IMAGES_DIR} ({len(orphans)} label file(s) without one)")
    records = []
    for image_id, image in enumerate(images, start=1):
        with Image.open(image) as opened:
            width, height = opened.size
        label_file = labels_dir / image.relative_to(root / IMAGES_DIR).with_suffix(".txt")
        lines = label_file.read_text(encoding="utf-8").splitlines() if label_file.is_file() else []
        instances = tuple(
            yolo_instance(line, len(names), width, height, f"{label_file}: line {number}")
            for number, line in enumerate(lines, start=1)
            if line.strip()
        )
        records.append(ImageRecord(image, image_id, width, height, instances))
    return DetectionDataset(root, "yolo", records, names, range(len(names)), transforms)


def yolo_instance(line: str, classes: int, width: int, height: int, where: str) -> Instance:
    """One ``class cx cy w h`` line (normalised) as an object of a ``width x height`` image."""
    fields = line.split()
    if len(fields) != 5:
        raise DataError(f"{where} has {len(fields)} fields; expected 5: class cx cy w h (normalised to 0..1)")
    try:
        index = int(fields[0])
        cx, cy, w, h = (float(v) for v in fields[1:])
    except ValueError as error:
        raise DataError(f"{where}: {line.strip()!r} is not 'class cx cy w h' (an integer, four numbers)") from error
    if not 0 <= index < classes:
        raise DataError(f"{where} has class {index}; the class names give {classes} classes (0..{classes - 1})")
    box = checked_box([(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height], width, height, where)
    return Instance(box, index + 1, (box[2] - box[0]) * (box[3] - box[1]), False, None)


def detection_transforms(train: bool, crop: bool = True, photometric: bool = True) -> v2.Compose:
    """Joint transforms of image, boxes and masks (torchvision transforms v2), ending in float images in [0, 1].

    Training: photometric distortion (brightness, contrast, saturation, hue, channel order),
    horizontal flip, then (with ``crop``, half of the time) a crop that keeps boxes valid:
    :class:`~torchvision.transforms.v2.RandomIoUCrop` followed by
    :class:`~torchvision.transforms.v2.SanitizeBoundingBoxes`, which drops the boxes (and
    their labels, masks, areas and crowd flags) the crop left empty. Scale jitter is the
    detector's: torchvision's detectors resize every image themselves, picking a random one
    of several ``min_size`` values in training (``DetectorConfig.min_size`` as a tuple).
    Evaluation: only the conversion to float.
    """
    steps: list[v2.Transform] = []
    if train:
        if photometric:
            steps.append(v2.RandomPhotometricDistort(p=0.5))
        steps.append(v2.RandomHorizontalFlip(p=0.5))
        if crop:
            steps.append(v2.RandomApply([v2.RandomIoUCrop()], p=0.5))
        steps.append(v2.SanitizeBoundingBoxes(labels_getter=_sanitized))
    steps.append(v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True))
    return v2.Compose(steps)


def _sanitized(sample: Sample) -> tuple[torch.Tensor, ...]:
    target = sample[1]
    return target["labels"], target["area"], target["iscrowd"]


def collate(batch: Sequence[Sample]) -> tuple[list[tv_tensors.Image], list[Target]]:
    """A batch as torchvision's detectors take it: a list of images and a list of targets (sizes may differ)."""
    return [image for image, _ in batch], [target for _, target in batch]
