"""Image data modules on tiny generated files: folders (PNG/JPEG, nested class folders), every bad-input
case, torchvision datasets from a local root, Fashion-MNIST IDX files, synthetic shapes."""

from __future__ import annotations

import gzip
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from diled_image import (
    FashionMNISTDataModule,
    ImageDataError,
    ImageFolderDataModule,
    SyntheticImageDataModule,
    TorchvisionDataModule,
)
from diled_image.idx import read_idx
from PIL import Image


def all_examples(dm, split: str = "train") -> dict:
    data = dm.dataset(split)
    return dm.collate([data[i] for i in range(len(data))])


def folder(root: Path, **kwargs) -> ImageFolderDataModule:
    args = dict(channels=3, image_size=16, val_fraction=0.0, test_fraction=0.0, batch_size=4)
    return ImageFolderDataModule(str(root), **{**args, **kwargs})


def test_folder_batches_are_images_in_unit_range_with_nested_class_labels(image_folder):
    dm = folder(image_folder, val_fraction=0.2, test_fraction=0.2)
    dm.setup()
    assert dm.class_names == ["cats/big", "cats/small", "dogs"]
    sizes = {s: len(dm.dataset(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 16, "val": 4, "test": 4}
    batch = all_examples(dm)
    assert batch["image"].shape == (16, 3, 16, 16) and batch["image"].dtype == torch.float32
    assert -1 <= batch["image"].min() < -0.9 and 0.9 < batch["image"].max() <= 1
    for rid, label in zip(batch["id"], batch["label"].tolist()):
        assert dm.class_names[label] == rid.rsplit("/", 1)[0]  # the label is the image's class folder
    ids = [i for s in ("train", "val", "test") for i in all_examples(dm, s)["id"]]
    assert len(set(ids)) == 24 and {Path(i).suffix for i in ids} == {".png", ".jpg"}


def test_png_pixels_round_trip_exactly(tmp_path, save_image):
    path = save_image(tmp_path / "a" / "x.png", (16, 16), "L", seed=3)
    save_image(tmp_path / "a" / "y.png", (16, 16), "L", seed=4)
    batch = all_examples(folder(tmp_path, channels=1))
    raw = torch.from_numpy(np.array(Image.open(path))).float()
    torch.testing.assert_close((batch["image"][0, 0] + 1) * 127.5, raw, atol=1e-3, rtol=0)


def test_files_directly_in_the_root_have_no_label(tmp_path, save_image):
    for i in range(3):
        save_image(tmp_path / f"{i}.png")
    assert all_examples(folder(tmp_path))["label"].tolist() == [-1, -1, -1]


def test_separate_val_and_test_folders_share_the_training_labels(tmp_path, save_image):
    for split, classes in (("train", "ab"), ("val", "b"), ("test", "c")):
        for c in classes:
            save_image(tmp_path / split / c / "x.png")
    dm = folder(tmp_path / "train", val_root=str(tmp_path / "val"), test_root=str(tmp_path / "test"))
    assert [all_examples(dm, s)["label"].tolist() for s in ("train", "val", "test")] == [[0, 1], [1], [-1]]
    assert dm.class_names == ["a", "b"]


def test_an_empty_or_missing_folder_is_an_error(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ImageDataError, match=r"empty holds no PNG or JPEG files"):
        folder(tmp_path / "empty").setup()
    with pytest.raises(ImageDataError, match=r"nope does not exist"):
        folder(tmp_path / "nope").setup()


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_an_unreadable_file_is_named_or_skipped(tmp_path, save_image, damage, caplog):
    for i in range(4):
        save_image(tmp_path / "c" / f"ok{i}.png", seed=i)
    bad = save_image(tmp_path / "c" / "bad.png", seed=9)
    data = bad.read_bytes()
    bad.write_bytes(b"this is not a png" * 10 if damage == "corrupt" else data[: len(data) // 2])
    with pytest.raises(ImageDataError, match=r"bad\.png: cannot decode the image .*bad_files: skip"):
        folder(tmp_path).setup()
    dm = folder(tmp_path, bad_files="skip")
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert len(dm.dataset("train")) == 4 and "bad.png" not in str(all_examples(dm)["id"])
    assert "skipping" in caplog.text and "bad.png" in caplog.text


def test_mixed_sizes_are_an_error_unless_resized(tmp_path, save_image):
    save_image(tmp_path / "a.png", (16, 16))
    save_image(tmp_path / "b.png", (20, 24))
    with pytest.raises(ImageDataError, match=r"b\.png is 20×24 pixels but .*a\.png is 16×16.*resize: true"):
        folder(tmp_path).setup()
    batch = all_examples(folder(tmp_path, resize=True, image_size=12))
    assert batch["image"].shape == (2, 3, 12, 12)


def test_a_size_other_than_image_size_is_an_error(tmp_path, save_image):
    save_image(tmp_path / "a.png", (16, 16))
    with pytest.raises(ImageDataError, match=r"a\.png is 16×16 pixels but the data is configured for 32×32"):
        folder(tmp_path, image_size=32).setup()


@pytest.mark.parametrize(("mode", "channels"), [("L", 3), ("RGB", 1), ("RGBA", 3)])
def test_a_wrong_channel_count_is_an_error_unless_converted(tmp_path, save_image, mode, channels):
    save_image(tmp_path / "a.png", mode=mode)
    with pytest.raises(
        ImageDataError, match=rf"a\.png: the image has \d channel\(s\) .* channels={channels}.*convert"
    ):
        folder(tmp_path, channels=channels).setup()
    assert all_examples(folder(tmp_path, channels=channels, convert=True))["image"].shape == (
        1,
        channels,
        16,
        16,
    )


def test_channels_must_be_one_or_three(tmp_path):
    with pytest.raises(ValueError, match="channels must be 1"):
        folder(tmp_path, channels=4)


def test_model_sizes_flow_from_the_init_args():
    assert ImageFolderDataModule.model_sizes(root="x", kwargs={"channels": 1, "image_size": 32}) == {
        "channels": 1,
        "image_size": 32,
    }
    assert FashionMNISTDataModule.model_sizes(channels=1, image_size=32) == {"channels": 1, "image_size": 32}


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def fake_fashion_mnist(root: Path, n_train: int = 30, n_test: int = 10, compress: bool = True) -> Path:
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{split}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), compress)
        write_idx(root / f"{split}-labels-idx1-ubyte{suffix}", np.arange(n) % 10, compress)
    return root


def test_fashion_mnist_reads_idx_files_and_pads(tmp_path):
    root = fake_fashion_mnist(tmp_path / "fm")
    dm = FashionMNISTDataModule(str(root), val_size=5, pad=2, image_size=32, batch_size=4)
    dm.setup()
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [25, 5, 10]
    batch = all_examples(dm, "test")
    assert batch["image"].shape == (10, 1, 32, 32) and batch["label"].tolist() == list(range(10))
    assert (batch["image"][:, :, :2] == -1).all()  # the padding is black
    raw = read_idx(root / "t10k-images-idx3-ubyte.gz")
    torch.testing.assert_close((batch["image"][:, 0, 2:30, 2:30] + 1) * 127.5, raw.float(), atol=1e-3, rtol=0)


def test_fashion_mnist_errors_say_where_the_files_are_looked_for(tmp_path):
    with pytest.raises(ImageDataError, match=r"were not found in .*nowhere; set data.init_args.root"):
        FashionMNISTDataModule(str(tmp_path / "nowhere")).setup()
    with pytest.raises(ImageDataError, match=r"come out 32×32 pixels .* image_size is 28"):
        FashionMNISTDataModule(pad=2)


def test_a_truncated_idx_file_is_an_error(tmp_path):
    path = write_idx(tmp_path / "x-idx3-ubyte", np.zeros((4, 28, 28)), compress=False)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"truncated"):
        read_idx(path)


def test_torchvision_datasets_are_read_from_a_local_root_and_never_downloaded(tmp_path):
    fake_fashion_mnist(tmp_path / "FashionMNIST" / "raw", compress=False)
    dm = TorchvisionDataModule("FashionMNIST", str(tmp_path), channels=1, image_size=28, val_fraction=0.2)
    dm.setup()
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [24, 6, 10]
    batch = all_examples(dm, "test")
    assert batch["image"].shape == (10, 1, 28, 28) and batch["label"].tolist() == list(range(10))
    with pytest.raises(ImageDataError, match=r"CIFAR10 was not found under .*download: true"):
        TorchvisionDataModule("CIFAR10", str(tmp_path / "none"), channels=3, image_size=32).setup()
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())


def test_torchvision_channel_and_size_mismatches_are_errors():
    with pytest.raises(ImageDataError, match=r"CIFAR10 images have 3 channel\(s\) but channels=1"):
        TorchvisionDataModule("CIFAR10", "x", channels=1, image_size=32)
    with pytest.raises(ImageDataError, match=r"CelebA images come out 178×218 .*resize: true"):
        TorchvisionDataModule("CelebA", "x", channels=3, image_size=64)


def test_synthetic_shapes_are_reproducible_and_labelled():
    a, b = (all_examples(SyntheticImageDataModule(n_train=40, seed=1)) for _ in range(2))
    torch.testing.assert_close(a["image"], b["image"])
    assert set(a["label"].tolist()) == {0, 1, 2, 3}
    other = all_examples(SyntheticImageDataModule(n_train=40, seed=2))
    assert not torch.equal(a["image"], other["image"])


@pytest.mark.shared_data
def test_the_shared_fashion_mnist_files_load(fashion_mnist):
    dm = FashionMNISTDataModule(str(fashion_mnist), batch_size=8)
    dm.setup()
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [55000, 5000, 10000]
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 1, 28, 28) and batch["label"].max() <= 9
