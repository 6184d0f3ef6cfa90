"""``swinkit bench simmim``: the labelled tenth, the flags fine-tuning takes from scratch, the speed round against
transformers (same weights, same loss) and the tables, on tiny inputs; the benchmark itself is not run here."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from swinkit.bench import measure, simmim
from swinkit.bench.small_sets import load_folder

pytest.importorskip("transformers")


def write_classes(root: Path, per_class: list[int]) -> None:
    rng = np.random.default_rng(0)
    for label, count in enumerate(per_class):
        (root / str(label)).mkdir(parents=True)
        for index in range(count):
            pixels = rng.integers(0, 255, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(root / str(label) / f"{label}-{index}.png")


def test_the_labelled_tenth_is_stratified_and_drawn_by_the_seed(tmp_path):
    write_classes(tmp_path / "train", [30, 20, 50])
    sizes = [simmim.labelled_subset(tmp_path / "train", tmp_path / f"ten{seed}", 0.1, seed) for seed in (0, 0, 1)]
    assert sizes == [10, 10, 10]
    counts = {label: len(list((tmp_path / "ten0" / str(label)).iterdir())) for label in range(3)}
    assert counts == {0: 3, 1: 2, 2: 5}
    drawn = [sorted(path.name for path in (tmp_path / name).rglob("*.png")) for name in ("ten0", "ten1")]
    assert drawn[0] != drawn[1] and len(set(drawn[0])) == 10
    subset, labels = load_folder(tmp_path / "ten0")  # each image is one of its class's in the source folder
    source, source_labels = load_folder(tmp_path / "train")
    for image, label in zip(subset, labels):
        assert any(np.array_equal(image, other) for other in source[source_labels == label])


def test_fine_tuning_takes_the_data_chosen_settings_of_scratch_as_flags():
    settings = {"epochs": 12, "batch_size": 16, "accum_steps": 1, "warmup_epochs": 0.6, "lr": 0.0014, "hflip": 0.0,
                "crop": "pad", "pad": 4, "scale": None, "label_smoothing": 0.1, "model": "swin_atto"}  # fmt: skip
    assert simmim.finetune_flags(settings) == [
        "--epochs", "12", "--batch-size", "16", "--accum-steps", "1", "--warmup-epochs", "0.6", "--lr", "0.0014",
        "--smoothing", "0.1", "--hflip", "0.0", "--crop", "pad", "--pad", "4",
    ]  # fmt: skip
    assert simmim.finetune_flags({"scale": [0.35, 1.0]}) == ["--scale", "0.35", "1"]


def test_a_tiny_speed_round_times_both_models_of_the_same_weights(monkeypatch):
    monkeypatch.setattr(measure, "worker_result", lambda arguments: simmim.memory_worker(
        arguments[3], arguments[5], int(arguments[7]), int(arguments[9])))  # fmt: skip
    result = simmim.speed("simmim_swin_atto", 32, 4, rounds=1, repeats=1)
    assert result["loss_difference"] < 1e-5
    assert set(result["images_per_second"]) == {"swinkit", "transformers"}
    assert all(rate > 0 for rate in result["images_per_second"].values())
    assert all(len(times) == 1 for times in result["seconds"].values())
    assert set(result["peak_mb"]) == {"swinkit", "transformers"}


def test_the_same_model_in_both_libraries_gives_the_same_loss_and_gradients(tmp_path):
    ours, theirs = simmim.build_pair("simmim_swin_atto", 32, tmp_path, seed=2)
    images, mask = simmim.inputs(ours, 2)
    assert mask.shape == (2, 16, 16) and 0 < mask.float().mean() < 1
    assert simmim.equal_loss(ours, theirs, images, mask) < 1e-5
    ours.eval(), theirs.eval()
    ours.loss(images, ours(images, mask), mask).backward()
    theirs(images, bool_masked_pos=mask.flatten(1)).loss.backward()
    assert torch.allclose(ours.mask_token.grad.flatten(), theirs.swin.embeddings.mask_token.grad.flatten(), atol=1e-6)


def fake_results(tuned: list[float], total: list[float]) -> dict:
    def row(top1: float) -> dict:
        return {"top1": top1, "epochs": 10, "seconds": 40.0}

    seeds = {
        str(seed): {simmim.ROWS[0]: row(20.0), simmim.ROWS[1]: row(t), simmim.ROWS[2]: row(f)}
        for seed, (f, t) in enumerate(zip(tuned, total))
    }
    for entry in seeds.values():
        entry[simmim.ROWS[2]]["pretraining"] = {"val_loss": 0.5, "epochs": 8, "seconds": 80.0}
    return {
        "machine": "a CPU", "torch": "2", "transformers": "5", "model": "swin_atto", "pretrain_time": 80.0,
        "finetune_time": 35.0, "images": {"train": 3000, "val": 1000}, "seed_list": [0, 1, 2], "seeds": seeds,
        "summary": simmim.summarise(seeds),
        "speed": {"model": "simmim_swin_t", "img_size": 192, "batch": 8, "loss_difference": 1e-7,
                  "images_per_second": {"swinkit": 6.0, "transformers": 4.0}, "peak_mb": {"swinkit": 900.0,
                  "transformers": 1200.0}},
    }  # fmt: skip


def test_the_tables_give_means_gains_and_whether_the_targets_are_met(tmp_path):
    results = fake_results([50.0, 52.0, 54.0], [45.0, 46.0, 50.0])
    summary = results["summary"]
    assert summary["top1"][simmim.ROWS[2]] == (52.0, 2.0)
    assert summary["gain"][simmim.ROWS[1]] == (5.0, 1.0) and summary["target_met"]
    table = simmim.to_markdown(results)
    assert "| fine-tuned from pre-training | 52.00 ± 2.00 | | 10.0 | 40 + 80 pre-training |" in table
    assert "| scratch, equal total time | 47.00 ± 2.65 | +5.00 ± 1.00 |" in table
    assert "| swinkit | 6.00 | 1.500 | 900 |" in table
    assert table.count("**met**") == 2
    assert simmim.to_markdown(fake_results([50.0, 50.0], [48.0, 48.0])).count("**not met**") == 1
    written = simmim.tables.write_results(tmp_path, "simmim_quick", results, table)
    assert [path.name for path in written] == ["simmim_quick.json", "simmim_quick.md"]
