"""The long benchmarks train in a child ``diled fit``; stopping the benchmark must stop that child too
(``benchmarks/_common.run_child``): an orphaned 20-minute training slows whatever runs next."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def parent_script(tmp_path: Path, child_code: str) -> Path:
    script = tmp_path / "parent.py"
    script.write_text(
        f"import sys\nsys.path.insert(0, {str(BENCHMARKS)!r})\nfrom _common import run_child\n"
        f"run_child([sys.executable, '-c', {child_code!r}])\n"
    )
    return script


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_stopping_a_benchmark_stops_its_child(tmp_path):
    pid_file = tmp_path / "child.pid"
    child = (
        f"import os, time, pathlib; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); "
        "time.sleep(120)"
    )
    parent = subprocess.Popen([sys.executable, str(parent_script(tmp_path, child))])
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert parent.poll() is None and time.monotonic() < deadline, "the child never started"
        time.sleep(0.1)
    child_pid = int(pid_file.read_text())
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 128 + signal.SIGTERM
    assert not alive(child_pid)


def test_a_failing_child_fails_the_benchmark(tmp_path):
    script = parent_script(tmp_path, "raise SystemExit(3)")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert proc.returncode == 1 and "returned non-zero exit status 3" in proc.stderr
