"""Slow work happens off the head's event loop: the /proc sweep and the copy of git's index."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrate import configfile, orphans
from orchestrate.core import process
from orchestrate.core.head import Head
from orchestrate.workspace import changes
from orchestrate.workspace.git import Project


async def test_the_sweep_reads_proc_in_a_worker_thread(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []

    def strays(queue: str) -> dict[str, Any]:
        threads.append(threading.current_thread())
        return {}

    monkeypatch.setattr(process, "strays", strays)
    await Head(configfile.parse({}, "config.yaml", project, project / "config.yaml")).sweep()
    assert threads and threads[0] is not threading.main_thread()


async def test_the_orphan_reaper_reads_proc_in_a_worker_thread(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []

    def adopted() -> list[Any]:
        threads.append(threading.current_thread())
        return []

    monkeypatch.setattr(orphans, "adopted", adopted)
    reaper = orphans.Orphans()
    reaper.head = Head(configfile.parse({}, "config.yaml", project, project / "config.yaml"))
    await reaper.reap()
    assert threads and threads[0] is not threading.main_thread()


async def test_a_snapshot_copies_gits_index_in_a_worker_thread(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for args in (
        ["init", "-q"],
        ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x"],
    ):
        subprocess.run(["git", *args], cwd=project, check=True)
    (project / "app.py").write_text("print('hi')\n")
    cfg = configfile.parse({}, "config.yaml", project, project / "config.yaml")
    repo = await Project(cfg).repository()
    assert repo is not None
    threads: list[threading.Thread] = []
    copy = changes.shutil.copyfile

    def copyfile(source: Path, target: Path) -> Any:
        threads.append(threading.current_thread())
        return copy(source, target)

    monkeypatch.setattr(changes.shutil, "copyfile", copyfile)
    attempt = SimpleNamespace(cfg=cfg, task=SimpleNamespace(name="task_001"))
    assert await changes.snapshot(attempt, repo)  # type: ignore[arg-type]
    assert threads and threads[0] is not threading.main_thread()
