"""Retries that continue the agent's session, end to end: a real head, the installed CLI and the
fake CLIs, which keep sessions per project and refuse an unknown one as the real CLIs do."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import orchestrate

CONFIG = """\
agents:
  {agent}:
    env: {{IS_SANDBOX: "1"}}
{extra}task_queue:
  max_retries: 2
  retry_delay_seconds: 0
  kill_grace_seconds: 1
"""


def configure(project: Path, agent: str, extra: str = "") -> None:
    (project / "config.yaml").write_text(CONFIG.format(agent=agent, extra=extra))


def ok(*args: str) -> str:
    done = orchestrate(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def starts(record: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in record.read_text().splitlines() if line.strip()] if record.exists() else []
    return [r for r in lines if "argv" in r]


def runs(project: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(project / "tasks.db")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM runs WHERE task_id = 1 ORDER BY n").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("agent", ["claude", "codex"])
def test_a_retry_continues_the_session_and_is_told_only_what_went_wrong(project: Path, fakes: Path, agent: str) -> None:
    configure(project, agent)
    ok("add", "Write the notes [fake:fail-times=1]")
    assert orchestrate("run", timeout=120).returncode == 0
    first, second = starts(fakes)
    failed, completed = runs(project)
    assert failed["outcome"] == "failed" and completed["outcome"] == "completed"
    assert second["resumed"] == failed["session_id"] and "resumed" not in first
    assert completed["session_id"] == failed["session_id"]  # the same session, continued
    assert "your last attempt did not succeed" in second["prompt"] and "fake failure" in second["prompt"]
    assert (
        "Write the notes" in first["prompt"] and "Write the notes" not in second["prompt"]
    )  # no task, no context again
    assert json.loads(ok("show", "1", "--json"))["attempts"] == 2


def test_a_session_the_cli_no_longer_knows_is_started_afresh_without_spending_an_attempt(
    project: Path, fakes: Path
) -> None:
    configure(project, "claude")
    ok("add", "Write the notes [fake:fail-times=1]", "--max-retries", "0")
    assert orchestrate("run", timeout=120).returncode == 1  # failed for good, leaving its session
    shutil.rmtree(os.environ["FAKE_SESSIONS_DIR"])  # and the CLI forgot it
    ok("retry", "1")
    assert orchestrate("run", timeout=120).returncode == 0
    first, refused, fresh = starts(fakes)
    assert "resumed" not in first and "refused_session" not in first
    assert refused["refused_session"] == runs(project)[0]["session_id"]
    assert "--resume" not in fresh["argv"] and "Write the notes" in fresh["prompt"]  # the whole task again
    failed, completed = runs(project)  # one run: the refusal and the fresh start, within one attempt
    assert (failed["outcome"], completed["outcome"]) == ("failed", "completed")
    assert json.loads(ok("show", "1", "--json"))["attempts"] == 1  # the retry's budget: one attempt spent


def test_resume_false_starts_every_retry_afresh(project: Path, fakes: Path) -> None:
    configure(project, "claude")
    (project / "config.yaml").write_text(
        (project / "config.yaml").read_text().replace("    env:", "    resume: false\n    env:")
    )
    ok("add", "Write the notes [fake:fail-times=1]")
    assert orchestrate("run", timeout=120).returncode == 0
    first, second = starts(fakes)
    assert "previous attempt failed" not in first["prompt"]
    assert "resumed" not in second and "--resume" not in second["argv"]
    assert "Write the notes" in second["prompt"] and "previous attempt failed" in second["prompt"]
