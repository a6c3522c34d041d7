"""The Python API's raw records: image files and uint8 tensors into a batch through the data's evaluation
transforms, input and decoded batches back into uint8 tensors, and one-paragraph errors for bad records."""

from __future__ import annotations

import pytest
import torch
from diled_core import DiLED, SkipMLP
from diled_image import (
    ConvDecoder,
    ImageDataError,
    ImageFolderDataModule,
    SemanticEncoder,
    SyntheticImageDataModule,
)
from diled_image.records import load_image

SMALL = dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1)


def images(n: int, channels: int, size: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (channels, size, size), dtype=torch.uint8, generator=g) for _ in range(n)]


def test_files_and_tensors_make_one_batch_without_training_flips(image_folder):
    dm = ImageFolderDataModule(str(image_folder), channels=3, image_size=16, hflip=True, batch_size=4)
    path = image_folder / "dogs" / "img02.jpg"
    (tensor,) = images(1, 3, 16)
    batch = dm.batch_from_records([str(path), tensor, *[path] * 8])
    assert batch["image"].shape == (10, 3, 16, 16) and batch["label"].tolist() == [-1] * 10
    assert batch["id"][:3] == [str(path), "record1", str(path)]
    assert float(batch["image"].min()) >= -1 and float(batch["image"].max()) <= 1
    back = dm.records_from_batch(batch)
    assert torch.equal(back[1], tensor)
    pixels = load_image(path, 3, convert=False)  # the file's pixels, never flipped (eval transform)
    assert all(torch.equal(b, pixels) for b in back[:1] + back[2:])


def test_records_get_the_datas_pad_and_come_back_at_the_datas_size():
    dm = SyntheticImageDataModule(channels=1, image_size=32, pad=2)  # Fashion-MNIST's 28 + 2·2
    record = images(1, 1, 28)[0]
    batch = dm.batch_from_records([record])
    assert batch["image"].shape == (1, 1, 32, 32)
    assert bool((batch["image"][0, 0, :2] == -1).all())  # the zero padding, in [-1, 1]
    (back,) = dm.records_from_batch(batch)
    assert back.shape == (1, 32, 32) and torch.equal(back[:, 2:-2, 2:-2], record)


def test_records_are_resized_when_the_data_is(image_folder):
    dm = ImageFolderDataModule(str(image_folder), channels=3, image_size=16, resize=True)
    g = torch.Generator().manual_seed(0)
    wide = torch.randint(0, 256, (3, 24, 40), dtype=torch.uint8, generator=g)
    assert dm.batch_from_records([wide])["image"].shape == (1, 3, 16, 16)


def test_decoded_and_sampled_batches_become_uint8_images():
    dm = SyntheticImageDataModule(channels=1, image_size=16)
    torch.manual_seed(0)
    model = DiLED(
        SemanticEncoder(1, 16, 4, **SMALL),
        ConvDecoder(1, 16, 4, **SMALL),
        denoiser=lambda d: SkipMLP(d, width=16, depth=1),
        timesteps=50,
    ).eval()
    batch = dm.batch_from_records(images(3, 1, 16))
    recon = model.reconstruct(batch)
    got = dm.records_from_batch(recon)
    expected = ((recon["image"] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    assert len(got) == 3 and all(torch.equal(a, b) for a, b in zip(got, expected))
    samples = dm.records_from_batch(model.sample(2, steps=2))
    assert [s.shape for s in samples] == [(1, 16, 16)] * 2 and all(s.dtype == torch.uint8 for s in samples)
    with pytest.raises(ValueError, match="needs a batch with an 'image' tensor"):
        dm.records_from_batch({"tokens": torch.zeros(2, 3)})


@pytest.mark.parametrize(
    "record, message",
    [
        (torch.rand(1, 16, 16), r"record 1 is a torch.float32 tensor .* uint8 tensors \[C, H, W\]"),
        (
            torch.zeros(16, 16, 1, dtype=torch.uint8),
            r"record 1 has 16 channel\(s\) .* channels=1.*permute\(2, 0, 1\)",
        ),
        (torch.zeros(16, 16, dtype=torch.uint8), r"record 1 is a torch.uint8 tensor of shape \(16, 16\)"),
        (torch.zeros(3, 16, 16, dtype=torch.uint8), r"record 1 has 3 channel\(s\).*mean\(0, keepdim=True\)"),
        (
            torch.zeros(1, 20, 20, dtype=torch.uint8),
            r"record 1 \(record1\).*20×20 .*image_size is 16.*resize",
        ),
        ([[0, 1], [2, 3]], r"record 1 is a list; image records are file paths or uint8 tensors"),
        ("missing/x.png", r"record 1: there is no image file at missing/x.png"),
    ],
)
def test_a_bad_record_is_named_with_how_to_fix_it(record, message):
    dm = SyntheticImageDataModule(channels=1, image_size=16)
    with pytest.raises(ImageDataError, match=message):
        dm.batch_from_records([images(1, 1, 16)[0], record])


def test_a_corrupt_file_or_no_record_is_an_error(tmp_path):
    dm = SyntheticImageDataModule(channels=1, image_size=16)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ImageDataError, match=r"bad.png: cannot decode the image"):
        dm.batch_from_records([bad])
    with pytest.raises(ImageDataError, match="got no records"):
        dm.batch_from_records([])
