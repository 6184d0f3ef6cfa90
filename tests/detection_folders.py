"""Small detection folders written for the tests: coloured squares on noise, as COCO or YOLO annotations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

#: Category ids as a COCO file may number them (not contiguous), with their colours.
SHAPES = {3: ("red", (220, 30, 30)), 7: ("blue", (30, 30, 220))}


def shapes_images(count: int, size: int, seed: int) -> list[tuple[Image.Image, list[tuple[int, list[int]]]]]:
    """``count`` noisy images, each with 0 to 2 squares: ``(image, [(category id, [x, y, w, h])])``.

    Every fourth image has no square (a negative).
    """
    rng = np.random.default_rng(seed)
    result = []
    for index in range(count):
        pixels = rng.integers(60, 160, size=(size, size, 3), dtype=np.uint8)
        objects = []
        for _ in range(0 if index % 4 == 3 else int(rng.integers(1, 3))):
            category = int(rng.choice(list(SHAPES)))
            side = int(rng.integers(size // 5, size // 2))
            x, y = (int(v) for v in rng.integers(0, size - side, size=2))
            pixels[y : y + side, x : x + side] = SHAPES[category][1]
            objects.append((category, [x, y, side, side]))
        result.append((Image.fromarray(pixels), objects))
    return result


def write_shapes_coco(root: Path, count: int = 8, size: int = 64, seed: int = 0, masks: bool = True) -> Path:
    """A COCO folder of :func:`shapes_images`, with polygon masks when ``masks``."""
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for index, (image, objects) in enumerate(shapes_images(count, size, seed), start=1):
        name = f"{index:03d}.png"
        image.save(root / "images" / name)
        images.append({"id": index * 10, "file_name": name, "width": size, "height": size})
        for category, (x, y, w, h) in objects:
            annotation = {
                "id": len(annotations) + 1,
                "image_id": index * 10,
                "category_id": category,
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
            }
            if masks:
                annotation["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            annotations.append(annotation)
    categories = [{"id": key, "name": name} for key, (name, _) in SHAPES.items()]
    data = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations.json").write_text(json.dumps(data))
    return root


def write_shapes_yolo(root: Path, count: int = 8, size: int = 64, seed: int = 0) -> Path:
    """A YOLO folder of :func:`shapes_images` (class 0 red, 1 blue) with ``classes.txt``; negatives have no file."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    order = list(SHAPES)
    for index, (image, objects) in enumerate(shapes_images(count, size, seed), start=1):
        image.save(root / "images" / f"{index:03d}.png")
        lines = [
            f"{order.index(c)} {(x + w / 2) / size} {(y + h / 2) / size} {w / size} {h / size}"
            for c, (x, y, w, h) in objects
        ]
        if lines:
            (root / "labels" / f"{index:03d}.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("".join(f"{SHAPES[c][0]}\n" for c in order))
    return root
