"""Every test runs in its own temporary project directory, never in a real home or repo."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrate.api import alive  # noqa: F401 - re-exported for the tests
from orchestrate.cli import app

ORCHESTRATE = str(Path(sys.executable).parent / "orchestrate")  # the installed entry point


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh project directory as the working directory, with a predictable environment."""
    monkeypatch.chdir(tmp_path)
    for name in (
        "ORCHESTRATE_CONFIG",
        "ORCHESTRATE_DB",
        "ORCHESTRATE_DATABASE",
        "ORCHESTRATE_TASK",
        "ORCHESTRATE_QUEUE",
    ):
        monkeypatch.delenv(name, raising=False)  # the suite may run as an agent's check, inside a head's task
    monkeypatch.setenv("COLUMNS", "80")
    yield tmp_path


def orchestrate(
    *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the installed `orchestrate` command in the current directory."""
    return subprocess.run(
        [ORCHESTRATE, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def invoke(*args: str) -> Any:
    """Run a command in-process through typer's CliRunner (stdout and stderr kept apart)."""
    return CliRunner().invoke(app, list(args), prog_name="orchestrate")


def wait_until(
    condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, message: str = "condition"
) -> Any:
    """Poll `condition` until it returns something truthy, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


FAKES = Path(__file__).parent / "fakes"


@pytest.fixture
def fakes(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Fake claude, codex and gemini first on PATH; each records its runs in fake_runs.jsonl.

    Whatever the test leaves running (a head, agents) is stopped at teardown.
    """
    record = project / "fake_runs.jsonl"
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_RECORD", str(record))
    monkeypatch.setenv("FAKE_STATE_DIR", str(project))
    monkeypatch.setenv("FAKE_SESSIONS_DIR", str(project.parent / f"{project.name}-sessions"))  # outside the project
    monkeypatch.setenv("FAKE_CHILD_PIDS", str(project / "fake_children.txt"))
    monkeypatch.setenv("IS_SANDBOX", "1")  # the fake claude, like the real one, refuses root without it
    yield record
    _stop_everything(project)


def _stop_everything(project: Path) -> None:
    for pid_file in project.glob(".orchestrate/head.pid"):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    marker = f"ORCHESTRATE_QUEUE={project}".encode()
    for pid in live_pids(marker):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def live_pids(marker: bytes) -> list[int]:
    """Processes (not zombies) whose environment contains `marker`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if marker in f.read():
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """One PostgreSQL server for the session (tests/postgres_server.py); CI must have one."""
    from postgres_server import running

    with running() as server:
        if server is None:
            if os.environ.get("CI"):
                pytest.fail("no PostgreSQL server is installed (.ci/run installs Debian's postgresql)")
            pytest.skip("no PostgreSQL server installed (apt-get install postgresql)")
        yield server


@pytest.fixture
def pg_url(postgres_server: Any, project: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database of its own for the test, and $ORCHESTRATE_DATABASE naming it."""
    url = postgres_server.create(f"t{os.getpid()}_{time.monotonic_ns()}")
    monkeypatch.setenv("ORCHESTRATE_DATABASE", url)
    return str(url)


@pytest.fixture
def machines(project: Path, pg_url: str) -> Any:
    """Start a machine's head (tests/machines.py) with `machines(where)`; every one is stopped, and
    every agent of the project killed, at the end."""
    from machines import run_in

    started: list[Path] = []

    def start(where: Path) -> None:
        result = run_in(where, "start")
        assert result.returncode == 0, result.stderr
        started.append(where)

    yield start
    for where in started:
        if (pid_file := where / ".orchestrate" / "head.pid").exists():
            with contextlib.suppress(ProcessLookupError, ValueError):  # killed by the test
                os.kill(int(pid_file.read_text()), signal.SIGCONT)
                run_in(where, "stop")
    for pid in live_pids(f"ORCHESTRATE_QUEUE={project}".encode()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
