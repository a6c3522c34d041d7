"""Checkpoints that survive and are read safely.

* :class:`AtomicCheckpointIO` writes each checkpoint to a temporary file in the destination folder,
  flushes and fsyncs it, then renames it over the old one: a kill or a full disk mid-save leaves the
  previous checkpoint intact (Lightning's own save stages the file in ``$TMPDIR``, which on clusters
  is often another filesystem, so its final move is a copy that can be cut short).
* :func:`read_checkpoint` loads a checkpoint without running code from it (``weights_only=True``) and
  turns every way it can be unusable into one paragraph: missing, empty, truncated, holding code or
  objects, not a Lightning checkpoint, or holding non-finite weights.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointError",
    "CheckpointSaveError",
    "check_fits",
    "non_finite_keys",
    "read_checkpoint",
]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, unreadable, refused, or made for another model."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written; the previous one is kept."""


def non_finite_keys(state_dict: dict[str, Any]) -> list[str]:
    """Keys of floating-point tensors in ``state_dict`` that hold NaN or infinity."""
    return [
        k for k, v in state_dict.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()
    ]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into ``.<name>.tmp-<pid>`` beside the destination, fsync, rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (got {storage_options!r})")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as err:
            written = tmp.stat().st_size if tmp.exists() else 0
            tmp.unlink(missing_ok=True)
            raise CheckpointSaveError(err.errno, _save_failure(path, err, written)) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def _save_failure(path: Path, err: OSError, written: int) -> str:
    kept = "the previous checkpoint there is kept unchanged" if path.exists() else "no earlier checkpoint exists"
    text = f"could not write the checkpoint {path} ({err.strerror or err}); {kept}"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(path.parent).free
        text += (
            f". The disk is full: the checkpoint needed more than {written / 2**20:.1f} MiB and "
            f"{free / 2**20:.1f} MiB are free on that filesystem. Free some space (or choose another "
            "--trainer.default_root_dir) and resume from the kept checkpoint with --ckpt_path"
        )
    return text


def read_checkpoint(path: str | Path, *, check_finite: bool = True) -> dict[str, Any]:
    """Load a checkpoint without executing code from it, or explain in one paragraph why not."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check --ckpt_path")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint {path} is refused: it is an empty file (an interrupted copy or a full disk). "
            "Use another checkpoint, e.g. the last.ckpt of the run's checkpoints/ folder."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err) or "Unsupported class" in str(err):
            raise CheckpointError(
                f"checkpoint {path} is refused: it contains Python objects or code, not only tensors "
                "and plain values, and diled never runs code from a checkpoint. Use a checkpoint "
                "written by diled, or re-save its state_dict with torch.save."
            ) from None
        raise CheckpointError(_unreadable(path, err)) from None
    except Exception as err:
        raise CheckpointError(_unreadable(path, err)) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is refused: it is not a Lightning checkpoint (no state_dict)")
    bad = non_finite_keys(ckpt["state_dict"]) if check_finite else []
    if bad:
        raise CheckpointError(
            f"checkpoint {path} is refused: {len(bad)} weight tensor(s) hold NaN or infinity (first: "
            f"{bad[0]}); the run diverged before it was saved. Use an earlier checkpoint."
        )
    return ckpt


def _unreadable(path: Path, err: BaseException) -> str:
    reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
    return (
        f"checkpoint {path} is refused: it is unreadable ({type(err).__name__}: {reason}). It may be "
        "truncated (an interrupted copy or a full disk) or not a checkpoint at all; use another "
        "checkpoint, e.g. the last.ckpt of the run's checkpoints/ folder."
    )


def check_fits(cls: type, ckpt: dict[str, Any], path: str | Path, describe: Any) -> None:
    """Build ``cls`` from the checkpoint's hyper-parameters on the meta device (no memory is
    allocated) and load its weights there: hyper-parameters that do not match the weights (a crafted
    ``latent_dim: 99999`` would otherwise allocate tens of GB) are refused before the real build.
    ``describe(err)`` turns torch's load error into one paragraph. Other failures are left to the real
    load, which reports them."""
    from lightning.pytorch.core.saving import _load_state

    probe = {k: v for k, v in ckpt.items() if k in ("state_dict", "hyper_parameters")}
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "copying ... to a meta parameter is a no-op": intended
            _load_state(cls, probe, strict=True)
    except RuntimeError as err:
        if "Error(s) in loading state_dict" in str(err):
            raise CheckpointError(f"checkpoint {path} is refused: {describe(err)}") from None
    except Exception:  # e.g. a part that cannot be built on the meta device: the real load decides
        return
