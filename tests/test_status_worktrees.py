"""`status` counts the task worktrees without walking them; `clean` and the head measure their size."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import invoke

from orchestrate import api, configfile
from orchestrate.cli import render
from orchestrate.workspace import branches


def worktree(project: Path, name: str = "task_001", files: int = 50) -> Path:
    """A task worktree holding some files, as far as a directory listing can tell."""
    tree = project / ".orchestrate/worktrees" / name
    (tree / "node_modules/pkg").mkdir(parents=True)
    for i in range(files):
        (tree / "node_modules/pkg" / f"f{i}.js").write_text("x" * 5000)
    return tree


def no_walks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any walk through a worktree fail loudly."""

    def walked(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"walked {args[:1]}")

    # In the walking module only: resolving the config's path lstats too.
    monkeypatch.setattr(branches, "os", SimpleNamespace(**{**vars(os), "walk": walked, "lstat": walked}))
    monkeypatch.setattr(branches, "disk_usage", walked)


def status_json() -> dict[str, Any]:
    result = invoke("status", "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def status_text() -> str:
    result = invoke("status")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout  # type: ignore[no-any-return]


def test_status_answers_without_walking_the_worktrees(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    worktree(project)
    worktree(project, "task_002")
    no_walks(monkeypatch)
    assert status_json()["worktrees"] == {"count": 2, "bytes": 0}  # not measured yet
    folder = project / ".orchestrate/worktrees"
    assert f"worktrees 2 in {folder}, size not measured yet\n" in status_text()


def test_status_reads_the_size_last_measured(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    worktree(project)
    measured = branches.measure(configfile.load(Path("config.yaml")))
    assert measured > 50 * 5000
    recorded = json.loads((project / ".orchestrate" / api.USAGE_FILE).read_text())
    assert recorded["bytes"] == measured and recorded["measured_at"] > 0
    no_walks(monkeypatch)
    assert status_json()["worktrees"] == {"count": 1, "bytes": measured}
    assert f", {render.size(measured)}\n" in status_text()


def test_clean_measures_what_is_left(project: Path) -> None:
    worktree(project)
    assert "size not measured yet" in status_text()
    result = invoke("clean")  # no repository and no such task: it removes nothing, and measures
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert status_json()["worktrees"]["bytes"] > 50 * 5000
    assert "size not measured yet" not in status_text()


def test_without_worktrees_nothing_is_measured_or_read(project: Path) -> None:
    assert branches.measure(configfile.load(Path("config.yaml"))) == 0
    assert not (project / ".orchestrate").exists()
    (project / ".orchestrate/worktrees").mkdir(parents=True)
    stale = '{"bytes": 123, "measured_at": 1}'  # measured before the last worktree was removed
    (project / ".orchestrate" / api.USAGE_FILE).write_text(stale)
    assert status_json()["worktrees"] == {"count": 0, "bytes": 0}
    assert "worktrees" not in status_text()


def test_a_torn_record_reads_as_not_measured(project: Path) -> None:
    worktree(project)
    (project / ".orchestrate" / api.USAGE_FILE).write_text('{"bytes": 12')
    assert status_json()["worktrees"] == {"count": 1, "bytes": 0}
    assert "size not measured yet" in status_text()
