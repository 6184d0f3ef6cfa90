"""ONNX export of the Swin detectors, checked against eager PyTorch with onnxruntime."""

from __future__ import annotations

import pytest
import torch

from swinkit.export.detection import check_detector_onnx, export_detector_onnx, onnx_image_size_problem
from swinkit.model import create_model

pytest.importorskip("onnxruntime")


def test_mask_rcnn_exports_to_onnx_and_matches_eager(tmp_path):
    torch.manual_seed(0)
    model = create_model(
        "maskrcnn_swin_t",
        backbone={"embed_dim": 16, "depths": (1, 1, 2, 1), "num_heads": (1, 2, 4, 8), "window_size": 4},
        num_classes=3,
        min_size=64,
        max_size=96,
        out_channels=32,
        rpn_proposals_test=16,
        box_detections_per_img=8,
        box_score_thresh=0.0,
    ).eval()
    with pytest.raises(ValueError, match="64x96 input whose stage 2 map \\(4x6\\) needs padding to whole 4x4 windows"):
        export_detector_onnx(model, tmp_path / "padded.onnx", image_size=(48, 72))
    assert onnx_image_size_problem(model, (96, 96)) is None  # resized to 64x64: maps 16, 8, 4, 2
    path = export_detector_onnx(model, tmp_path / "detector.onnx", image_size=(48, 48))
    image = torch.rand(3, 48, 48)
    differences = check_detector_onnx(model, path, image)
    assert differences is not None, "onnxruntime kept another number of detections than PyTorch"
    assert differences["boxes"] <= 1e-4 and differences["scores"] <= 1e-5 and differences["masks"] <= 1e-4
    assert differences["labels"] == 0.0
    with torch.no_grad():
        assert len(model([image])[0]["boxes"]) == 8
    with pytest.raises(ValueError, match="opset 11 or later"):
        export_detector_onnx(model, tmp_path / "old.onnx", opset=10)
