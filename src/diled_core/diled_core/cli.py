"""The ``diled`` command: a LightningCLI over :class:`~diled_core.DiLED` and any plugin's datamodule.

``diled fit|validate|test|predict --config run.yaml [--config more.yaml] [--trainer.* ...]`` plus
``diled plugins``. Installed modality plugins are imported first, so configs may name their classes.
Errors a user can fix end in one paragraph and a non-zero exit (``DILED_DEBUG=1`` shows tracebacks).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .checkpoints import AtomicCheckpointIO, CheckpointError, CheckpointSaveError, check_fits, read_checkpoint
from .data import DiledDataModule
from .module import DiLED, NonFiniteLossError
from .predict import PredictionWriter, PredictOptions
from .predict.options import UNSET_DEFAULTS
from .registry import FIRST_PARTY, distribution_of, load_modalities
from .runs import (
    Interrupted,
    SaveOnSigterm,
    changed_options,
    find_last_checkpoint,
    own_log_dir,
    prepare_output_dir,
    remove_if_empty,
    state_dict_mismatch,
)
from .sizes import fill_model_sizes, import_class

__all__ = ["DiledCLI", "main"]


def _data_modality(config: Any) -> str:
    data = config.get("data") if config is not None else None
    class_path = data.get("class_path") if data is not None and hasattr(data, "get") else None
    if not class_path:
        return ""
    try:
        cls = import_class(class_path)
    except (ImportError, AttributeError):
        return ""
    return getattr(cls, "modality", "")


_DESCRIPTION = (
    "DiLED: generate, reconstruct and represent data with one diffusion model whose first step is a "
    "learnable encoder and last step a learnable decoder. Subcommands below; `diled plugins` lists the "
    "installed modalities. Predict tasks: --prediction.task reconstruct|generate|encode|interpolate|optimise."
)


class DiledCLI(LightningCLI):
    """LightningCLI with diled's defaults: checkpoints with ``last.ckpt``, TensorBoard logs under ``runs/``,
    safe checkpoint loading, and the ``--prediction.*`` options of ``diled predict``."""

    def __init__(self, args: Any = None, run: bool = True) -> None:
        load_modalities()  # import the plugins so configs can name their classes
        super().__init__(
            DiLED,
            DiledDataModule,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"default_root_dir": "runs"},
            parser_kwargs={"exit_on_error": False, "description": _DESCRIPTION},
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.filename": "{epoch}-{step}"})
        # the latent size is given once, on the encoder (a decoder without latent_dim is skipped)
        parser.link_arguments("model.encoder.init_args.latent_dim", "model.decoder.init_args.latent_dim")
        # a diffusion decoder maps the shared t of the latent chain onto its own chain
        parser.link_arguments("model.timesteps", "model.decoder.init_args.latent_timesteps")

    def _prepare_subcommand_parser(
        self, klass: type, subcommand: str, **kwargs: Any
    ) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if "weights_only" in self._subcommand_method_arguments[subcommand]:
            parser.set_defaults(weights_only=True)  # never execute code from a checkpoint
        if subcommand == "predict":  # outputs stream to files; the Trainer must not also keep them
            parser.set_defaults(return_predictions=False)
            parser.add_class_arguments(
                PredictOptions, "prediction", help="What `diled predict` computes and writes."
            )
        return parser

    def _parse_ckpt_path(self) -> None:
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path == "last":  # as Lightning's ckpt_path="last", across runs of the root folder
            root = self.config[subcommand].trainer.get("default_root_dir") or "runs"
            ckpt_path = self.config[subcommand].ckpt_path = str(find_last_checkpoint(root))
        if ckpt_path:
            ckpt = read_checkpoint(ckpt_path)
            saved = ckpt.get("diled", {}).get("modality", "")
            wanted = _data_modality(self.config[subcommand])
            if saved and wanted and saved != wanted:
                raise CheckpointError(
                    f"checkpoint {ckpt_path} was trained on the {saved!r} modality but the config's data is "
                    f"{wanted!r}; pass the config the run was trained with (config.yaml in its run folder)."
                )
            if subcommand == "fit":  # resuming: the config's options apply, not the checkpoint's
                model = self.config.fit.model
                changes = changed_options(ckpt.get("hyper_parameters", {}), model.as_dict() if model else {})
                if changes:
                    print(
                        f"diled fit: resuming from {ckpt_path} with new options: {changes}", file=sys.stderr
                    )
                return
            check_fits(DiLED, ckpt, ckpt_path, state_dict_mismatch)  # before its hparams build the model
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        fill_model_sizes(config)
        if self.subcommand == "predict":  # no log folder: the run config lands next to the predictions
            config.trainer.logger = False
            config.trainer.default_root_dir = str(config.prediction.output_dir)
        strategy = config.trainer.get("strategy")
        if config.model.get("training", "joint") == "two_stage":
            # the frozen second stage leaves parameters without gradients, which plain DDP rejects
            if strategy in ("ddp", "ddp_spawn"):
                config.trainer.strategy = f"{strategy}_find_unused_parameters_true"
            elif hasattr(strategy, "get") and str(strategy.get("class_path", "")).endswith("DDPStrategy"):
                strategy.dict_kwargs = {**(strategy.get("dict_kwargs") or {}), "find_unused_parameters": True}

    def instantiate_trainer(self, **kwargs: Any):
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # keep a user's own plugin
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if self.subcommand == "fit":
            trainer.callbacks.append(SaveOnSigterm())
        return trainer

    def before_predict(self) -> None:
        # options left unset take the modality's defaults (its datamodule's prediction_defaults)
        options = self.config_init.predict.prediction.resolve(self.datamodule.prediction_defaults)
        self.config_init.predict.prediction = options
        for name in UNSET_DEFAULTS:  # the config.yaml saved beside the predictions shows the values used
            self.config.predict.prediction[name] = getattr(options, name)
        prepare_output_dir(Path(options.output_dir), options.task, overwrite=options.overwrite)
        if not self.config.predict.get("ckpt_path"):
            warnings.warn(
                "diled predict without --ckpt_path uses an untrained model", UserWarning, stacklevel=1
            )
        self.model.predict_options = options
        self.datamodule.configure_prediction(
            options.task,
            split=options.split,
            num_samples=options.num_samples,
            max_examples=options.max_examples,
        )
        # no checkpointing while predicting (it would only restore and warn about its dirpath)
        self.trainer.callbacks = [c for c in self.trainer.callbacks if not isinstance(c, ModelCheckpoint)]
        self.trainer.callbacks.append(PredictionWriter(options))

    def _run_subcommand(self, subcommand: str) -> None:
        with warnings.catch_warnings():
            if subcommand == "predict":  # ModelCheckpoint's state in the checkpoint is not needed here
                warnings.filterwarnings("ignore", message="Be aware that when using `ckpt_path`")
            try:
                super()._run_subcommand(subcommand)
            except BaseException:
                if subcommand == "fit" and self.trainer.is_global_zero:
                    # a failed fit leaves no run folder without checkpoints; not trainer.log_dir, a
                    # collective that hangs when rank 0 failed alone
                    remove_if_empty(own_log_dir(self.trainer))
                raise

    def after_fit(self) -> None:
        """Say where the run went and how to use it (the run folder holds the config it was trained with)."""
        log_dir = self.trainer.log_dir  # under DDP a broadcast from rank 0: every rank must ask
        saved = self.trainer.checkpoint_callback
        last = (saved.last_model_path or saved.best_model_path) if saved is not None else ""
        if self.trainer.is_global_zero and last:
            config = Path(log_dir or "") / "config.yaml"
            print(f"diled fit: checkpoint {last}")
            if config.is_file():
                use = f"diled predict --config {config} --ckpt_path {last} --prediction.task generate"
                print(f"  use it: {use}")

    def after_predict(self) -> None:
        options = self.config_init.predict.prediction
        if self.trainer.is_global_zero:
            print(f"diled predict: wrote {options.task} outputs to {Path(options.output_dir).resolve()}")


def _plugins() -> int:
    found = load_modalities()
    if not found:
        print("no modality plugins installed")
        return 1
    width = max(len(n) for n in found)
    for name, loaded in found.items():
        print(f"{name:<{width}}  {loaded.distribution} {loaded.version}  {loaded.modality.description}")
    return 0


_USER_ERRORS = (
    ArgumentError,
    CheckpointError,
    CheckpointSaveError,
    Interrupted,
    NonFiniteLossError,
    FileNotFoundError,
    ValueError,
)


def _explain(err: BaseException, argv: list[str]) -> str:
    text = " ".join(str(err).split())
    if isinstance(err, NonFiniteLossError):
        text += (
            ". Training stopped; checkpoints written before this step are kept (see the run's checkpoints/ "
            "folder). Lower the learning rate, set --trainer.gradient_clip_val 1.0, or use 32-bit precision, "
            "then resume with --ckpt_path."
        )
    if isinstance(err, ArgumentError):
        missing = re.search(r"No module named '([\w.]+)'", text)
        if missing:
            text = f"{_missing_module(missing.group(1))} Parser said: {text}"
        configs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
        if "<unicode string>" in text and configs:
            text = text.replace('"<unicode string>"', "the config") + f" (config files: {', '.join(configs)})"
        text += " See `diled --help` or `diled fit --print_config` for the valid keys."
    return text


def _missing_module(module: str) -> str:
    """What to install (or fix) when a config's class path names a module that cannot be imported."""
    dist = distribution_of(module)
    installed = ", ".join(sorted(load_modalities())) or "none"
    choose = f"or choose an installed modality ({installed}; see `diled plugins`)."
    if "." in module:  # Python names the parent first when it is missing, so the parent is installed
        owner = f"the distribution {dist!r}" if dist else f"the package {module.split('.')[0]!r}"
        return (
            f"the config names a class from the module {module!r}, which {owner} does not have. Check the "
            f"class path's spelling, upgrade {owner}, {choose}"
        )
    if module in FIRST_PARTY:
        how = f"Install the distribution {dist!r} (`pip install ./src/{module}` from a diled checkout)"
    elif dist:
        how = f"Install (or reinstall) the distribution {dist!r} (`pip install {dist}`)"
    else:
        how = f"Install the package providing the module {module!r}"
    return f"the config names a class from the module {module!r}, which is not installed. {how}, {choose}"


def _not_an_advert(record: logging.LogRecord) -> bool:
    """False for Lightning's tip to install its cloud logger, printed at every fit."""
    return "litlogger" not in str(record.msg).lower()


def _quiet_dependencies() -> None:
    """Hide dependency messages that say nothing a diled user can act on (diled's own warnings stay)."""
    # Lightning 2.6 calls torch.utils._pytree.LeafSpec, deprecated in torch 2.14
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_not_an_advert)  # the same function is added once


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``diled`` command; returns the exit code."""
    argv = sys.argv[1:] if args is None else list(args)
    _quiet_dependencies()
    if argv[:1] == ["plugins"]:
        return _plugins()
    try:
        DiledCLI(args=args)
    except SIGTERMException as err:  # Lightning stops the loops with this SystemExit (code None)
        return main_error(Interrupted.from_sigterm(err), argv)
    except _USER_ERRORS as err:
        return main_error(err, argv)
    except RuntimeError as err:
        if "Error(s) in loading state_dict" not in str(err):
            raise
        return main_error(CheckpointError(state_dict_mismatch(err)), argv)
    _close_process_group()
    return 0


def _close_process_group() -> None:
    """After a DDP run, close this process's group before the interpreter exits (no barrier: a process
    whose command failed never gets here, and the others must not wait for it). Left to exit on its
    own, gloo sometimes aborted the process ("terminate called without an active exception", -6)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main_error(err: BaseException, argv: list[str]) -> int:
    if os.environ.get("DILED_DEBUG"):
        traceback.print_exception(err)
    print(f"diled: error: {_explain(err, argv)}", file=sys.stderr)
    if isinstance(err, Interrupted):
        return err.exit_code
    return 2 if isinstance(err, ArgumentError) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
