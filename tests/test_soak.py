"""A real head with 5 slots works a stream of tasks whose fake agents misbehave at random.

The default suite runs 150 tasks (under a minute); `pytest -m soak` runs 2,000.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import orchestrate, wait_until
from test_head import head_pid, no_agent_left, ok, runs, status

CONFIG = """\
agents:
  claude:
    max_instances: 5
    timeout_seconds: 1.5
    env: {IS_SANDBOX: "1"}
task_queue:
  max_retries: 1
  retry_delay_seconds: 0.05
  kill_grace_seconds: 0.5
"""
# What each kind of fake does, and the state its task must end in.
KINDS = {
    "ok": ("", "completed"),
    "fail": ("[fake:fail]", "failed"),
    "flaky": ("[fake:fail-times=1]", "completed"),  # fails once, then succeeds on its retry
    "hang": ("[fake:hang]", "failed"),  # past the timeout, both attempts
    "stubborn": ("[fake:ignore-term]", "failed"),  # past the timeout and the grace period
    "crash": ("[fake:crash]", "failed"),  # dies mid-output
    "big": ("[fake:big=1000000]", "completed"),  # a megabyte of output
    "limited": ("[fake:ratelimit] [fake:fail-times=1]", "completed"),  # a usage limit, then fine
}
WEIGHTS = {"ok": 60, "fail": 8, "flaky": 8, "hang": 3, "stubborn": 2, "crash": 6, "big": 4, "limited": 1}
FINAL = ("completed", "failed", "cancelled")


def head_usage(pid: int) -> tuple[int, float]:
    """The head's open descriptors and resident MB."""
    rss = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return len(list(Path(f"/proc/{pid}/fd").iterdir())), int(rss.split()[1]) / 1024


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def successes(records: list[dict[str, Any]]) -> Counter[str]:
    """Successful agent runs by task. Records are in order, and pids are reused over thousands
    of runs, so each end belongs to the latest start with its pid."""
    running: dict[int, str] = {}
    found: Counter[str] = Counter()
    for r in records:
        if "argv" in r:
            running[r["pid"]] = r["env"]["ORCHESTRATE_TASK"]
        elif r.get("outcome") == "success":
            found[running[r["pid"]]] += 1
    return found


def measured_after_100(listed: list[dict[str, Any]], head: int) -> tuple[int, float] | None:
    return head_usage(head) if sum(t["status"] in FINAL for t in listed) >= 100 else None


def tasks() -> list[dict[str, Any]]:
    return json.loads(ok("tasks", "--json"))  # type: ignore[no-any-return]


@pytest.mark.parametrize("total", [150, pytest.param(2000, marks=pytest.mark.soak)], ids=["short", "long"])
def test_soak(project: Path, fakes: Path, total: int) -> None:
    (project / "config.yaml").write_text(CONFIG)
    ok("start")
    head = head_pid()
    chance = random.Random(2026)
    kinds: dict[str, str] = {}  # task id -> kind
    expected: dict[str, str] = {}  # task id -> final state
    problems: list[str] = []
    done = threading.Event()

    def watch_status() -> None:  # other processes read the queue all along
        while not done.is_set():
            result = orchestrate("status", "--json")
            try:
                counts = json.loads(result.stdout)["counts"]
                assert result.returncode == 0 and set(counts) == {"pending", "running", *FINAL}
            except (ValueError, KeyError, AssertionError) as exc:
                problems.append(f"status: {exc!r}: {result.stdout[:200]} {result.stderr[:200]}")

    watcher = threading.Thread(target=watch_status)
    watcher.start()
    baseline: tuple[int, float] | None = None
    try:
        while len(kinds) < total:
            batch = chance.choices(list(WEIGHTS), weights=list(WEIGHTS.values()), k=min(25, total - len(kinds)))
            (project / "batch.yaml").write_text(
                json.dumps([{"description": f"soak {len(kinds) + i} {KINDS[k][0]}"} for i, k in enumerate(batch)])
            )
            ids = ok("add", "--file", "batch.yaml").split()
            for task_id, kind in zip(ids, batch, strict=True):
                kinds[task_id], expected[task_id] = kind, KINDS[kind][1]
            listed = tasks()
            live = [t["id"] for t in listed if t["status"] in ("pending", "running")]
            if live and chance.random() < 0.5:
                victim = chance.choice(live)
                if orchestrate("cancel", victim).returncode == 0:  # it may have finished meanwhile
                    expected[victim] = "cancelled"
            failed = [t["id"] for t in listed if t["status"] == "failed" and expected[t["id"]] == "failed"]
            if failed and chance.random() < 0.5:
                ok("retry", chance.choice(failed))  # fails the same way again: expected stays "failed"
            baseline = baseline or measured_after_100(listed, head)

        def all_final() -> bool:
            nonlocal baseline
            listed = tasks()
            baseline = baseline or measured_after_100(listed, head)
            return all(t["status"] in FINAL for t in listed)

        wait_until(all_final, timeout=total * 2, message="every task final")
        end = head_usage(head)
        left = children(head)
    finally:
        done.set()
        watcher.join()
    ok("stop")

    assert problems == []
    final = {t["id"]: t for t in tasks()}
    wrong = {
        i: (kinds[i], expected[i], t["status"], t["error"]) for i, t in final.items() if t["status"] != expected[i]
    }
    assert wrong == {}
    # Each task that completed did so in exactly one run of its agent.
    by_task = successes(runs(fakes))
    completed = {i for i, t in final.items() if t["status"] == "completed"}
    assert {i for i, n in by_task.items() if n > 1} == set()
    assert completed <= set(by_task)
    # No leak: descriptors and memory as after the first 100 tasks; no child left; nothing stray.
    assert baseline is not None
    assert end[0] <= baseline[0] + 3, (baseline, end)
    assert end[1] <= baseline[1] + 10, (baseline, end)
    assert left == [] and no_agent_left(project)
    entries = json.loads((project / "context/completed_tasks.json").read_text())
    assert sorted(e["id"] for e in entries) == sorted(i for i, t in final.items() if t["status"] in FINAL[:2])
    assert status()["head"]["running"] is False
    faults = Counter(kinds.values()) | Counter(e for e in expected.values() if e == "cancelled")
    print(f"\nsoak: {total} tasks, {dict(faults)}, {len(runs(fakes)) // 2} agent runs;", end=" ")
    print(f"head fds {baseline[0]} -> {end[0]}, RSS {baseline[1]:.1f} -> {end[1]:.1f} MB")
