"""The queue on PostgreSQL, against a real server (conftest's postgres_server): the commands
answer as they do on SQLite, a head works the queue, several heads share it without running a
task twice, and a machine that dies, freezes or loses the database fails safe."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import live_pids, orchestrate, wait_until
from machines import counts, git, head_pid, ledger, machine, run_in, status, task
from test_dashboard import api, request, serve  # noqa: F401 - serve is a fixture

from orchestrate.postgres import dialect

TIMES = {"created_at", "started_at", "finished_at", "next_try_at", "paused_since", "since"}


def test_translate_placeholders_percent_and_empty_lists() -> None:
    assert dialect.translate("SELECT printf('task_%03d', id) FROM t WHERE a = ? AND b LIKE ?") == (
        "SELECT printf('task_%%03d', id) FROM t WHERE a = %s AND b LIKE %s"
    )
    assert dialect.translate("WHERE t.id NOT IN () AND agent_type IN ( )") == "WHERE TRUE AND FALSE"
    assert dialect.translate("WHERE id IN (?,?)") == "WHERE id IN (%s,%s)"
    assert dialect.statements("BEGIN IMMEDIATE")[0] == "BEGIN"
    with pytest.raises(ValueError, match="no PostgreSQL equivalent"):
        dialect.statements("PRAGMA user_version")


def _timeless(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _timeless(v) for k, v in data.items() if k not in TIMES}
    if isinstance(data, list):
        return [_timeless(v) for v in data]
    return data


COMMANDS = [
    ("add", "first task"),
    ("add", "second", "--after", "1", "--priority", "high"),
    ("add", "third", "--agent", "codex", "--parent", "1"),
    ("add", ""),  # refused
    ("add", "waits on nothing", "--after", "99"),  # refused
    ("cancel", "3"),
    ("retry", "3"),
    ("retry", "1"),  # refused: pending
    ("pause",),
    ("status", "--json"),
    ("resume",),
    ("tasks", "--json"),
    ("tasks", "--tree", "--json"),
    ("tasks", "--status", "blocked", "--json"),
    ("show", "2", "--json"),
    ("show", "42"),  # refused
    ("status", "--json"),
    ("agents", "--json"),
]


def _answers() -> list[tuple[int, Any]]:
    answers = []
    for argv in COMMANDS:
        result = orchestrate(*argv)
        said = result.stdout if result.returncode == 0 else result.stderr
        answers.append((result.returncode, _timeless(json.loads(said)) if "--json" in argv else said.strip()))
    return answers


def test_every_command_answers_as_on_sqlite(project: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "config.yaml").write_text("workspace: worktree\n")  # as a PostgreSQL queue requires
    git(project, "init", "-q")
    on_postgres = _answers()
    monkeypatch.delenv("ORCHESTRATE_DATABASE")
    on_sqlite = _answers()
    assert on_postgres == on_sqlite
    assert not (project / "tasks.db").exists() or on_sqlite  # the SQLite run made its own file
    assert [code for code, _ in on_postgres].count(0) == len(COMMANDS) - 4


def test_a_head_runs_the_real_cli_fakes_on_postgres(project: Path, fakes: Path, pg_url: str) -> None:
    (project / "config.yaml").write_text("agents:\n  claude:\n    max_instances: 2\n  codex: {}\nworkspace: worktree\n")
    (project / ".gitignore").write_text("config.yaml\nfake_runs.jsonl\n.fake-agent-runs-*\n")
    git(project, "init", "-q")
    git(project, "add", ".gitignore")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    for text in ("write hello.py", "write tests", "review it"):
        assert orchestrate("add", text).returncode == 0
    assert orchestrate("add", "codex work", "--agent", "codex").returncode == 0
    result = orchestrate("run", timeout=120)
    assert result.returncode == 0, result.stderr
    counts = json.loads(orchestrate("status", "--json").stdout)["counts"]
    assert counts["completed"] == 4
    shown = json.loads(orchestrate("show", "4", "--json").stdout)
    assert shown["agent"] == "codex-1" and shown["runs"][0]["outcome"] == "completed"
    assert (project / shown["output_file"]).read_text().strip()
    assert json.loads((project / "context" / "completed_tasks.json").read_text())


def test_eight_heads_share_2000_tasks_and_none_runs_twice(project: Path, machines: Any) -> None:
    record = project / "ledger"
    names = [f"m{i}" for i in range(1, 9)]
    where = [machine(project, n, f'echo "$ORCHESTRATE_TASK" >> {record}') for n in names]
    # Each task in the project directory itself: this is about claims, not about git.
    tasks = "".join(f"- {{description: task number {i}, workspace: shared}}\n" for i in range(2000))
    (project / "tasks.yaml").write_text(tasks)
    assert run_in(where[0], "add", "--file", str(project / "tasks.yaml")).returncode == 0
    for each in where:
        machines(each)
    wait_until(lambda: counts()["completed"] == 2000, timeout=240, message="2000 completed")
    ran = Counter(ledger(record))
    assert len(ran) == 2000 and set(ran.values()) == {1}
    tasks = json.loads(run_in(where[3], "tasks", "--json").stdout)
    by_agent = Counter(t["agent"].rsplit("-", 1)[0] for t in tasks)
    assert len(by_agent) >= 4, by_agent  # the work was shared, not taken by one head
    assert {t["attempts"] for t in tasks} == {1}


def test_a_machine_killed_at_once_has_its_tasks_taken_over(project: Path, machines: Any) -> None:
    record = project / "ledger"
    agent = f'echo "start-$ORCHESTRATE_TASK" >> {record}; sleep 2; echo "done-$ORCHESTRATE_TASK" >> {record}'
    a, b = machine(project, "a", agent), machine(project, "b", agent)
    for text in ("one", "two"):
        assert run_in(a, "add", text, "--workspace", "shared").returncode == 0
    machines(a)
    wait_until(lambda: counts()["running"] == 2, message="a runs both")
    os.kill(head_pid(a), signal.SIGKILL)  # the machine is gone: its head and its agents at once
    for pid in live_pids(f"ORCHESTRATE_QUEUE={a}".encode()):
        os.kill(pid, signal.SIGKILL)
    machines(b)
    wait_until(lambda: counts()["completed"] == 2, timeout=60, message="b finishes them")
    for ref in (1, 2):
        shown = task(b, ref)
        assert shown["agent"].startswith("b-") and shown["attempts"] == 1  # the lost run spent nothing
    done = Counter(line for line in ledger(record) if line.startswith("done-"))
    assert done == {"done-task_001": 1, "done-task_002": 1}


def test_a_frozen_head_past_its_lease_records_nothing(project: Path, machines: Any) -> None:
    record = project / "ledger"
    agent = f'sleep 3; echo "$ORCHESTRATE_TASK-by-$0" >> {record}; echo "result from $0"'
    a, b = machine(project, "a", agent.replace("$0", "a")), machine(project, "b", agent.replace("$0", "b"))
    assert run_in(a, "add", "the contested task", "--workspace", "shared").returncode == 0
    machines(a)
    wait_until(lambda: counts()["running"] == 1, message="a runs it")
    os.kill(head_pid(a), signal.SIGSTOP)
    machines(b)
    wait_until(lambda: (task(b, 1)["agent"] or "").startswith("b-"), timeout=30, message="b takes it over")
    wait_until(lambda: "task_001-by-a" in ledger(record), message="a's agent finishes, its head frozen")
    os.kill(head_pid(a), signal.SIGCONT)  # a wakes with a result for a claim it no longer holds
    wait_until(lambda: counts()["completed"] == 1, timeout=30, message="b completes it")
    shown = task(b, 1)
    assert shown["agent"].startswith("b-") and shown["attempts"] == 1
    output = (b / shown["output_file"]).read_text()
    assert "result from b" in output and "result from a" not in output
    assert "task_001-by-b" in ledger(record)


def test_the_database_stopped_mid_run_ends_every_task_once(project: Path, machines: Any, postgres_server: Any) -> None:
    record = project / "ledger"
    a = machine(project, "a", f'sleep 2; echo "$ORCHESTRATE_TASK" >> {record}', slots=3, lease=20)
    for i in range(5):
        assert run_in(a, "add", f"task {i}", "--workspace", "shared").returncode == 0
    machines(a)
    wait_until(lambda: counts()["running"] == 3, message="three running")
    postgres_server.stop("fast")
    try:
        wait_until(lambda: len(ledger(record)) >= 3, message="the agents finish while the database is down")
    finally:
        postgres_server.start()
    wait_until(lambda: counts()["completed"] == 5, timeout=60, message="every task completed")
    assert Counter(ledger(record)) == Counter(f"task_{i:03d}" for i in range(1, 6))
    assert {task(a, i)["attempts"] for i in range(1, 6)} == {1}
    assert status(a)["head"]["running"]


def _most_at_once(lines: list[str]) -> int:
    """The most intervals open at once, from "start-T" and "end-T" lines (T in nanoseconds)."""
    events = sorted((int(line.split("-")[1]), line.startswith("start")) for line in lines)
    most = now = 0
    for _, starts in events:  # at a tie an end sorts first (False < True): touching is not overlapping
        now += 1 if starts else -1
        most = max(most, now)
    return most


def test_max_total_caps_an_agent_across_every_machine(project: Path, machines: Any) -> None:
    times = project / "times"
    agent = f'echo "start-$(date +%s%N)" >> {times}; sleep 0.4; echo "end-$(date +%s%N)" >> {times}'
    where = [machine(project, f"m{i}", agent, slots=3, agent="worker", more="    max_total: 2\n") for i in range(4)]
    (project / "tasks.yaml").write_text("".join(f"- {{description: job {i}, workspace: shared}}\n" for i in range(16)))
    assert run_in(where[0], "add", "--file", str(project / "tasks.yaml")).returncode == 0
    for each in where:
        machines(each)
    wait_until(lambda: counts()["completed"] == 16, timeout=60, message="16 completed")
    assert _most_at_once(ledger(times)) == 2  # twelve slots, two at a time: the cap, and no more


def test_a_rate_limit_on_one_machine_cools_the_account_on_the_others(project: Path, machines: Any) -> None:
    agent = "if grep -q hit-the-limit; then echo 'usage limit reached' >&2; exit 42; fi; echo ok"
    more = "    rate_limit_exit_code: 42\n    cooling_key: team-account\n"
    a, b = machine(project, "a", agent, more=more), machine(project, "b", agent, more=more)
    assert run_in(a, "add", "hit-the-limit", "--workspace", "shared").returncode == 0
    machines(a)
    wait_until(lambda: _agent_states(a) == {"cooling"}, message="a's agent cools")
    machines(b)  # another machine, another entry name, the same account
    wait_until(lambda: _agent_states(b) == {"cooling"}, message="b's agent cools too")
    assert run_in(b, "add", "ordinary work", "--workspace", "shared").returncode == 0
    assert status(b)["counts"]["pending"] == 2  # neither machine runs anything while the account rests


def _agent_states(where: Path) -> set[str]:
    return {a["state"] for a in json.loads(run_in(where, "agents", "--json").stdout)}


def test_context_travels_between_machines(project: Path, machines: Any, pg_url: str) -> None:
    said = "the answer is 42, said a"
    a = machine(project, "a", f"echo '{said}'")
    b = machine(project, "b", "if grep -q 'the answer is 42'; then echo 'b saw it'; else echo 'b did not'; fi")
    machines(a)
    machines(b)
    wait_until(lambda: _has_met(pg_url, "a", "b"), message="a's head learns of b's agents")
    assert run_in(a, "add", "find the answer", "--agent", "a", "--workspace", "shared").returncode == 0
    assert run_in(a, "add", "use it", "--after", "1", "--agent", "b", "--workspace", "shared").returncode == 0
    wait_until(lambda: counts()["completed"] == 2, timeout=30, message="both completed")
    assert "b saw it" in (b / task(b, 2)["output_file"]).read_text()  # a's output was in b's prompt
    for here in (a, b):
        _tells_of_both(here, said)


def _has_met(url: str, who: str, other: str) -> bool:
    """Whether head `who` has beaten since head `other` started: it has read the other's agents."""
    with psycopg.connect(url) as conn:
        beat = (
            "SELECT (SELECT heartbeat_at FROM heads WHERE name = %s) > (SELECT started_at FROM heads WHERE name = %s)"
        )
        return bool(conn.execute(beat, (who, other)).fetchone()[0])  # type: ignore[index]


def _tells_of_both(here: Path, said: str) -> None:
    """`here`'s context/ tells of both tasks: its journal, the output files, the state block."""
    ctx = here / "context"
    listed = lambda: {e["id"] for e in json.loads((ctx / "completed_tasks.json").read_text())}  # noqa: E731
    wait_until(lambda: listed() == {"task_001", "task_002"}, message=f"{here.name}'s journal")
    wait_until(lambda: (ctx / "agent_outputs" / "task_002_output.md").exists(), message="outputs")
    assert said in (ctx / "agent_outputs" / "task_001_output.md").read_text()
    wait_until(lambda: "task_002" in (ctx / "current_state.md").read_text(), message="state block")


DASHBOARD_PATHS = [
    "/api/status",
    "/api/tasks",
    "/api/tasks?status=pending",
    "/api/tasks?status=blocked",
    "/api/tasks/2",
]


def _dashboard_answers(start: Any) -> list[Any]:
    served = start()
    answers: list[Any] = [_timeless(api(served.url, path)) for path in DASHBOARD_PATHS]
    metrics = request(served.url, "/metrics").body.decode().splitlines()
    answers.append([line for line in metrics if not line.startswith(("orchestrate_head", "#"))])
    added = request(
        served.url, "/api/tasks", "POST", {"Content-Type": "application/json", "Origin": served.url.rstrip("/")}
    )
    answers.append(added.status)
    return answers


def test_the_dashboard_and_metrics_answer_as_on_sqlite(
    project: Path,
    pg_url: str,
    serve: Any,  # noqa: F811 - test_dashboard's fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (project / "config.yaml").write_text("workspace: worktree\n")
    git(project, "init", "-q")
    for argv in (("add", "parse"), ("add", "test it", "--after", "1"), ("add", "third"), ("cancel", "3")):
        assert orchestrate(*argv).returncode == 0
    on_postgres = _dashboard_answers(serve)
    monkeypatch.delenv("ORCHESTRATE_DATABASE")
    for argv in (("add", "parse"), ("add", "test it", "--after", "1"), ("add", "third"), ("cancel", "3")):
        assert orchestrate(*argv).returncode == 0
    on_sqlite = _dashboard_answers(serve)
    for pg_answer, sqlite_answer in zip(on_postgres, on_sqlite, strict=True):
        assert pg_answer == sqlite_answer
    assert on_postgres[0]["counts"] == {"pending": 2, "running": 0, "completed": 0, "failed": 0, "cancelled": 1}


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ("", "workspace: a PostgreSQL queue needs workspace: worktree"),
        ("workspace: shared\n", "workspace: a PostgreSQL queue needs workspace: worktree"),
        ("workspace: worktree\ntask_queue: {lease_seconds: 2}\n", "task_queue.lease_seconds: at least 5"),
        ("workspace: worktree\nagents: {claude: {max_total: 0}}\n", "agents.claude.max_total: expected"),
    ],
)
def test_a_postgresql_configuration_that_cannot_work_is_one_line(
    project: Path, pg_url: str, config: str, error: str
) -> None:
    (project / "config.yaml").write_text(config)
    for command in (("status",), ("add", "x"), ("start",)):
        result = orchestrate(*command)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert error in result.stderr


def test_an_unreachable_database_is_one_line_and_no_traceback(project: Path, postgres_server: Any) -> None:
    (project / "config.yaml").write_text("workspace: worktree\n")
    gone = postgres_server.url("no_such_database")
    for command in (("status",), ("add", "x"), ("tasks",)):
        result = orchestrate(*command, env={"ORCHESTRATE_DATABASE": gone})
        assert result.returncode != 0 and result.stderr.count("\n") == 1, result.stderr
        assert "no_such_database" in result.stderr and "Traceback" not in result.stderr


def test_a_head_cut_off_for_half_a_lease_stops_its_agents_and_their_tasks_run_again(
    project: Path, machines: Any, postgres_server: Any
) -> None:
    record, gate = project / "ledger", project / "gate"
    wait = f"while [ ! -e {gate} ]; do sleep 0.1; done"  # the first run waits until it is stopped
    agent = f'echo "start-$ORCHESTRATE_TASK" >> {record}; {wait}; echo "done-$ORCHESTRATE_TASK" >> {record}'
    a = machine(project, "a", agent, slots=1, lease=5)
    assert run_in(a, "add", "long work", "--workspace", "shared").returncode == 0
    machines(a)
    wait_until(lambda: ledger(record) == ["start-task_001"], message="the agent starts")
    postgres_server.stop("fast")
    try:  # past half the lease: another head could take the task over soon, so this one stops its agent
        wait_until(lambda: _agent_gone(a), timeout=20, message="the head stops its agent")
    finally:
        postgres_server.start()
    gate.touch()
    wait_until(lambda: counts()["completed"] == 1, timeout=40, message="run again, and completed")
    assert Counter(ledger(record)) == {"start-task_001": 2, "done-task_001": 1}  # the first was stopped
    assert task(a, 1)["attempts"] == 1  # the stopped run spent nothing


def _agent_gone(where: Path) -> bool:
    return not live_pids(f"ORCHESTRATE_QUEUE={where}".encode())


async def test_a_task_whose_lease_runs_out_past_max_interruptions_fails(project: Path, pg_url: str) -> None:
    from types import SimpleNamespace

    from orchestrate import api, postgres
    from orchestrate.postgres.queue import PostgresQueue

    settings = postgres.Settings(pg_url, "a", lease_seconds=5, max_interruptions=2)
    with api.opened(pg_url, connect=lambda: postgres.Connection(settings)) as conn:
        [tid] = api.add_tasks(conn, [api.NewTask("brings its machine down")])
    queue = PostgresQueue(settings, SimpleNamespace(busy={}), project / "q.lock")
    try:
        outcomes = []
        for _ in range(3):  # claimed, its head gone quiet past the lease, taken back by another head
            claimed = await queue.claim("a-1", ("a", "command"), ("a",), 1.0)
            assert claimed is not None and claimed.id == tid
            await queue.write(("UPDATE tasks SET lease_until = lease_until - 60 WHERE id = ?", (tid,)))
            outcomes += [status for _, status, _ in await queue._take_back()]
        assert outcomes == ["pending", "pending", "failed"]
        failed = await queue.read("SELECT attempts, interruptions, error FROM tasks WHERE id = ?", tid)
        assert failed[0][:2] == (0, 3)  # no attempt spent: none of it was the task's own doing
        assert "stopped answering while it ran, 3 times (task_queue.max_interruptions)" in failed[0][2]
    finally:
        await queue.close()
