"""Modality plugins, found through the entry-point group ``diled.modalities``.

Each entry point names a :class:`Modality` object. The core registers its own toy modality the same
way third parties do. A plugin that fails to import or does not name a :class:`Modality` is skipped
with a warning naming its distribution.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points, packages_distributions

from .contract import Decoder, Encoder
from .data import DiledDataModule

__all__ = [
    "ENTRY_POINT_GROUP",
    "FIRST_PARTY",
    "LoadedModality",
    "Modality",
    "distribution_of",
    "load_modalities",
]

ENTRY_POINT_GROUP = "diled.modalities"

#: diled's own distributions by import name (each ``src/<import name>/pyproject.toml``), known even when
#: not installed, so that install advice never guesses a name
FIRST_PARTY = {
    "diled_core": "diled-core",
    "diled_image": "diled-image",
    "diled_protein": "diled-protein",
    "diled_text": "diled-text",
}


@dataclass(frozen=True)
class Modality:
    """What a plugin registers: its name and the classes a config may name."""

    name: str
    datamodules: tuple[type[DiledDataModule], ...]
    encoders: tuple[type[Encoder], ...]
    decoders: tuple[type[Decoder], ...]
    description: str = ""

    def __post_init__(self) -> None:
        for kind, base in (("datamodules", DiledDataModule), ("encoders", Encoder), ("decoders", Decoder)):
            for cls in getattr(self, kind):
                if not (isinstance(cls, type) and issubclass(cls, base)):
                    raise TypeError(
                        f"modality {self.name!r}: {kind} entry {cls!r} is not a {base.__name__} subclass"
                    )


@dataclass(frozen=True)
class LoadedModality:
    modality: Modality
    distribution: str
    version: str


def _load(ep: EntryPoint) -> LoadedModality:
    dist = ep.dist.name if ep.dist is not None else "?"
    version = ep.dist.version if ep.dist is not None else "?"
    obj = ep.load()
    if not isinstance(obj, Modality):
        raise TypeError(f"entry point {ep.value!r} is a {type(obj).__name__}, not a diled_core.Modality")
    if obj.name != ep.name:
        raise TypeError(f"entry point {ep.name!r} names a modality called {obj.name!r}")
    return LoadedModality(obj, dist, version)


def load_modalities() -> dict[str, LoadedModality]:
    """Import every installed modality plugin; broken ones are skipped with a warning."""
    found: dict[str, LoadedModality] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            found[ep.name] = _load(ep)
        except Exception as err:  # a broken plugin must not break the others
            dist = ep.dist.name if ep.dist is not None else ep.value
            warnings.warn(
                f"diled: skipping modality plugin {ep.name!r} from distribution {dist!r}: "
                f"{type(err).__name__}: {err}",
                RuntimeWarning,
                stacklevel=2,
            )
    return found


def distribution_of(module: str) -> str | None:
    """The distribution that provides ``module`` (dotted or not): diled's own from :data:`FIRST_PARTY`,
    others from the installed packages' metadata; ``None`` when that is not known (e.g. not installed)."""
    top = module.split(".")[0]
    if top in FIRST_PARTY:
        return FIRST_PARTY[top]
    found = packages_distributions().get(top) or []
    return found[0] if len(set(found)) == 1 else None
