"""Regression tests for defects found in review: a real head, the installed CLI, command agents.

They drive the installed command only, so they hold whatever the package's layout.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ORCHESTRATE, live_pids, orchestrate, wait_until
from test_head import ok, task, wait_for

# --- helpers ---------------------------------------------------------------------------------------


def write_config(project: Path, command: list[str], *, instances: int = 1, retries: int = 0, more: str = "") -> None:
    """One `command` agent called `worker`; quick retries and a 1 s kill grace."""
    (project / "config.yaml").write_text(
        "agents:\n"
        "  worker:\n"
        "    type: command\n"
        f"    command: {json.dumps(command)}\n"
        f"    max_instances: {instances}\n"
        "task_queue:\n"
        "  retry_delay_seconds: 0.2\n"
        "  kill_grace_seconds: 1\n"
        f"  max_retries: {retries}\n" + more
    )


def sh(script: str) -> list[str]:
    """A command agent running `script` in /bin/sh (the prompt arrives on its stdin)."""
    return ["/bin/sh", "-c", script]


def agents_json() -> list[dict[str, Any]]:
    return json.loads(ok("agents", "--json"))  # type: ignore[no-any-return]


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def no_agent_left(project: Path) -> bool:
    return not live_pids(f"ORCHESTRATE_QUEUE={project}".encode())


def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], check=False, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, (args, result.stderr)
    return result.stdout


IGNORED = "tasks.db*\nfake_*\nruns.jsonl\n*.pid\n*.lock\n"


def repository(where: Path) -> None:
    """A repository with one commit and no identity of its own (orchestrate must commit anyway)."""
    git("init", "-q", "-b", "main", cwd=where)
    (where / ".gitignore").write_text(IGNORED)
    (where / "README.md").write_text("a project\n")
    git("add", ".", cwd=where)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start", cwd=where)


def final_message(output: str) -> str:
    """The "## Final message" section of a task's output file."""
    assert "## Final message" in output, output[:2000]
    return output.split("## Final message", 1)[1].strip()


# --- 1 -------------------------------------------------------------------------------------------

RECORDING_AGENT = """\
import fcntl, json, os, signal, sys, time
RUNS, LOCK = {runs!r}, {lock!r}

def record(**fields):
    line = json.dumps({{"pid": os.getpid(), "time": time.time(), **fields}}) + "\\n"
    fd = os.open(RUNS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, line.encode())
    os.close(fd)

lock = open(LOCK, "w")
try:  # held until this process is gone, however it dies: a second holder means two at once
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    overlap = False
except BlockingIOError:
    overlap = True
record(event="start", task=os.environ.get("ORCHESTRATE_TASK"), overlap=overlap)

def slow_death(*_):
    time.sleep(5)  # slow to die: only SIGKILL ends it
    os._exit(143)

signal.signal(signal.SIGTERM, slow_death)
sys.stdin.read()
time.sleep(3)
record(event="done")
print(f"run {{os.getpid()}}")
"""


def test_a_task_never_has_two_agents_at_once_after_cancel_then_retry(project: Path, fakes: Path) -> None:
    """A task never has two agents running at once, even when a retry follows its cancel at once."""
    runs, lock = project / "runs.jsonl", project / "task.lock"
    (project / "agent.py").write_text(RECORDING_AGENT.format(runs=str(runs), lock=str(lock)))
    write_config(project, ["python3", str(project / "agent.py")], instances=2)

    def recorded() -> list[dict[str, Any]]:
        return [json.loads(line) for line in runs.read_text().splitlines()] if runs.exists() else []

    ok("start")
    ok("add", "slow work")
    wait_until(lambda: recorded(), message="the first agent to start")
    asked = time.time()
    ok("cancel", "1")
    ok("retry", "1")
    wait_for(1, "completed", "failed", "cancelled")
    wait_until(lambda: no_agent_left(project), timeout=20, message="every agent to be gone")
    starts = [r for r in recorded() if r["event"] == "start"]
    assert not any(r["overlap"] for r in starts), f"a second agent started while the first still ran: {starts}"
    done = task(1)
    assert done["status"] == "completed", done
    finished = [r for r in recorded() if r["event"] == "done"]
    assert len(finished) == 1, f"the task was completed by {len(finished)} runs: {recorded()}"
    [last] = finished
    assert next(r for r in starts if r["pid"] == last["pid"])["time"] > asked  # not the cancelled run
    assert final_message((project / done["output_file"]).read_text()) == f"run {last['pid']}"
    ok("stop")


# --- 2 -------------------------------------------------------------------------------------------


def test_a_line_number_429_in_a_traceback_is_a_failure_not_a_rate_limit(project: Path, fakes: Path) -> None:
    """An exit 1 whose output says `line 429` is a failed attempt, not a rate limit."""
    traceback = 'echo "Traceback (most recent call last):"; echo "  File \\"app.py\\", line 429, in main"'
    write_config(project, sh(f"cat >/dev/null; {traceback}; {{ {traceback}; }} >&2; exit 1"), retries=0)
    ok("add", "crashes in app.py")
    try:
        result = orchestrate("run", timeout=20)
    except subprocess.TimeoutExpired:
        t = task(1)
        pytest.fail(
            f"`orchestrate run` never ended: task is {t['status']} after {t['attempts']} attempts ({t['error']})"
        )
    assert result.returncode == 1, (result.stdout, result.stderr)
    failed = task(1)
    assert (failed["status"], failed["attempts"]) == ("failed", 1), failed
    assert "line 429" in failed["error"]


# --- 3 -------------------------------------------------------------------------------------------


def test_a_cancel_during_stop_wait_is_honoured(project: Path, fakes: Path) -> None:
    """A cancel that arrives while the head drains (`stop --wait`) still kills the agent."""
    pid_file = project / "agent.pid"
    write_config(project, sh(f"echo $$ > {pid_file}; cat >/dev/null; exec sleep 30"), retries=0)
    ok("start")
    ok("add", "long work")
    pid = wait_until(
        lambda: pid_file.exists() and pid_file.read_text().strip() and int(pid_file.read_text()),
        message="the agent to start",
    )
    wait_for(1, "running")
    stopper = subprocess.Popen(
        [ORCHESTRATE, "stop", "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert stopper.stdout is not None
        stopper.stdout.readline()  # "stopping once the running tasks finish..." comes just before the signal
        head_log = project / ".orchestrate/head.log"
        # the old head logs that it drains; a new one may not, so this wait is bounded and optional
        with contextlib.suppress(AssertionError):
            wait_until(lambda: "stopping" in head_log.read_text(errors="replace"), timeout=3)
        assert stopper.poll() is None, "stop --wait returned while a 30 s task ran"
        ok("cancel", "1")
        wait_until(lambda: not running(pid), timeout=10, message="the cancelled agent to die during stop --wait")
        assert stopper.wait(timeout=20) == 0, stopper.stderr.read() if stopper.stderr else ""
    finally:
        if stopper.poll() is None:
            stopper.kill()
            stopper.wait()
    assert task(1)["status"] == "cancelled"
    assert no_agent_left(project)


# --- 4 -------------------------------------------------------------------------------------------


def test_a_missing_working_directory_is_not_a_missing_agent(
    project: Path, fakes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worktree without the (uncommitted) project directory fails naming it; the agent stays usable."""
    repository(project)
    sub = project / "webapp_pkg"  # in the repository, but never committed: the worktree will lack it
    sub.mkdir()
    monkeypatch.chdir(sub)
    write_config(sub, sh("cat >/dev/null; echo done"), retries=0, more="workspace: worktree\n")
    ok("add", "work in the subdirectory")
    try:
        _missing_directory(sub)
    finally:  # the fixture's teardown looks for the head in the test's directory, not in webapp_pkg
        pid_file = sub / ".orchestrate/head.pid"
        if pid_file.exists():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _missing_directory(sub: Path) -> None:
    started = orchestrate("start")
    if started.returncode != 0:  # refused up front: acceptable, if it says why in one line
        assert len(started.stderr.strip().splitlines()) == 1, started.stderr
        assert "webapp_pkg" in started.stderr and "not installed" not in started.stderr, started.stderr
        return
    seen = wait_until(
        lambda: (
            (task(1)["status"] == "failed" or any(a["state"] == "unavailable" for a in agents_json()))
            and (task(1), agents_json())
        ),
        timeout=30,
        message="the attempt to fail or the agent to be marked unavailable",
    )
    t, slots = seen
    unavailable = [a for a in slots if a["state"] == "unavailable"]
    assert not unavailable, f"{unavailable}; task {t['status']}: {t['error']}\n{ok('status')}"
    assert "not installed" not in ok("status")
    assert t["status"] == "failed", t
    assert "webapp_pkg" in t["error"] and "not installed" not in t["error"], t["error"]
    ok("stop")


# --- 5 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["shared", "worktree-auto-merge", "worktree-auto-merge-slow-commit"])
def test_a_cancel_during_verification_is_not_written_up_as_completed(project: Path, fakes: Path, mode: str) -> None:
    """A task cancelled while its result is being checked is cancelled everywhere: row, output file,
    completed list, and (merge: auto) the main branch."""
    marker = project / "checking.pid"
    more = ""
    if mode == "worktree-auto-merge-slow-commit":
        # the check here is orchestrate's own commit of the agent's change: a clean filter makes it slow
        repository(project)
        slow = f'f=$(cat); case "$f" in *changed*) echo $$ > {marker}; sleep 3;; esac; printf "%s\\n" "$f"'
        git("config", "filter.slow.clean", slow)  # slow only once the agent has changed the file
        (project / ".git/info/attributes").write_text("README.md filter=slow\n")
    else:
        more = f"verify: [{json.dumps(f'echo $$ > {marker}; exec sleep 3')}]\n"
        if mode != "shared":
            repository(project)
    if mode != "shared":
        more += "workspace: worktree\nmerge: auto\n"
    write_config(project, sh("cat >/dev/null; echo changed >> README.md; echo agent done"), retries=0, more=more)
    main_before = git("rev-parse", "HEAD").strip() if mode != "shared" else None
    ok("start")
    ok("add", "change the readme")
    pid = wait_until(
        lambda: marker.exists() and marker.read_text().strip() and int(marker.read_text()), message="the check to start"
    )
    ok("cancel", "1")
    wait_until(lambda: not running(pid), timeout=10, message="the check to end")
    wait_until(lambda: no_agent_left(project), timeout=10, message="nothing left running")
    wait_until(lambda: all(a["state"] != "busy" for a in agents_json()), timeout=10, message="the slot to be free")
    ok("stop")  # the head writes its context files out before it exits
    assert task(1)["status"] == "cancelled"
    output = project / "context/agent_outputs/task_001_output.md"
    if output.exists():
        assert "- status: completed" not in output.read_text(), output.read_text()
    completed = project / "context/completed_tasks.json"
    if completed.exists():
        entries = json.loads(completed.read_text())
        assert not [e for e in entries if e["id"] == "task_001" and e["status"] == "completed"], entries
    if mode != "shared":
        assert git("rev-parse", "HEAD").strip() == main_before, "the cancelled task's branch was merged"
        assert (project / "README.md").read_text() == "a project\n"


# --- 6 -------------------------------------------------------------------------------------------


def test_a_commit_that_fails_fails_the_attempt(project: Path, fakes: Path) -> None:
    """In a worktree, a change that cannot be committed fails the attempt, saying the commit failed."""
    repository(project)
    git("config", "commit.gpgsign", "true")
    git("config", "gpg.program", "false")  # every commit now fails
    write_config(project, sh("cat >/dev/null; echo hello > NEW.txt; echo wrote NEW.txt"), more="workspace: worktree\n")
    ok("add", "Create NEW.txt")
    result = orchestrate("run", timeout=60)
    t = task(1)
    assert t["status"] == "failed", (t, (project / "context/agent_outputs/task_001_output.md").read_text())
    assert result.returncode == 1
    assert "commit" in (t["error"] or "").lower(), t["error"]


# --- 8 -------------------------------------------------------------------------------------------


def test_stop_has_a_deadline_for_a_head_that_does_not_exit(project: Path, fakes: Path) -> None:
    """`orchestrate stop` ends within a deadline (and without a traceback) even if the head never exits."""
    write_config(project, sh("cat >/dev/null; echo done"))
    ok("start")
    pid = json.loads(ok("status", "--json"))["head"]["pid"]
    os.kill(pid, signal.SIGSTOP)  # a hung head: it receives signals but never acts on them
    try:
        try:
            result = orchestrate("stop", timeout=40)
        except subprocess.TimeoutExpired:
            pytest.fail("`orchestrate stop` was still waiting after 40 s for a head that does not exit")
        out = result.stdout + result.stderr
        assert "Traceback" not in out, out
        assert result.returncode in (0, 1), out
        if result.returncode:
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --- 10 ------------------------------------------------------------------------------------------


def test_shared_mode_snapshots_leave_no_objects_behind(project: Path, fakes: Path) -> None:
    """Shared-mode snapshots do not pile up in .orchestrate/git-objects once the head is gone."""
    repository(project)
    write_config(project, sh('cat >/dev/null; echo "$ORCHESTRATE_TASK $$" > "out_$ORCHESTRATE_TASK.txt"; echo ok'))
    for n in range(3):
        ok("add", f"write file {n}")
    result = orchestrate("run", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "- A out_task_001.txt" in (project / "context/agent_outputs/task_001_output.md").read_text()
    store = project / ".orchestrate/git-objects"

    def objects() -> list[str]:
        return [str(p.relative_to(store)) for p in store.rglob("*") if p.is_file()] if store.exists() else []

    if objects():
        orchestrate("clean")
    left = objects()
    assert not left, f"{len(left)} file(s) left in {store} after the head stopped and `clean`: {left[:5]}"


# --- 12 ------------------------------------------------------------------------------------------


def test_a_failed_context_write_is_retried_without_another_completion(project: Path, fakes: Path) -> None:
    """Once the context directory can be written again, the head writes it without waiting for a new completion."""
    ctx = project / "ctx"
    ctx.write_text("a file where the context directory should be\n")
    write_config(project, sh("cat >/dev/null; echo all done"), more="context:\n  directory: ctx\n")
    ok("start")
    ok("add", "the only task")
    wait_for(1, "completed")
    # the slot shows the finished task only at the heartbeat after it was written up (and its
    # context write attempted): repairing before that would not test the retry
    wait_until(
        lambda: any(a["tasks_done"] == 1 and a["state"] == "idle" for a in agents_json()),
        message="the slot to report the task done",
    )
    assert ctx.is_file()  # the write failed: nothing could replace the file
    ctx.unlink()
    ctx.mkdir()

    def written() -> bool:
        state, done = ctx / "current_state.md", ctx / "completed_tasks.json"
        if not (state.exists() and done.exists()):
            return False
        try:
            entries = json.loads(done.read_text())
        except ValueError:
            return False
        block = state.read_text()
        return (
            "<!-- orchestrate:begin -->" in block
            and "task_001" in block
            and any(e["id"] == "task_001" and e["status"] == "completed" for e in entries)
        )

    wait_until(written, timeout=10, message="current_state.md and completed_tasks.json once ctx was repaired")
    ok("stop")


# --- 13 ------------------------------------------------------------------------------------------

# Over 16 MB (and 16 MiB) twice over: the old reader starts a "line" afresh every 16,000,000 bytes,
# so what follows the second restart (under 256 KB, which the result keeps) leaks into the result.
LONG = 32_150_000


def test_a_stdout_line_over_16_mb_is_dropped_whole(project: Path, fakes: Path) -> None:
    """A stdout line longer than the parsing limit is dropped whole, not parsed in pieces."""
    script = (
        "import sys; sys.stdin.read(); out = sys.stdout.buffer; "
        f"out.write(b'x' * {LONG}); out.write(b'TAIL\\n'); out.write(b'final answer\\n'); out.flush()"
    )
    write_config(project, ["python3", "-c", script])
    ok("add", "print a huge line")
    result = orchestrate("run", timeout=120)
    assert result.returncode == 0, result.stderr
    done = task(1)
    assert done["status"] == "completed"
    message = final_message((project / done["output_file"]).read_text())
    if message != "final answer":  # pytest.fail: a diff of 37 KB of x's says nothing
        pytest.fail(f"the final message is {len(message)} characters, ending {message[-60:]!r}", pytrace=False)


# --- 14 ------------------------------------------------------------------------------------------


def test_an_auto_merge_refused_by_a_dirty_checkout_leaves_the_task_completed(project: Path, fakes: Path) -> None:
    """A merge git refuses because the user's checkout is dirty keeps the task completed, unmerged, with a note."""
    repository(project)
    write_config(
        project,
        sh("cat >/dev/null; echo 'from the task' >> README.md; echo edited README.md"),
        more="workspace: worktree\nmerge: auto\n",
    )
    (project / "README.md").write_text("a project\nthe user's own edit, not committed\n")
    main_before = git("rev-parse", "HEAD").strip()
    ok("add", "Edit README.md")
    orchestrate("run", timeout=60)
    t = task(1)
    assert (t["status"], t["attempts"]) == ("completed", 1), t["error"]
    assert git("rev-parse", "HEAD").strip() == main_before  # not merged
    branch = git("rev-parse", "orchestrate/task_001").strip()
    assert branch != main_before and "from the task" in git("show", "orchestrate/task_001:README.md")
    assert (project / "README.md").read_text() == "a project\nthe user's own edit, not committed\n"
    shown = ok("show", "1")
    noted = "merg" in (t["error"] or "").lower() or any(
        "merg" in line.lower() and "branch:" not in line for line in shown.splitlines()
    )
    assert noted, f"nothing says why it was not merged: error {t['error']!r}\n{shown}"


# --- 2, the rule's other half: a command agent's limit is what its entry declares ----------------


def test_a_command_agent_reports_a_rate_limit_only_as_configured(project: Path) -> None:
    """Exit 75 with `rate_limit_exit_code: 75` cools the agent and spends no attempt; the task runs again."""
    once = project / "limited-once"
    write_config(project, sh(f"cat >/dev/null; [ -e {once} ] && exit 0; touch {once}; echo 'slow down' >&2; exit 75"))
    text = (
        (project / "config.yaml")
        .read_text()
        .replace("    max_instances: 1\n", "    max_instances: 1\n    rate_limit_exit_code: 75\n")
    )
    (project / "config.yaml").write_text(text)
    ok("add", "limited then fine")
    ok("start")
    try:
        wait_until(lambda: any(a["state"] == "cooling" for a in agents_json()), message="the agent to cool")
        assert task(1)["attempts"] == 0 and task(1)["status"] == "pending"  # the limit spent nothing
    finally:
        ok("stop")


# --- 9: a queue that cannot be written --------------------------------------------------------------


def test_a_queue_that_cannot_be_recorded_in_stops_the_head_and_loses_nothing(project: Path) -> None:
    """A full disk under the queue: `run` says so in one line and exits 1; the task is not lost."""
    queue = project / "q"
    queue.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(queue)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        marker, fill = project / "filled", queue / "fill"
        # The first run fills the queue's disk before it ends, and says more than the write-ahead
        # log has room for (a checkpoint lets the log reuse its space), so its result cannot be recorded.
        script = (
            f"cat >/dev/null; [ -e {marker} ] && exit 0; touch {marker}; head -c 2000000 /dev/zero > {fill};"
            " head -c 200000 /dev/zero | tr '\\0' x; exit 0"
        )
        write_config(project, sh(script), more="  database: q/tasks.db\n")
        ok("add", "fills the disk")
        first = orchestrate("run", timeout=60)
        assert first.returncode == 1, first.stderr
        assert "cannot record task_001's result" in first.stderr and "Traceback" not in first.stderr
        fill.unlink()
        second = orchestrate("run", timeout=60)  # a head that starts again recovers it, unspent
        assert second.returncode == 0, second.stderr
        assert (task(1)["status"], task(1)["attempts"]) == ("completed", 1)
    finally:
        subprocess.run(["umount", "-l", str(queue)], check=False)
