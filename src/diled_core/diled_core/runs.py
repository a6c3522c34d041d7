"""Run-folder rules of the ``diled`` command: resume, interruption, failed fits, prediction folders.

* ``--ckpt_path last`` finds the newest ``last.ckpt`` under the run root (:func:`find_last_checkpoint`).
* Resuming applies the options given now; :func:`changed_options` says which differ from the checkpoint.
* SIGTERM in mid-fit saves a resumable ``last.ckpt`` (:class:`SaveOnSigterm`) and the command exits 143
  (:class:`Interrupted`), so ``diled fit && diled predict`` never goes on with a half-trained model.
* A failed fit leaves no run folder without checkpoints behind (:func:`remove_if_empty`, on the folder
  :func:`own_log_dir` names without waiting for the other DDP processes).
* Predictions of a task never mix runs: a folder that already holds them is refused unless
  ``--prediction.overwrite true``, which first removes that task's files (:func:`prepare_output_dir`).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .io import atomic_write

__all__ = [
    "Interrupted",
    "OutputDirError",
    "SaveOnSigterm",
    "changed_options",
    "find_last_checkpoint",
    "own_log_dir",
    "prepare_output_dir",
    "remove_if_empty",
    "state_dict_mismatch",
]


class OutputDirError(ValueError):
    """The predictions folder cannot be used as it is."""


class Interrupted(RuntimeError):
    """The run was stopped by a signal; ``exit_code`` is 128 + the signal number."""

    def __init__(self, message: str, exit_code: int = 143) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    @classmethod
    def from_sigterm(cls, err: BaseException) -> Interrupted:
        saved = getattr(err, "diled_checkpoint", None)
        step = getattr(err, "diled_step", None)
        where = f" at step {step}" if step is not None else ""
        if saved:
            return cls(f"stopped by SIGTERM{where}; a resumable checkpoint was saved to {saved}; "
                       f"resume with --ckpt_path {saved} (or --ckpt_path last)")
        return cls(f"stopped by SIGTERM{where}; no checkpoint was saved")


class SaveOnSigterm(Callback):
    """On SIGTERM (Lightning stops its loops with ``SIGTERMException``), save ``last.ckpt`` now."""

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        callbacks = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.dirpath]
        if not callbacks:
            return
        path = Path(callbacks[0].dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}{ModelCheckpoint.FILE_EXTENSION}"
        trainer.save_checkpoint(path)
        exception.diled_checkpoint, exception.diled_step = str(path), trainer.global_step  # type: ignore


def find_last_checkpoint(root: str | Path) -> Path:
    """The ``last.ckpt`` of the newest run under ``root`` (``<root>/lightning_logs/version_*``)."""
    runs = sorted(Path(root).glob("lightning_logs/version_*/checkpoints/last.ckpt"),
                  key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FileNotFoundError(
            f"--ckpt_path last: no run under {Path(root).resolve()} has a checkpoints/last.ckpt; "
            "pass the checkpoint's path, or the run root with --trainer.default_root_dir"
        )
    return runs[-1]


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, tuple):  # a config's tuple is saved in the checkpoint's hyper-parameters as a list
        return {prefix: list(d)}
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for key, value in d.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return {k.rstrip("."): v for k, v in out.items()}


def changed_options(saved: dict[str, Any], given: dict[str, Any]) -> str:
    """``"w: 1.0 -> 2.0, optimizer.init_args.lr: 0.001 -> 0.0005"`` for model options that differ."""
    old = {k: v for k, v in _flat(saved).items() if not k.startswith("_")}
    new = _flat(given)
    return ", ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in new if k in old and old[k] != new[k])


def own_log_dir(trainer: Any) -> str | None:
    """The run folder as ``Trainer.log_dir`` names it, without its broadcast to every DDP process.

    ``Trainer.log_dir`` is a collective: a process that asks alone (the only one that failed) waits
    for the others forever. On rank 0 this gives the same folder; other ranks may not know it.
    """
    if not trainer.loggers:
        return trainer.default_root_dir
    logger = trainer.loggers[0]
    return logger.log_dir if isinstance(logger, (TensorBoardLogger, CSVLogger)) else logger.save_dir


def remove_if_empty(log_dir: str | Path | None) -> None:
    """Remove a ``version_N`` run folder that holds no checkpoint (what a failed fit leaves)."""
    if not log_dir or not Path(log_dir).name.startswith("version_") or not Path(log_dir).is_dir():
        return
    if not any(Path(log_dir).rglob("*.ckpt")):
        shutil.rmtree(log_dir, ignore_errors=True)


_STATISTICS = ("running_mean", "running_var", "num_batches_tracked", "running_cov")


def _latent_norm_hint(keys: dict[str, list[str]]) -> str:
    """What to set when the only mismatch is the encoder's latent normalisation statistics
    (``normalize``: LatentNorm's running mean and variance, GroupWhiten's running mean and covariance)."""
    missing, unexpected = keys.get("missing", []), keys.get("unexpected", [])
    found = missing + unexpected
    if not found or not all(k.startswith("encoder.") and k.endswith(_STATISTICS) for k in found):
        return ""
    if any(k.endswith("running_cov") for k in unexpected):
        have, why = "whiten", ""
    elif unexpected:
        have, why = "batch", ""
    else:
        have, why = "none or example", " (as runs from before LatentNorm became the default)"
    side = "the checkpoint has" if unexpected else "the model built from the config has"
    return (
        f"Only the encoder's latent standardisation differs ({side} other normalisation statistics): the "
        f"run was trained with the encoder option normalize: {have}{why}; pass the one it used, e.g. "
        f"--model.encoder.init_args.normalize {have.split()[0]}"
    )


def state_dict_mismatch(err: RuntimeError) -> str:
    """One paragraph from torch's long ``Error(s) in loading state_dict`` message."""
    text = str(err)
    parts, keys = [], {}
    for label, pattern in (("missing", r"Missing key\(s\) in state_dict: (.*?)\.\s*$"),
                           ("unexpected", r"Unexpected key\(s\) in state_dict: (.*?)\.\s*$")):
        found = re.search(pattern, text, re.M)
        if found:
            keys[label] = [k.strip(' "') for k in found.group(1).split(",")]
            parts.append(f"{len(keys[label])} {label} weight(s) (first: {keys[label][0]})")
    hint = _latent_norm_hint(keys)
    size = re.search(r"size mismatch for ([\w.]+): copying a param with shape torch.Size\((\[[^\]]*\])\) from "
                     r"checkpoint, the shape in current model is torch.Size\((\[[^\]]*\])\)", text)
    if size:
        parts.append(f"weights of another size ({size.group(1)}: {size.group(2)} in the checkpoint, "
                     f"{size.group(3)} in the model)")
    return (
        "the checkpoint does not fit the model built from the config: "
        + ("; ".join(parts) or text.splitlines()[0])
        + (f". {hint}" if hint else "")
        + ". Pass the config the run was trained with (config.yaml in its run folder), or a checkpoint of "
        "this config; a checkpoint from another diled version may need the version it was made with."
    )


def prepare_output_dir(out: Path, task: str, *, overwrite: bool) -> None:
    """Make ``out`` ready for ``task``'s predictions: refuse a file, an unwritable folder, or earlier
    predictions of the same task (unless ``overwrite``, which removes them first)."""
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"--prediction.output_dir {out} is a file, not a folder; choose a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".diled-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OutputDirError(
            f"cannot write predictions into {out} ({err.strerror or err}); choose a writable "
            "--prediction.output_dir"
        ) from None
    metrics_path = out / "metrics.json"
    try:
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        metrics = {}
    earlier = metrics.get(task)
    if earlier is None:
        return
    files = [out / name for name in earlier.get("files", [])]
    if not overwrite:
        raise OutputDirError(
            f"{out} already holds {task} predictions ({len(files)} file(s), metrics.json); pass "
            "--prediction.overwrite true to replace them, or choose another --prediction.output_dir"
        )
    for path in files:
        path.unlink(missing_ok=True)
    del metrics[task]
    with atomic_write(metrics_path) as f:
        json.dump(metrics, f, indent=2)
