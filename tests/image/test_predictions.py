"""The image writers and pixel metrics on hand-made outputs: bounded grids, per-image files committed or
removed, embeddings, and MSE / PSNR / SSIM values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diled_image.predictions import ImageFilesWriter, ImageGridWriter, task_writers
from diled_image.streaming import pixel_metrics
from PIL import Image


def recon_outputs(n: int, start: int = 0) -> dict:
    g = torch.Generator().manual_seed(start)
    x = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1
    return {
        "input": {
            "image": x,
            "label": torch.zeros(n, dtype=torch.long),
            "id": [f"c/im{start + i}.png" for i in range(n)],
        },
        "output": {"image": -x},
        "mu": torch.randn(n, 3, generator=g),
    }


def test_grid_keeps_only_the_first_images_and_writes_one_png(tmp_path):
    writer = ImageGridWriter(tmp_path / "grid.png", lambda o: (o["output"]["image"], 4), capacity=10)
    for k in range(5):
        writer.write(recon_outputs(6, 6 * k))
    assert writer.kept == 10 and sum(len(r) for r in writer.rows) == 10  # nothing beyond the capacity is kept
    writer.close()
    grid = np.array(Image.open(tmp_path / "grid.png"))
    assert grid.shape[:2] == (2 + 3 * 10, 2 + 4 * 10)  # 3 rows × 4 columns of 8 px images, padding 2


def test_reconstruct_writers_stream_pairs_and_one_file_per_image(tmp_path):
    writers = task_writers("reconstruct", tmp_path, rank=0, grid_images=64)
    for k in range(3):
        for w in writers:
            w.write(recon_outputs(4, 4 * k))
    files = [f for w in writers for f in w.close()]
    assert sorted(f.name for f in files) == ["files.csv", "reconstructions.png"]
    assert sorted(p.name for p in (tmp_path / "reconstructions").glob("*.png")) == sorted(
        f"c_im{i}.png" for i in range(12)
    )
    manifest = (tmp_path / "reconstructions" / "files.csv").read_text().splitlines()
    assert manifest[:2] == ["file,name", "c_im0.png,c/im0.png"] and len(manifest) == 13
    grid = np.array(Image.open(tmp_path / "reconstructions.png"))
    assert grid.shape[:2] == (2 + 3 * 10, 2 + 8 * 10)  # 12 pairs, 4 pairs (8 images) per row
    out = np.array(Image.open(tmp_path / "reconstructions" / "c_im0.png"))
    x = recon_outputs(4, 0)["output"]["image"][0, 0]
    np.testing.assert_allclose(
        out[..., 0] if out.ndim == 3 else out, ((x + 1) / 2 * 255 + 0.5).clamp(0, 255).floor().numpy(), atol=1
    )
    assert not list(tmp_path.glob(".*"))


def test_an_aborted_task_leaves_no_image_files(tmp_path):
    writer = ImageFilesWriter(
        tmp_path / "samples", lambda o: o["output"]["image"], lambda o: list(o["input"]["id"])
    )
    writer.write(recon_outputs(3))
    writer.abort()
    assert not list(tmp_path.iterdir())


def test_encode_writes_embeddings_csv_and_npy(tmp_path):
    (writer,) = task_writers("encode", tmp_path, rank=1)
    a, b = recon_outputs(3, 0), recon_outputs(2, 3)
    b["x_T"] = torch.ones(2, 3)
    a["x_T"] = torch.zeros(3, 3)
    writer.write(a)
    writer.write(b)
    names = sorted(f.name for f in writer.close())
    assert names == ["embeddings.rank1.csv", "embeddings.rank1.npy", "embeddings_xT.rank1.npy"]
    mu = np.load(tmp_path / "embeddings.rank1.npy")
    np.testing.assert_allclose(mu, torch.cat([a["mu"], b["mu"]]).numpy(), rtol=1e-6)
    rows = (tmp_path / "embeddings.rank1.csv").read_text().splitlines()
    assert rows[0] == "id,label,mu_0,mu_1,mu_2" and rows[1].startswith("c/im0.png,0,") and len(rows) == 6


def test_pixel_metrics_on_known_images():
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    metric = pixel_metrics()
    metric.update({"input": {"image": x}, "output": {"image": x}})
    same = metric.compute()
    assert same["mse"] == 0 and same["psnr"] == pytest.approx(100.0) and same["ssim"] == pytest.approx(1.0)
    metric = pixel_metrics()
    shifted = (x + 0.2).clamp(-1, 1)
    metric.update({"input": {"image": x[:2]}, "output": {"image": shifted[:2]}})
    metric.update({"input": {"image": x[2:]}, "output": {"image": shifted[2:]}})
    mse = (((shifted - x) / 2) ** 2).flatten(1).mean(1)
    got = metric.compute()
    assert got["mse"] == pytest.approx(mse.mean().item(), rel=1e-5)
    assert got["psnr"] == pytest.approx((-10 * mse.log10()).mean().item(), rel=1e-5)
    assert 0 < got["ssim"] < 1
