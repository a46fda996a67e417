"""tasks.db.example stays what tests/example_db.py builds with the current schema."""

from __future__ import annotations

import json
from pathlib import Path

import example_db
from conftest import orchestrate

EXAMPLE = Path(__file__).resolve().parent.parent / "tasks.db.example"


def test_the_example_matches_a_fresh_build(project: Path) -> None:
    example_db.build(project / "fresh.db")
    assert example_db.dump(EXAMPLE) == example_db.dump(project / "fresh.db"), (
        "tasks.db.example is stale: run `python tests/example_db.py tasks.db.example`"
    )


def test_a_newcomer_can_inspect_every_state(project: Path) -> None:
    before = EXAMPLE.read_bytes()
    result = orchestrate("--db", str(EXAMPLE), "tasks", "--json")
    assert result.returncode == 0, result.stderr
    tasks = json.loads(result.stdout)
    shown = {"blocked" if t["blocked"] else t["status"] for t in tasks}
    assert shown == {"pending", "blocked", "running", "completed", "failed", "cancelled"}
    human = orchestrate("--db", str(EXAMPLE), "tasks").stdout
    assert "blocked" in human and "Invalid task: @#$%^&*()" in human
    assert EXAMPLE.read_bytes() == before  # inspecting it changes nothing
    assert not EXAMPLE.with_name("tasks.db.example-wal").exists()
