"""Using a trained classifier: evaluate it on labelled data, predict labels for images.

Any source :func:`swinkit.create_model` loads works: a swinkit run or export, a Hugging
Face, timm, torchvision or official checkpoint, a Hub id.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import swinkit
from swinkit.data import TransformedDataset, build_transforms, load_data, load_images
from swinkit.data.images import BadImage
from swinkit.model import SwinTransformer
from swinkit.precision import apply_precision, check_precision, input_dtype
from swinkit.preprocessing import Preprocessing
from swinkit.train.metrics import Evaluation, evaluate


@dataclasses.dataclass
class Classifier:
    """A model ready for inference, with its preprocessing, class names and precision.

    ``model`` is already in ``precision`` (see :mod:`swinkit.precision`): a bf16 model has
    bfloat16 weights, an int8 one dynamically quantized Linear layers. :meth:`logits` casts
    the images to match.
    """

    model: SwinTransformer
    preprocessing: Preprocessing
    classes: list[str]
    device: torch.device
    precision: str = "fp32"

    @property
    def transform(self):
        return build_transforms(False, self.preprocessing)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (B, C, H, W) on the classifier's device, in its precision's input dtype."""
        return images.to(self.device, input_dtype(self.precision))

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 logits ``(B, classes)`` of preprocessed ``images`` ``(B, C, H, W)``."""
        return self.model(self.prepare(images)).float()


def load_classifier(
    source: str | os.PathLike[str],
    device: str | None = None,
    precision: str = "fp32",
    patch_remainder: str | None = None,
) -> Classifier:
    """Load ``source`` in eval mode, in ``precision`` (``fp32``, ``bf16`` or ``int8``).

    ``patch_remainder`` (``"pad"`` or ``"crop"``) replaces the one the checkpoint implies
    (see :func:`swinkit.create_model`).

    Classes are the checkpoint's labels, else ``"0"``, ``"1"``, .... The device defaults to
    CUDA when available, except for int8, which runs on the CPU only (asking for int8 on
    CUDA raises ValueError).
    """
    check_precision(precision, device)
    overrides = {"patch_remainder": patch_remainder} if patch_remainder else {}
    model = swinkit.create_model(pretrained=str(source), **overrides)
    if model.num_classes == 0:
        raise ValueError(f"{source} has no classifier head (num_classes 0): it cannot label images")
    chosen = torch.device(device or ("cuda" if torch.cuda.is_available() and precision != "int8" else "cpu"))
    model.to(chosen).eval()
    stored = getattr(model, "pretrained_cfg", None)
    if stored:
        preprocessing = Preprocessing.from_dict(stored)
    else:
        preprocessing = Preprocessing.default(model.config.img_size, model.config.in_chans)
    classes = list(model.config.labels) or [str(index) for index in range(model.num_classes)]
    return Classifier(apply_precision(model, precision, inplace=True), preprocessing, classes, chosen, precision)


def evaluate_data(
    classifier: Classifier,
    data: str,
    batch_size: int = 64,
    workers: int = 2,
    skip_bad_images: bool = False,
) -> Evaluation:
    """Top-1/top-5, per-class accuracy and the confusion matrix of ``classifier`` on labelled ``data``.

    The model runs in the classifier's precision.

    The data's class names must be among the model's (matched by name, so the order of
    folders does not matter); without names in the model, the data must have as many
    classes as the head, taken in order.
    """
    bundle = load_data(data, val_split=0.0, skip_bad_images=skip_bad_images)
    named = bool(classifier.model.config.labels)
    if named:
        unknown = sorted(set(bundle.classes) - set(classifier.classes))
        if unknown:
            raise ValueError(
                f"{data} has classes the model does not know: {unknown[:10]}; the model's classes are "
                f"{classifier.classes[:20]}"
            )
        remap = torch.tensor([classifier.classes.index(name) for name in bundle.classes])
    else:
        if len(bundle.classes) != len(classifier.classes):
            raise ValueError(
                f"{data} has {len(bundle.classes)} classes but the model's head has {len(classifier.classes)} "
                f"and no class names to match them by"
            )
        remap = torch.arange(len(bundle.classes))
    dataset = TransformedDataset(bundle.train, classifier.transform)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    batches = ((classifier.prepare(images), remap[targets]) for images, targets in loader)
    return evaluate(classifier.model, batches, len(classifier.classes), classifier.device)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The top classes for one input file, or why it could not be read."""

    path: str
    labels: list[str]
    probabilities: list[float]
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {
            "path": self.path,
            "top": [{"label": label, "probability": p} for label, p in zip(self.labels, self.probabilities)],
        }


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Files as given, folders walked recursively (sorted; hidden entries skipped)."""
    paths: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for root, folders, files in os.walk(path):
                folders[:] = sorted(f for f in folders if not f.startswith("."))
                paths += [str(Path(root) / name) for name in sorted(files) if not name.startswith(".")]
        else:
            paths.append(str(path))
    return paths


@torch.no_grad()
def predict(
    classifier: Classifier,
    inputs: Sequence[str | os.PathLike[str]],
    topk: int = 5,
    batch_size: int = 32,
) -> list[Prediction]:
    """Label every image in ``inputs`` (files or folders) with the classifier in its precision.

    Unreadable files get an ``error`` instead of labels.
    """
    if topk < 1:
        raise ValueError(f"topk must be at least 1, got {topk}")
    paths = expand_inputs(inputs)
    if not paths:
        raise ValueError(f"no files found in {list(map(str, inputs))}")
    transform = classifier.transform
    results: dict[str, Prediction] = {}
    readable: list[tuple[str, torch.Tensor]] = []
    for path, image in load_images(paths):
        if isinstance(image, BadImage):
            results[path] = Prediction(path, [], [], image.reason)
        else:
            readable.append((path, transform(image)))
    k = min(topk, len(classifier.classes))
    for start in range(0, len(readable), batch_size):
        chunk = readable[start : start + batch_size]
        logits = classifier.logits(torch.stack([tensor for _, tensor in chunk]))
        top = logits.softmax(-1).topk(k, dim=-1)
        for (path, _), values, indices in zip(chunk, top.values.tolist(), top.indices.tolist()):
            results[path] = Prediction(path, [classifier.classes[i] for i in indices], values)
    return [results[path] for path in paths]
