"""The image side of attribute transfer on hand-made outputs: the PNG writers, and the metric whose pixel
classifier (trained on held-out labelled shapes) judges whether manipulated images show their target."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diled_image import SyntheticImageDataModule
from diled_image.predictions import task_writers
from diled_image.transfer import ClassifierOptions, TransferAccuracy
from PIL import Image

OPTIONS = ClassifierOptions(steps=150, images=400, batch_size=32)


def shapes(n: int, seed: int) -> dict:
    """A batch of ``n`` synthetic shapes (labels 0 square, 1 disc, 2 horizontal bar, 3 vertical bar)."""
    dm = SyntheticImageDataModule(n_train=n, n_val=1, n_test=1, seed=seed, channels=1, image_size=16)
    data = dm.dataset("train")
    return dm.collate([data[i] for i in range(n)])


def outputs(inputs: dict, target: torch.Tensor, output: torch.Tensor, label=None) -> dict:
    return {
        "input": inputs,
        "label": inputs["label"] if label is None else label,
        "target": target,
        "mu": torch.zeros(len(target), 4),
        "latent": torch.zeros(len(target), 4),
        "output": {"image": output},
    }


def test_transfer_writes_a_pair_grid_and_one_png_per_manipulated_image(tmp_path):
    inputs = shapes(6, seed=1)
    target = torch.full((6,), 2)
    writers = task_writers("transfer", tmp_path, rank=0, grid_images=8)
    for w in writers:
        w.write(outputs(inputs, target, -inputs["image"]))
    files = sorted(f.name for w in writers for f in w.close())
    assert files == ["files.csv", "transfers.png"]
    assert sorted(p.name for p in (tmp_path / "transfers").glob("*.png")) == [
        f"train{i}_to2.png" for i in range(6)
    ]
    grid = np.array(Image.open(tmp_path / "transfers.png"))
    assert grid.shape[:2] == (2 + 1 * 18, 2 + 8 * 18)  # 8 images kept: 4 input / output pairs in one row
    out = np.array(Image.open(tmp_path / "transfers" / "train0_to2.png"))
    expected = ((-inputs["image"][0, 0] + 1) / 2 * 255 + 0.5).floor().numpy()
    np.testing.assert_allclose(out[..., 0] if out.ndim == 3 else out, expected, atol=1)


@pytest.fixture(scope="module")
def judged() -> tuple[TransferAccuracy, dict, dict]:
    """A metric whose classifier learnt the shapes of a held-out set, and two fresh batches."""
    held_out = shapes(400, seed=7)

    def labelled(n):
        yield held_out["image"][:n], held_out["label"][:n]

    torch.manual_seed(0)
    return TransferAccuracy(labelled, OPTIONS), shapes(64, seed=3), shapes(64, seed=4)


def test_the_classifier_learns_the_held_out_shapes(judged):
    metric, inputs, _ = judged
    metric.update(outputs(inputs, inputs["label"], inputs["image"]))  # nothing moved: no rows counted
    got = metric.compute()
    assert got["classifier_train_images"] == 320 and got["classifier_test_images"] == 80
    assert got["classifier_accuracy"] > 0.85, got
    assert got["transfer_rows"] == 0 and np.isnan(got["target_accuracy"])


def test_images_of_the_target_class_count_and_unchanged_images_do_not(judged):
    metric, inputs, others = judged
    metric.reset()
    target = others["label"]  # each row's "manipulated" image is a real image of its target class
    moved = target != inputs["label"]
    metric.update(outputs(inputs, target, others["image"]))
    good = metric.compute()
    assert good["transfer_rows"] == int(moved.sum())
    assert good["target_accuracy"] > 0.8 and good["input_target_accuracy"] < 0.2, good
    assert good["source_accuracy"] < 0.2, good
    metric.reset()
    metric.update(outputs(inputs, target, inputs["image"]))  # a transfer that changed nothing
    unchanged = metric.compute()
    assert unchanged["target_accuracy"] == pytest.approx(unchanged["input_target_accuracy"])
    assert unchanged["target_accuracy"] < 0.2 and unchanged["source_accuracy"] > 0.8, unchanged


def test_unknown_sources_count_as_moved_but_not_for_source_accuracy(judged):
    metric, inputs, others = judged
    metric.reset()
    unknown = torch.full((64,), -1)
    metric.update(outputs(inputs, others["label"], others["image"], label=unknown))
    got = metric.compute()
    assert got["transfer_rows"] == 64 and np.isnan(got["source_accuracy"]) and got["target_accuracy"] > 0.8


def test_too_few_labelled_images_leave_the_metric_out_with_a_warning(caplog):
    def unlabelled(n):
        yield torch.zeros(20, 1, 16, 16), torch.full((20,), -1)

    metric = TransferAccuracy(unlabelled, OPTIONS)
    inputs = shapes(4, seed=0)
    with caplog.at_level("WARNING"):
        metric.update(outputs(inputs, (inputs["label"] + 1) % 4, inputs["image"]))
    assert "found 0" in caplog.text and "eval_classifier_steps: 0" in caplog.text
    got = metric.compute()
    assert np.isnan(got["target_accuracy"]) and np.isnan(got["classifier_accuracy"])
    assert got["classifier_train_images"] == 0
