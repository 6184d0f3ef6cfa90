"""The data layer of training: sources, the scan for unreadable images, transforms, batch mixing.

:func:`load_data` reads an image folder, a CSV, a Hugging Face dataset or the built-in
digits into raw datasets of ``(PIL image, label)`` after decoding every image once;
:func:`build_transforms` and :class:`TransformedDataset` turn them into tensors;
:func:`build_mixup` and :func:`soft_target_cross_entropy` give the batch mixes and the loss.
:func:`load_images` reads files for prediction, reporting unreadable ones per file.
"""

from swinkit.data.images import (
    BadImage,
    BadImagesError,
    DataError,
    UnreadableImageError,
    decode_image,
    load_images,
)
from swinkit.data.imagesets import (
    ArrayImageDataset,
    FileImageDataset,
    HFImageDataset,
    ImageDataset,
    scan_images,
    stratified_split,
)
from swinkit.data.mixing import BatchMix, build_mixup, soft_target_cross_entropy
from swinkit.data.sources import DataBundle, load_data, read_source
from swinkit.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    Preprocessing,
    TransformedDataset,
    build_transforms,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ArrayImageDataset",
    "AugmentConfig",
    "BadImage",
    "BadImagesError",
    "BatchMix",
    "DataBundle",
    "DataError",
    "FileImageDataset",
    "HFImageDataset",
    "ImageDataset",
    "Preprocessing",
    "TransformedDataset",
    "UnreadableImageError",
    "build_mixup",
    "build_transforms",
    "decode_image",
    "load_data",
    "load_images",
    "read_source",
    "scan_images",
    "soft_target_cross_entropy",
    "stratified_split",
]
