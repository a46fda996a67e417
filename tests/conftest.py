"""Every test runs in its own temporary project directory, never in a real home or repo."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrate.cli import app

ORCHESTRATE = str(Path(sys.executable).parent / "orchestrate")  # the installed entry point


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh project directory as the working directory, with a predictable environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCHESTRATE_CONFIG", raising=False)
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
