"""Sizes that only the data knows flow into the encoder and decoder (the config edge of the CLI).

A datamodule class declares them in :meth:`~diled_core.DiledDataModule.model_sizes` (e.g.
``{"max_length": 20}``, ``{"vocab_size": 30522}``, ``{"channels": 1, "image_size": 28}``). Before the
classes are built, :func:`fill_model_sizes` sets each size on every encoder/decoder whose constructor
takes a parameter of that name, so a YAML names each size once, under ``data``. A conflicting value in
the model's config is an error; the filled values are saved in the run's ``config.yaml``.

This is a generic form of LightningCLI's ``link_arguments`` (which would need the core to name each
modality's keys): the latent size itself flows by a real link, encoder -> decoder (see ``cli.py``).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

__all__ = ["fill_model_sizes", "import_class"]


def import_class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _call_args(cls: type, init_args: dict[str, Any]) -> dict[str, Any]:
    """``init_args`` completed with the constructor's defaults."""
    bound = inspect.signature(cls).bind_partial(**init_args)
    bound.apply_defaults()
    return dict(bound.arguments)


def fill_model_sizes(config: Any) -> None:
    """Set ``config.model.{encoder,decoder}.init_args`` from ``config.data``'s ``model_sizes``."""
    data = config.get("data")
    if data is None or not data.get("class_path"):
        return
    data_cls = import_class(data.class_path)
    if not hasattr(data_cls, "model_sizes"):
        return
    sizes = data_cls.model_sizes(**_call_args(data_cls, dict(data.get("init_args") or {})))
    for part in ("encoder", "decoder"):
        sub = config.model.get(part) if config.get("model") is not None else None
        if sub is None or not hasattr(sub, "get") or not sub.get("class_path"):
            continue
        params = inspect.signature(import_class(sub.class_path)).parameters
        init_args = sub.get("init_args")
        for key, value in sizes.items():
            if key not in params:
                continue
            default = params[key].default
            given = init_args.get(key, default) if init_args is not None else default
            if given not in (default, value, None):
                raise ValueError(
                    f"model.{part}.init_args.{key} is {given!r} but the data ({data.class_path}) has "
                    f"{key}={value!r}; remove model.{part}.init_args.{key} from the config (it is taken "
                    f"from the data) or change data.init_args"
                )
            sub.init_args[key] = value
