"""completed_tasks.json as the journal keeps it at any size: appended to by a new file renamed over
the old, checked against the queue once the head is up and rebuilt when it differs, and never
seen half-written; and the state block, kept in memory, following the queue's changes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from pathlib import Path

import pytest
from conftest import wait_until
from test_head import ok, task, wait_for

from orchestrate import api, completed, context
from orchestrate.core import store

QUICK = """\
agents:
  quick:
    type: command
    command: ["sh", "-c", "test ! -e fail-once || {{ rm fail-once; exit 1; }}"]
    max_instances: {slots}
task_queue:
  max_retries: 0
"""


def quick(project: Path, slots: int = 5) -> None:
    (project / "config.yaml").write_text(QUICK.format(slots=slots))


def listed(project: Path) -> list[str]:
    """The ids completed_tasks.json lists, in its order; [] while it does not parse."""
    try:
        return [e["id"] for e in json.loads((project / "context" / context.COMPLETED).read_text())]
    except (OSError, ValueError):
        return []


def row(i: int, status: str = "completed", desc: str = "d") -> tuple[int, str, str, str, str, float]:
    return (i, desc, status, "quick-1", f"context/agent_outputs/task_{i:03d}_output.md", 1.7e9 + i)


# --- the file's logic, without a head ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["plain", 'quote " and \\ backslash', "tab\tnewline\n\0 nul", "é ünïcode 😀 \u2028", ""]
)
def test_an_entry_is_json_dumps_byte_for_byte(text: str) -> None:
    for agent in ("claude-1", None):
        for finished in (1.7e9 + 0.9, None):
            got = completed.entry(7, text, "failed", agent, None, finished)
            fields = {"description": text, "status": "failed", "agent": agent, "output_file": None}
            when = context.iso(finished)
            assert got == json.dumps({"id": "task_007", **fields, "finished_at": when})


def test_the_append_goes_over_the_closing_bracket() -> None:
    assert completed.splice(len(completed.EMPTY)) == (2, b"")  # "[\n" kept
    one = b"[\n" + completed.entry(*row(1)).encode() + b"\n]\n"
    assert completed.splice(len(one)) == (len(one) - 3, b",\n")  # up to the entry's "}"


def test_rebuild_append_and_holds_agree(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    held = completed.rebuild(path, [])
    assert path.read_bytes() == completed.EMPTY and held.marks.count(0) == len(held.marks)
    for first, last in ((1, 1), (2, 4), (5, 1004)):  # into the empty file, then a few, then past a CHUNK
        lines = [(i, completed.entry(*row(i))) for i in range(first, last + 1)]
        appended = completed.append(path, lines, held)
        assert appended is not None
        held = appended
        assert [e["id"] for e in json.loads(path.read_text())] == [store.task_name(i) for i in range(1, last + 1)]
    again = completed.holds(path)
    assert again is not None and again.stamp == held.stamp and again.marks == held.marks
    assert completed.matches(held.marks, [row(i) for i in range(1, 1005)])
    assert not completed.matches(held.marks, [row(i) for i in range(1, 1004)])  # one more in the file
    assert not completed.matches(held.marks, [*(row(i) for i in range(1, 1004)), row(1004, "failed")])
    rebuilt = completed.rebuild(tmp_path / "d.json", [row(i) for i in range(1, 1005)])
    assert (tmp_path / "d.json").read_bytes() == path.read_bytes() and rebuilt.marks == held.marks


def test_an_append_to_a_file_someone_else_changed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    held = completed.rebuild(path, [row(1)])
    path.write_text(path.read_text().replace('"d"', '"e"'))  # same size, a new inode or mtime
    assert completed.append(path, [(2, completed.entry(*row(2)))], held) is None
    path.unlink()
    assert completed.append(path, [(2, completed.entry(*row(2)))], held) is None
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "{}",
        "[\n\n]\n",  # valid, but not as the journal writes it: rebuilt, which costs nothing
        "[\n{entry},\n]\n",
        "[\n{entry}\n{entry2}\n]\n",
        "[\n{entry},\n{entry}\n]\n",  # twice
        "[\n{entry}\n]\n]\n",
        "[\n{entry}\n]",
        '[\n{"id": "task_x"}\n]\n',
        "[\n{entry}",
    ],
)
def test_a_damaged_file_is_not_held(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(text.replace("{entry}", completed.entry(*row(1))).replace("{entry2}", completed.entry(*row(2))))
    assert completed.holds(path) is None
    assert completed.holds(tmp_path / "missing.json") is None


def test_the_marks_of_100000_tasks_take_800_kb(tmp_path: Path) -> None:
    held = completed.rebuild(tmp_path / "c.json", (row(i) for i in range(1, 100_001)))
    assert held.marks.itemsize * len(held.marks) <= 8 * 100_001
    assert completed.holds(tmp_path / "c.json") == held


# --- with heads ----------------------------------------------------------------------------------------


def fill(project: Path, done: int, new: int) -> None:
    """`done` tasks completed at once (as bench/run.py does), then `new` pending."""
    with api.opened(project / "tasks.db") as conn:
        api.add_tasks(conn, [api.NewTask(f"done {i}") for i in range(done)])
        conn.execute(
            """UPDATE tasks SET status = 'completed', agent = 'quick-1', attempts = 1, started_at = 1,
               finished_at = 2 + id, output_file = 'context/agent_outputs/task_' || id || '_output.md'"""
        )
        api.add_tasks(conn, [api.NewTask(f"new {i}") for i in range(new)])


def test_tasks_finishing_while_the_file_is_checked_are_entered_once(project: Path, fakes: Path) -> None:
    """The first check reads 20,000 tasks in a worker thread while 300 more finish: none is lost
    or entered twice, and a reader polling the file never fails to parse it."""
    quick(project)
    fill(project, 20_000, 300)
    (project / "context").mkdir()
    (project / "context" / context.COMPLETED).write_text("[\n]\n")  # a file that lags far behind
    problems: list[str] = []
    finished = threading.Event()

    def read_all() -> None:
        while not finished.is_set():
            try:
                json.loads((project / "context" / context.COMPLETED).read_bytes())
            except ValueError as exc:
                problems.append(repr(exc))

    reader = threading.Thread(target=read_all)
    reader.start()
    try:
        ok("run")
    finally:
        finished.set()
        reader.join()
    assert problems == []
    ids = listed(project)
    assert sorted(ids) == sorted(store.task_name(i) for i in range(1, 20_301)) and len(ids) == 20_300


def test_a_task_finished_again_after_retry_is_listed_once(project: Path, fakes: Path) -> None:
    quick(project, slots=1)
    ok("start")
    (project / "fail-once").touch()
    ok("add", "flaky")
    wait_for(1, "failed")
    ok("add", "steady")
    wait_until(lambda: listed(project) == ["task_001", "task_002"], message="both entered")
    ok("retry", "1")
    wait_for(1, "completed")
    ok("add", "after")
    wait_until(lambda: listed(project) == ["task_002", "task_001", "task_003"], message="task_001 moved to the end")
    entries = json.loads((project / "context" / context.COMPLETED).read_text())
    assert entries[1]["status"] == "completed" and entries[1]["finished_at"] == task(1)["finished_at"]
    ok("stop")


def test_a_head_killed_before_its_append_leaves_a_file_the_next_repairs(project: Path, fakes: Path) -> None:
    quick(project, slots=1)
    ok("start")
    ok("add", "one")
    wait_until(lambda: listed(project) == ["task_001"], message="task_001 entered")
    blocker = project / "context" / f".{context.COMPLETED}.tmp"  # where the next append would be written
    (blocker / "in-the-way").mkdir(parents=True)
    ok("add", "two")
    wait_for(2, "completed")
    log = project / ".orchestrate" / "head.log"
    wait_until(lambda: "cannot update" in log.read_text(), message="the append to fail")
    os.kill(int((project / ".orchestrate" / "head.pid").read_text()), signal.SIGKILL)
    shutil.rmtree(blocker)
    assert listed(project) == ["task_001"]  # completed in the queue, not in the file
    ok("add", "three")
    ok("run")
    assert listed(project) == ["task_001", "task_002", "task_003"]


def test_a_file_damaged_while_the_head_runs_is_rebuilt(project: Path, fakes: Path) -> None:
    quick(project, slots=1)
    ok("start")
    ok("add", "one")
    wait_until(lambda: listed(project) == ["task_001"], message="task_001 entered")
    (project / "context" / context.COMPLETED).write_text('[\n{"id": "task_001", "descr')  # an editor's bad save
    ok("add", "two")
    wait_until(lambda: listed(project) == ["task_001", "task_002"], message="the file rebuilt")
    ok("stop")


def test_the_state_block_follows_changes_other_processes_make(project: Path, fakes: Path) -> None:
    """A task added while the queue is paused settles nothing: the block hears of it from the
    queue's data_version."""
    quick(project, slots=1)
    state = project / "context" / context.STATE
    ok("start")
    ok("add", "one")
    wait_until(lambda: state.exists() and "task_001 one (done" in state.read_text(), message="task_001 in the block")
    ok("pause")
    ok("add", "waits")
    wait_until(lambda: "task_002 waits (pending)" in state.read_text(), message="task_002 in the block")
    ok("cancel", "2")
    wait_until(lambda: "task_002 waits (cancelled)" in state.read_text(), message="task_002 cancelled in the block")
    ok("stop")
