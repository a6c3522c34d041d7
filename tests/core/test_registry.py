"""Plugin discovery through the `diled.modalities` entry-point group, and shipped YAML configs."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest
from diled_core.cli import DiledCLI, main
from diled_core.registry import Modality, load_modalities
from diled_core.toy import ToyDataModule, ToyDecoder

REPO = Path(__file__).resolve().parents[2]


def _fake_distribution(root: Path, name: str, entry: str, module_source: str) -> None:
    """A minimal installed distribution on sys.path: a module plus dist-info with one entry point."""
    (root / f"{name}.py").write_text(module_source)
    info = root / f"{name}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[diled.modalities]\n{entry} = {name}:MODALITY\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_toy_is_registered_through_the_entry_point_group() -> None:
    toy = load_modalities()["toy"]
    assert toy.distribution == "diled-core" and toy.modality.datamodules == (ToyDataModule,)


def test_broken_plugin_is_skipped_with_a_warning_naming_its_distribution(site: Path) -> None:
    _fake_distribution(site, "broken_plug", "broken", "raise ImportError('needs libfoo')\n")
    with pytest.warns(RuntimeWarning, match="broken_plug.*needs libfoo"):
        found = load_modalities()
    assert "broken" not in found and "toy" in found


def test_entry_point_that_is_not_a_modality_is_skipped(site: Path) -> None:
    _fake_distribution(site, "wrong_plug", "wrong", "MODALITY = 42\n")
    with pytest.warns(RuntimeWarning, match="wrong_plug.*not a diled_core.Modality"):
        assert "wrong" not in load_modalities()


def test_third_party_plugin_is_found_with_its_version(site: Path) -> None:
    source = (
        "from diled_core import Modality\nfrom diled_core.toy import ToyDataModule, ToyEncoder, ToyDecoder\n"
        "MODALITY = Modality('extra', (ToyDataModule,), (ToyEncoder,), (ToyDecoder,), 'a test plugin')\n"
    )
    _fake_distribution(site, "extra_plug", "extra", source)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = load_modalities()
    assert found["extra"].distribution == "extra_plug" and found["extra"].version == "0.3"


def test_modality_checks_its_classes() -> None:
    with pytest.raises(TypeError, match="not a Encoder subclass"):
        Modality("bad", (ToyDataModule,), (ToyDecoder,), (ToyDecoder,))


def test_plugins_command_lists_distribution_and_version(capsys) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert any(line.split()[:2] == ["toy", "diled-core"] for line in out.splitlines())


def _shipped_configs() -> list[Path]:
    return sorted((REPO / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("config", _shipped_configs(), ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_shipped_yaml_builds_against_the_real_signatures(config: Path, monkeypatch) -> None:
    """Parse and instantiate model, datamodule and trainer from each shipped config (no training)."""
    text = config.read_text()
    for line in text.splitlines():  # "# requires: <paths>": local weights or data the config needs
        if line.startswith("# requires:"):
            missing = [p for p in line.split(":", 1)[1].split() if not (REPO / p).exists()]
            if missing:
                pytest.skip(f"{config.name} needs local files that are absent here: {', '.join(missing)}")
    for plugin in ("diled_protein", "diled_text", "diled_image"):
        if plugin in text and importlib.util.find_spec(plugin) is None:
            pytest.skip(f"{plugin} is not installed")
    monkeypatch.chdir(REPO)  # configs use paths relative to the repository root
    monkeypatch.setattr(sys, "argv", ["diled"])
    cli = DiledCLI(args=["--config", str(config)], run=False)
    model, data = cli.model, cli.datamodule
    assert getattr(model.decoder, "latent_dim", model.encoder.latent_dim) == model.encoder.latent_dim
    sizes = type(data).model_sizes(**dict(cli.config["data"]["init_args"]))
    for part in (model.encoder, model.decoder):  # sizes the data knows reached the parts
        for key, value in sizes.items():
            assert getattr(part, key, value) == value
    cli.datamodule.check_compatible(cli.model.encoder, cli.model.decoder)


def test_first_party_table_matches_every_distribution_in_the_checkout() -> None:
    """The install advice for a missing diled plugin comes from FIRST_PARTY: it must name each
    ``src/<import name>/pyproject.toml`` distribution exactly."""
    import tomllib
    from diled_core.registry import FIRST_PARTY

    src = Path(__file__).resolve().parents[2] / "src"
    found = {
        p.parent.name: tomllib.loads(p.read_text())["project"]["name"] for p in src.glob("*/pyproject.toml")
    }
    assert found == FIRST_PARTY
