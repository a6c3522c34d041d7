"""Reliability of the `diled` command (issue: checkpoints that survive, honest exits, resumes that take
new options, predictions that never mix). Faults are injected; nothing here depends on timing."""

from __future__ import annotations

import errno
import importlib.abc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from diled_core import DiLED
from diled_core.checkpoints import AtomicCheckpointIO, CheckpointError, CheckpointSaveError
from diled_core.cli import main
from diled_core.predict import TableWriter
from diled_core.predict import callback as predict_callback
from diled_core.predict import writers as predict_writers

REPO = Path(__file__).resolve().parents[2]
TOY = str(REPO / "configs" / "toy" / "fit.yaml")
FAST = [
    "--trainer.enable_progress_bar",
    "false",
    "--data.init_args.n_train",
    "256",
    "--data.init_args.n_val",
    "64",
    "--data.init_args.n_test",
    "64",
    "--data.init_args.batch_size",
    "64",
]


def fit(root: Path, *extra: str) -> int:
    return main(["fit", "--config", TOY, "--trainer.default_root_dir", str(root), *FAST, *extra])


def last(root: Path) -> Path:
    (path,) = root.glob("lightning_logs/version_*/checkpoints/last.ckpt")
    return path


def predict(ckpt: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "predict",
            "--config",
            str(ckpt.parents[1] / "config.yaml"),
            "--ckpt_path",
            str(ckpt),
            "--prediction.output_dir",
            str(out),
            "--trainer.enable_progress_bar",
            "false",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    assert fit(root, "--trainer.max_steps", "4") == 0
    return last(root)


def one_paragraph(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "weights_only=False" not in err
    return err


# ------------------------------------------------------------------------------ atomic checkpoints
def test_a_save_that_fails_midway_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)

    def full_disk(obj, f):  # a writer that raises after some bytes, as a full disk does
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointSaveError, match="disk is full") as caught:
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    assert "kept unchanged" in str(caught.value) and "MiB are free" in str(caught.value)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


_KILLED_SAVE = """
import sys, torch
from diled_core.checkpoints import AtomicCheckpointIO
io = AtomicCheckpointIO()
io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "global_step": 1}, sys.argv[1])
print("saved", flush=True)
io.save_checkpoint({"state_dict": {"w": torch.zeros(64, 2**20)}, "global_step": 2}, sys.argv[1])  # 256 MiB
"""


def test_sigkill_during_a_save_with_tmpdir_elsewhere_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    ckpt_dir, elsewhere = tmp_path / "run", tmp_path / "tmpdir"
    ckpt_dir.mkdir()
    elsewhere.mkdir()
    path = ckpt_dir / "last.ckpt"
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SAVE, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(elsewhere)},
    )
    assert child.stdout.readline().strip() == "saved"
    for _ in range(6000):  # kill it once the big save has started writing
        if any(p.name.startswith(".last.ckpt.tmp") and p.stat().st_size > 0 for p in ckpt_dir.iterdir()):
            break
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert torch.load(path, weights_only=True)["global_step"] == 1


# ------------------------------------------------------------------------------ reading checkpoints
def _write_pickled_object(path: Path) -> None:
    torch.save({"state_dict": {}, "callback": Path("x")}, path)  # a Python object, not plain data


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"not a checkpoint at all"), "unreadable"),
        (_write_pickled_object, "contains Python objects or code"),
        (
            lambda p: torch.save({"state_dict": {"encoder.net.0.weight": torch.full((2,), float("nan"))}}, p),
            "NaN or infinity",
        ),
    ],
)
def test_unusable_checkpoints_are_refused_in_one_paragraph(
    run: Path, tmp_path: Path, capsys, make, expected
) -> None:
    bad = tmp_path / "bad.ckpt"
    make(bad)
    assert predict(run, tmp_path / "out", "--ckpt_path", str(bad)) == 1
    err = one_paragraph(capsys)
    assert expected in err and str(bad) in err and len(err.strip().splitlines()) == 1
    with pytest.raises(CheckpointError, match=expected):
        DiLED.load_from_checkpoint(bad)


def test_weights_of_another_size_are_one_paragraph(run: Path, tmp_path: Path, capsys) -> None:
    code = main(
        [
            "predict",
            "--config",
            TOY,
            "--ckpt_path",
            str(run),
            "--prediction.output_dir",
            str(tmp_path),
            "--model.encoder.init_args.hidden",
            "64",
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    # the checkpoint's hyper-parameters rebuild the model it was trained as, so predict still works
    assert code == 0
    ckpt = torch.load(run, weights_only=True)
    ckpt["state_dict"]["decoder.net.0.weight"] = torch.zeros(3, 3)
    other = tmp_path / "other.ckpt"
    torch.save(ckpt, other)
    assert predict(run, tmp_path / "out2", "--ckpt_path", str(other)) == 1
    err = one_paragraph(capsys)
    assert "weights of another size (decoder.net.0.weight" in err


def test_crafted_hyper_parameters_cannot_make_diled_allocate(run: Path, tmp_path: Path, capsys) -> None:
    """latent_dim 99999 in the stored hyper-parameters (weights of latent size 4) would build a model of
    tens of GB; it is refused before any real allocation, by the CLI and the API."""
    import resource

    ckpt = torch.load(run, weights_only=True)
    ckpt["hyper_parameters"]["encoder"]["init_args"]["latent_dim"] = 99999
    crafted = tmp_path / "crafted.ckpt"
    torch.save(ckpt, crafted)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert predict(run, tmp_path / "out", "--ckpt_path", str(crafted)) == 1
    assert "weights of another size" in one_paragraph(capsys)
    with pytest.raises(CheckpointError, match="weights of another size"):
        DiLED.load_from_checkpoint(crafted)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 500, f"peak memory grew by {grown_mb:.0f} MB"


def test_the_api_loads_in_eval_mode(run: Path) -> None:
    model = DiLED.load_from_checkpoint(run)
    assert not model.training and not model.encoder.training


# ------------------------------------------------------------------------------ resume
def test_ckpt_path_last_and_resume_with_new_options(run: Path, tmp_path: Path, capsys) -> None:
    root = tmp_path / "root"
    assert fit(root, "--trainer.max_steps", "2") == 0
    capsys.readouterr()
    code = fit(
        root,
        "--trainer.max_steps",
        "4",
        "--ckpt_path",
        "last",
        "--model.w",
        "2.0",
        "--model.optimizer.init_args.lr",
        "5e-4",
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "w: 1.0 -> 2.0" in err and "lr: 0.002 -> 0.0005" in err
    newest = max(root.glob("lightning_logs/version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    ckpt = torch.load(newest, weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["hyper_parameters"]["w"] == 2.0
    assert {g["lr"] for g in ckpt["optimizer_states"][0]["param_groups"]} == {5e-4}


def test_resuming_with_the_runs_own_config_reports_no_new_options(tmp_path: Path, capsys) -> None:
    """The saved config.yaml gives Adam's betas as a tuple, the checkpoint's hyper-parameters as a list."""
    root = tmp_path / "root"
    assert fit(root, "--trainer.max_steps", "2") == 0
    (saved,) = root.glob("lightning_logs/version_*/config.yaml")
    capsys.readouterr()
    assert main(["fit", "--config", str(saved), "--trainer.max_steps", "4", "--ckpt_path", "last"]) == 0
    assert "new options" not in capsys.readouterr().err


def test_ckpt_path_last_without_runs_says_so(tmp_path: Path, capsys) -> None:
    assert fit(tmp_path / "none", "--ckpt_path", "last") == 1
    assert "no run under" in one_paragraph(capsys)


# ------------------------------------------------------------------------------ exits
@pytest.mark.parametrize("workers", [0, 2], ids=["no_workers", "2_workers_signalled_too"])
def test_sigterm_in_mid_fit_saves_a_resumable_checkpoint_and_exits_143(tmp_path: Path, workers: int) -> None:
    """As a cluster's scheduler (or `timeout`) stops a job: SIGTERM to every process of the job, the
    DataLoader workers too. A worker killed by it must not turn the clean stop into a traceback."""
    code = "import sys; from diled_core.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [
        "fit",
        "--config",
        TOY,
        "--trainer.default_root_dir",
        str(tmp_path),
        *FAST,
        "--trainer.max_steps",
        "100000",
        "--data.init_args.num_workers",
        str(workers),
    ]
    child = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,  # its own process group, signalled as a whole below
    )
    for _ in range(1200):  # wait until training runs (the first epoch's checkpoint exists)
        if list(tmp_path.glob("lightning_logs/version_*/checkpoints/*.ckpt")):
            break
        time.sleep(0.05)
    time.sleep(0.5)  # into the next epoch, with its workers running
    os.killpg(child.pid, signal.SIGTERM)
    err = child.communicate(timeout=120)[1]
    assert child.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM" in err and "--ckpt_path" in err
    assert "Traceback" not in err, err[-2000:]
    step = torch.load(last(tmp_path), weights_only=True)["global_step"]
    assert 0 < step < 100000


def test_a_failed_fit_leaves_no_empty_run_folder(tmp_path: Path, capsys) -> None:
    code = fit(
        tmp_path,
        "--trainer.max_steps",
        "50",
        "--model.optimizer.class_path",
        "torch.optim.SGD",
        "--model.optimizer.init_args.lr",
        "1e30",
    )
    assert code == 1
    assert not list(tmp_path.glob("lightning_logs/version_*")), "a run folder without checkpoints was left"


def test_an_autoencoder_model_refuses_to_generate(tmp_path: Path, capsys) -> None:
    assert fit(tmp_path, "--trainer.max_steps", "2", "--model.training", "autoencoder") == 0
    assert predict(last(tmp_path), tmp_path / "out", "--prediction.task", "generate") == 1
    assert "training: autoencoder" in one_paragraph(capsys)


# ------------------------------------------------------------------------------ prediction folders
def test_predictions_never_mix(run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    gen = ["--prediction.task", "generate", "--prediction.num_samples", "8", "--prediction.steps", "3"]
    assert predict(run, out, *gen) == 0
    assert predict(run, out, "--prediction.task", "encode") == 0  # another task may share the folder
    capsys.readouterr()
    assert predict(run, out, *gen) == 1
    assert "already holds generate predictions" in one_paragraph(capsys)
    stale = out / "samples.rank1.csv"  # what a 2-rank run left
    stale.write_text("index\n")
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["generate"]["files"].append(stale.name)
    (out / "metrics.json").write_text(json.dumps(metrics))
    assert predict(run, out, *gen[:2], "--prediction.num_samples", "5", "--prediction.overwrite", "true") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert not stale.exists() and metrics["generate"]["count"] == 5 and "encode" in metrics
    assert len((out / "samples.csv").read_text().splitlines()) == 1 + 5


def test_an_output_dir_that_is_a_file_is_one_paragraph(run: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert predict(run, target) == 1
    err = one_paragraph(capsys)
    assert err.startswith("diled: error:") and "is a file, not a folder" in err and len(err.splitlines()) == 1
    assert target.read_text() == "x" and [p.name for p in tmp_path.iterdir()] == ["file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
@pytest.mark.parametrize("sub", ["", "new"], ids=["the folder", "a folder inside it"])
def test_an_unwritable_output_dir_is_one_paragraph(run: Path, tmp_path: Path, capsys, sub: str) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert predict(run, locked / sub) == 1
        err = one_paragraph(capsys)
        assert err.startswith("diled: error:") and "cannot write predictions into" in err
        assert len(err.splitlines()) == 1 and list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def agreeing_metrics(out: Path) -> dict:
    """metrics.json, after checking that it lists exactly the prediction files on disk (no temporary ones)."""
    metrics = json.loads((out / "metrics.json").read_text())
    listed = {name for entry in metrics.values() for name in entry["files"]}
    on_disk = {p.name for p in out.iterdir()} - {"metrics.json", "config.yaml"}
    assert on_disk == listed, f"on disk: {sorted(on_disk)}; metrics.json lists: {sorted(listed)}"
    return metrics


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _write_once_then_full_disk(monkeypatch) -> None:
    original, calls = TableWriter.write, []

    def write(self, outputs) -> None:
        calls.append(1)
        if len(calls) > 1:
            _full_disk()
        original(self, outputs)

    monkeypatch.setattr(TableWriter, "write", write)


@pytest.mark.parametrize(
    "inject",
    [
        pytest.param(_write_once_then_full_disk, id="writing the second batch"),
        pytest.param(lambda mp: mp.setattr(predict_writers._StagedFile, "commit", _full_disk), id="closing"),
        pytest.param(
            lambda mp: mp.setattr(predict_callback, "_update_metrics_file", _full_disk), id="metrics"
        ),
    ],
)
def test_a_full_disk_while_predicting_leaves_no_files_of_the_task(
    run: Path, tmp_path: Path, capsys, monkeypatch, inject
) -> None:
    out = tmp_path / "out"
    assert predict(run, out, "--prediction.task", "encode") == 0  # another task's files must stay
    capsys.readouterr()
    gen = ["--prediction.task", "generate", "--prediction.num_samples", "150", "--prediction.steps", "3"]
    inject(monkeypatch)
    assert predict(run, out, *gen) == 1
    err = one_paragraph(capsys)
    assert (
        err.startswith("diled: error: could not write the generate predictions")
        and len(err.splitlines()) == 1
    )
    assert "The disk is full" in err and "files written so far were removed" in err
    assert list(agreeing_metrics(out)) == ["encode"]
    monkeypatch.undo()
    assert predict(run, out, *gen) == 0  # nothing stale is left to refuse or to mix with
    assert agreeing_metrics(out)["generate"]["count"] == 150


def test_a_writer_that_fails_to_close_leaves_none_of_its_files(tmp_path: Path, monkeypatch) -> None:
    writer = TableWriter(tmp_path, "samples", 0)
    writer.write({"x": torch.zeros(3, 2), "image": torch.zeros(3, 1, 2, 2)})  # a CSV and an .npy part
    commit, calls = predict_writers._StagedFile.commit, []

    def second_commit_fails(self):
        calls.append(self.path.name)
        return _full_disk() if len(calls) == 2 else commit(self)

    monkeypatch.setattr(predict_writers._StagedFile, "commit", second_commit_fails)
    with pytest.raises(OSError, match="No space left"):
        writer.close()
    assert calls[0] == "samples.csv" and list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ missing plugins
class _Unimportable(importlib.abc.MetaPathFinder):
    """Makes a package and its modules fail to import, as when its distribution is not installed."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] == self.package:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


@pytest.mark.filterwarnings("ignore:diled. skipping modality plugin 'protein':RuntimeWarning")
def test_a_missing_first_party_plugin_names_its_distribution(capsys, monkeypatch) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "diled_protein"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_Unimportable("diled_protein"), *sys.meta_path])
    code = main(["fit", "--config", str(REPO / "configs" / "protein" / "cpu_test.yaml")])
    err = one_paragraph(capsys)
    assert code == 2 and err.startswith(
        "diled: error: the config names a class from the module 'diled_protein'"
    )
    assert "Install the distribution 'diled-protein' (`pip install ./src/diled_protein`" in err


def test_an_unknown_package_is_named_without_guessing_a_distribution(tmp_path: Path, capsys) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(Path(TOY).read_text().replace("diled_core.toy.ToyDataModule", "diled_nonexistent.Foo"))
    assert "diled_nonexistent.Foo" in config.read_text()
    code = main(["fit", "--config", str(config)])
    err = one_paragraph(capsys)
    assert code == 2 and "Install the package providing the module 'diled_nonexistent'" in err
    assert "pip install diled-nonexistent" not in err and "see `diled plugins`" in err
