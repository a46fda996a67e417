"""The head's claim logic: priority, aging, dependencies, backoff, affinity, atomicity; and slot order.

The claim tests run on both backends: `db` is an SQLite file, or a PostgreSQL database of its own."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Collection
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrate import aging, api, until_idle
from orchestrate.aging import AGING_S
from orchestrate.core import store
from orchestrate.core.config import AgentConfig
from orchestrate.core.distributor import Distributor
from orchestrate.core.queue import Queue
from orchestrate.core.states import Event

ANY = {"claude", "codex", "gemini"}
LOW, NORMAL, HIGH = api.PRIORITIES["low"], api.PRIORITIES["normal"], api.PRIORITIES["high"]


Db = Any  # an SQLite file's Path, or the PostgreSQL backend's Settings


def opened(db: Db) -> Any:
    """A connection as the commands open one, on either backend."""
    if isinstance(db, Path):
        return api.opened(db)
    from orchestrate import postgres

    return api.opened(db.url, connect=lambda: postgres.Connection(db))


def open_queue(db: Db) -> Queue:
    """The head's queue on either backend; a PostgreSQL queue asks its head only what runs there."""
    if isinstance(db, Path):
        return Queue(db)
    from orchestrate.postgres.queue import PostgresQueue

    return PostgresQueue(db, SimpleNamespace(busy={}), Path("q.lock"))


def add(db: Db, *batch: api.NewTask, now: float = 0.0) -> list[int]:
    with opened(db) as conn:
        return api.add_tasks(conn, list(batch), now=now)


def sql(db: Db, statement: str, *args: object) -> None:
    with opened(db) as conn:
        conn.execute(statement, args)


def running(task_id: int) -> store.Task:
    """A task for a busy Distributor slot (it only asks whether a slot has one)."""
    blank: dict[str, Any] = dict.fromkeys(store.Task._fields)
    return store.Task(**{**blank, "id": task_id, "description": "x", "status": "running"})


def get(db: Db, task_id: int) -> store.Task:
    with opened(db) as conn:
        return api.get_task(conn, task_id)


async def drain(q: Queue, now: float = 1.0, takes: Collection[str] = ANY, known: Collection[str] = ANY) -> list[int]:
    """Claim until nothing is claimable; the ids in claim order."""
    ids = []
    while task := await q.claim("slot-1", takes, known, now):
        ids.append(task.id)
    return ids


async def runnable(q: Queue) -> int:
    return int((await q.read(until_idle.RUNNABLE))[0][0])


async def pending(q: Queue) -> int:
    return int((await q.read("SELECT n FROM task_counts WHERE status = 'pending'"))[0][0])


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, project: Path) -> Db:
    if request.param == "sqlite":
        return project / "q.db"
    from orchestrate.postgres import Settings

    return Settings(request.getfixturevalue("pg_url"), "test-head")


@pytest.fixture
async def q(db: Db) -> AsyncIterator[Queue]:
    queue = open_queue(db)
    yield queue
    await queue.close()


async def test_high_before_normal_before_low_and_fifo_within_a_level(q: Queue, db: Db) -> None:
    prios = [LOW, NORMAL, HIGH, LOW, HIGH, NORMAL]
    ids = add(db, *(api.NewTask(f"t{i}", priority=p) for i, p in enumerate(prios)))
    expected = sorted(ids, key=lambda i: (prios[ids.index(i)], i))
    assert await drain(q) == expected == [ids[2], ids[4], ids[1], ids[5], ids[0], ids[3]]


async def test_an_old_low_task_is_promoted_to_normal_by_aging(q: Queue, db: Db) -> None:
    [normal_before] = add(db, api.NewTask("normal before"), now=0)
    [old_low] = add(db, api.NewTask("old low", priority=LOW), now=100)
    [normal_after] = add(db, api.NewTask("normal after"), now=200)
    [young_low] = add(db, api.NewTask("young low", priority=LOW), now=AGING_S + 50)
    [normal_latest] = add(db, api.NewTask("normal latest"), now=AGING_S + 60)
    now = AGING_S + 150  # old_low waited AGING_S + 50 s; young_low only 100 s
    await q.write((aging.PROMOTE, (now - AGING_S,)))  # what the aging extension does every beat
    order = await drain(q, now=now)
    assert order == [normal_before, old_low, normal_after, normal_latest, young_low]
    assert get(db, old_low).priority == LOW  # the rank changes, the priority the user gave does not


async def test_without_aging_a_low_task_keeps_its_rank(q: Queue, db: Db) -> None:
    [old_low] = add(db, api.NewTask("old low", priority=LOW), now=0)
    [normal] = add(db, api.NewTask("normal"), now=10)
    assert await drain(q, now=AGING_S * 3) == [normal, old_low]


async def test_a_task_waits_for_its_dependency_to_complete(q: Queue, db: Db) -> None:
    dep, child = add(db, api.NewTask("dep"), api.NewTask("child", priority=HIGH, after_new=(0,)))
    assert get(db, child).blocked
    first = await q.claim("slot-1", ANY, ANY, 1.0)
    assert first is not None and first.id == dep  # the high child is blocked, the normal dep goes
    assert await q.claim("slot-1", ANY, ANY, 2.0) is None  # dep running, not completed
    assert await q.record(dep, first.claim, Event.COMPLETE, finished_at=3.0)
    assert await drain(q, now=4.0) == [child]


async def test_a_dependency_completed_by_another_connection_unblocks(q: Queue, db: Db) -> None:
    [dep] = add(db, api.NewTask("dep"))
    sql(db, "UPDATE tasks SET status = 'running' WHERE id = ?", dep)
    [child] = add(db, api.NewTask("child", depends_on=(dep,)))
    assert await drain(q) == []
    sql(db, "UPDATE tasks SET status = 'completed' WHERE id = ?", dep)
    assert await drain(q) == [child]


async def test_runnable_excludes_tasks_behind_a_failed_or_cancelled_dependency(q: Queue, db: Db) -> None:
    a, _b, _c, _d, _e, x, _y = add(
        db,
        api.NewTask("A"),
        api.NewTask("B", after_new=(0,)),
        api.NewTask("C", after_new=(1,)),  # behind A only through B
        api.NewTask("D"),
        api.NewTask("E", after_new=(3,)),  # blocked, but D can still run
        api.NewTask("X"),
        api.NewTask("Y", after_new=(5,)),
    )
    assert await runnable(q) == await pending(q) == 7
    sql(db, "UPDATE tasks SET status = 'failed' WHERE id = ?", a)
    with opened(db) as conn:
        api.cancel(conn, x, now=1.0)
    assert await pending(q) == 5  # B, C, D, E, Y
    assert await runnable(q) == 2  # D and E


async def test_a_task_in_retry_backoff_is_skipped_until_its_time(q: Queue, db: Db) -> None:
    waiting, ready = add(db, api.NewTask("backing off", priority=HIGH), api.NewTask("ready"))
    sql(db, "UPDATE tasks SET not_before = 100 WHERE id = ?", waiting)
    assert await drain(q, now=50) == [ready]
    assert await drain(q, now=99.9) == []
    assert await drain(q, now=100.1) == [waiting]


async def test_a_task_waits_for_its_preferred_agent_only_when_it_is_known(q: Queue, db: Db) -> None:
    claude, codex, anyone, cursor = add(
        db,
        api.NewTask("for claude", agent_type="claude"),
        api.NewTask("for codex", agent_type="codex"),
        api.NewTask("for anyone"),
        api.NewTask("for cursor", agent_type="cursor"),  # not configured: anyone takes it
    )
    known = {"claude", "codex"}
    assert await drain(q, takes={"codex"}, known=known) == [codex, anyone, cursor]
    assert await drain(q, takes={"claude"}, known=known) == [claude]


async def test_a_slot_takes_tasks_for_its_entry_name_or_its_type(q: Queue, db: Db) -> None:
    dist = distributor(("claude", "claude", 1), ("fast", "codex", 1))
    claude_slot, fast_slot = dist.slots
    by_name, by_type, claude = add(
        db,
        api.NewTask("fast", agent_type="fast"),
        api.NewTask("codex", agent_type="codex"),
        api.NewTask("claude", agent_type="claude"),
    )
    fast_takes = (fast_slot.agent.name, fast_slot.agent.type)  # as the head claims for a slot
    assert fast_takes == ("fast", "codex") and claude_slot.agent.name == "claude"
    assert dist.known() == {"claude", "fast", "codex"}
    assert await drain(q, takes=fast_takes, known=dist.known()) == [by_name, by_type]
    dist.unavailable["claude"] = "not installed"  # no longer known: anyone may take its tasks
    assert await drain(q, takes=fast_takes, known=dist.known()) == [claude]


async def test_claim_marks_the_task_running_once_on_its_slot(q: Queue, db: Db) -> None:
    assert await q.claim("codex-2", ANY, ANY, 1.0) is None  # empty queue
    [tid] = add(db, api.NewTask("only"))
    q.logs = "logs"
    task = await q.claim("codex-2", ANY, ANY, 42.0)
    assert task is not None and task.id == tid
    stored = get(db, tid)
    assert stored == task
    assert (stored.status, stored.started_at) == ("running", 42.0)
    assert (stored.agent, stored.log_file) == ("codex-2", f"logs/{store.task_name(tid)}.log")
    assert await q.claim("codex-2", ANY, ANY, 43.0) is None  # not claimed twice


def test_queues_in_four_threads_never_claim_the_same_task(db: Db) -> None:
    ids = add(db, *(api.NewTask(f"t{i}", priority=i % 3) for i in range(200)))

    async def claim_all(slot: str) -> list[int]:
        own = open_queue(db)  # each thread its own connection and loop, as separate heads
        try:
            return [t.id for _ in range(80) if (t := await own.claim(slot, ANY, ANY, 1.0))]
        finally:
            await own.close()

    with ThreadPoolExecutor(4) as pool:
        got = [i for ids_ in pool.map(lambda n: asyncio.run(claim_all(f"s-{n}")), range(4)) for i in ids_]
    assert Counter(got).most_common(1)[0][1] == 1
    assert sorted(got) == ids
    assert {get(db, i).status for i in ids} == {"running"}


async def test_a_record_is_refused_once_the_row_has_moved_on_from_its_claim(q: Queue, db: Db) -> None:
    keep, gone, again = add(db, api.NewTask("keep"), api.NewTask("gone"), api.NewTask("again"))
    claims = {t.id: t.claim for t in [await q.claim("slot-1", ANY, ANY, 1.0) for _ in range(3)] if t}
    assert sorted(claims) == [keep, gone, again] and set(claims.values()) == {1}
    with opened(db) as conn:
        api.cancel(conn, gone, now=5.0)
        api.cancel(conn, again, now=5.0)
        api.retry(conn, again)
    assert await q.positions(claims) == {gone, again}
    assert not await q.record(gone, 1, Event.COMPLETE, finished_at=6.0, error=None)
    assert (get(db, gone).status, get(db, gone).finished_at) == ("cancelled", 5.0)
    reclaimed = await q.claim("slot-2", ANY, ANY, 7.0)
    assert reclaimed is not None and (reclaimed.id, reclaimed.claim) == (again, 2)
    assert not await q.record(again, 1, Event.COMPLETE, finished_at=8.0)  # the old run's result
    assert await q.record(keep, 1, Event.COMPLETE, finished_at=6.0)
    assert get(db, keep).status == "completed" and get(db, again).status == "running"
    assert await q.positions({keep: 1, again: 2}) == {keep}


async def test_busy_tasks_are_not_claimed_again(q: Queue, db: Db) -> None:
    [tid] = add(db, api.NewTask("winding down"))
    assert await q.claim("slot-1", ANY, ANY, 1.0, busy=[tid]) is None
    assert (await q.claim("slot-1", ANY, ANY, 1.0)) is not None


def distributor(*agents: tuple[str, str, int]) -> Distributor:
    return Distributor(tuple(AgentConfig(n, t, ("x",), max_instances=m) for n, t, m in agents))


def order(dist: Distributor, now: float = 0) -> list[str]:
    return [s.id for s in dist.free(now)]


def test_free_slots_of_the_least_loaded_agent_come_first() -> None:
    dist = distributor(("claude", "claude", 3), ("codex", "codex", 2))
    dist.slots[0].task = running(1)  # claude runs one task; codex none
    assert {order(dist)[0] for _ in range(6)} == {"codex-1", "codex-2"}
    dist.slots[3].task = running(2)  # now one each: every free slot competes again
    assert {order(dist)[0] for _ in range(6)} == {"claude-2", "claude-3", "codex-2"}
    assert sorted(order(dist)) == ["claude-2", "claude-3", "codex-2"]  # busy slots are not free


def test_free_slots_take_turns_among_ties() -> None:
    dist = distributor(("claude", "claude", 1), ("codex", "codex", 1), ("gemini", "gemini", 1))
    firsts = [order(dist)[0] for _ in range(6)]
    assert all(a != b for a, b in pairwise(firsts))
    assert Counter(firsts) == {"claude-1": 2, "codex-1": 2, "gemini-1": 2}


def test_cooling_and_unavailable_slots_are_not_free() -> None:
    dist = distributor(("claude", "claude", 1), ("codex", "codex", 1), ("gemini", "gemini", 1))
    dist.cooling["claude"] = 10.0
    dist.unavailable["gemini"] = "not installed"
    assert order(dist) == ["codex-1"]
    assert sorted(order(dist, now=11.0)) == ["claude-1", "codex-1"]
    assert dist.known() == {"claude", "codex"}


async def test_a_claim_outwaits_another_process_holding_the_queue_locked(project: Path) -> None:
    db = project / "q.db"  # SQLite's write lock: PostgreSQL's claims lock rows, and skip those locked
    q = Queue(db)
    [tid] = add(db, api.NewTask("only"))
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # as a long `orchestrate add` or a stuck client would
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.ensure_future(tick())
    claim = asyncio.ensure_future(q.claim("s-1", ANY, ANY, 1.0))
    try:
        async with asyncio.timeout(10):
            while ticks < 20:  # far past the 20 ms a statement waits on the loop itself
                await asyncio.sleep(0.01)
        assert not claim.done()
        other.execute("COMMIT")
        async with asyncio.timeout(10):
            task = await claim
        assert task is not None and task.id == tid
    finally:
        ticker.cancel()
        other.close()
        await q.close()


async def test_a_task_added_after_a_completed_dependency_is_ready_and_one_behind_a_retried_one_waits(
    q: Queue, db: Db
) -> None:
    [dep] = add(db, api.NewTask("dep"))
    sql(db, "UPDATE tasks SET status = 'completed' WHERE id = ?", dep)
    [ready] = add(db, api.NewTask("after a completed one", depends_on=(dep,)))
    [failed] = add(db, api.NewTask("fails"))
    sql(db, "UPDATE tasks SET status = 'failed' WHERE id = ?", failed)
    [behind] = add(db, api.NewTask("behind a failed one", depends_on=(failed,)))
    assert await drain(q) == [ready]
    with opened(db) as conn:
        api.retry(conn, failed, now=1.0)  # pending again: its dependant still waits for it to complete
    claimed = await drain(q)
    assert claimed == [failed]
    task = get(db, failed)
    assert await q.record(failed, task.claim, Event.COMPLETE, finished_at=2.0)
    assert await drain(q) == [behind]


def test_a_queue_from_before_the_ready_index_counts_what_each_task_waits_for(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, migration in enumerate(store.MIGRATIONS[:5], start=1):
        migration(conn)
        conn.execute(f"PRAGMA user_version={number}")
    row = "INSERT INTO tasks (description, status, priority, rank, max_retries, created_at) VALUES (?, ?, 1, 1, 3, 0)"
    for name, status in (("done", "completed"), ("running", "running"), ("both", "pending"), ("one", "pending")):
        conn.execute(row, (name, status))
    conn.executemany("INSERT INTO deps VALUES (?, ?)", [(3, 1), (3, 2), (4, 1)])
    conn.close()
    with api.opened(path) as migrated:
        waiting = dict(migrated.execute("SELECT description, waiting FROM tasks").fetchall())
    assert waiting == {"done": 0, "running": 0, "both": 1, "one": 0}


@pytest.mark.parametrize("waits_for", ["a dependency", "backoff", "another agent"])
async def test_a_claim_reads_only_the_rows_it_may_take_through_indexes(project: Path, waits_for: str) -> None:
    db = project / "q.db"
    [blocker] = add(db, api.NewTask("blocker"))
    sql(db, "UPDATE tasks SET status = 'running' WHERE id = ?", blocker)
    many = [api.NewTask(f"t{i}", depends_on=(blocker,) if waits_for == "a dependency" else ()) for i in range(50)]
    if waits_for == "another agent":
        many = [task._replace(agent_type="codex") for task in many]
    add(db, *many, api.NewTask("ready", agent_type="claude"))
    if waits_for == "backoff":
        sql(db, "UPDATE tasks SET not_before = 1e12 WHERE id > ? AND agent_type IS NULL", blocker)
    queue = Queue(db)
    statements: list[str] = []
    queue.conn.set_trace_callback(statements.append)
    try:
        task = await queue.claim("claude-1", ("claude", "claude"), {"claude", "codex"}, 10.0, busy=(blocker,))
        assert task is not None and task.description == "ready"
        queue.conn.set_trace_callback(None)
        claims = [s for s in dict.fromkeys(statements) if s.startswith("UPDATE")]  # traced again at each trigger
        plans = [row[3] for s in claims for row in queue.conn.execute(f"EXPLAIN QUERY PLAN {s}")]
    finally:
        await queue.close()
    on_tasks = [plan for plan in plans if plan.split()[1:2] in (["t"], ["tasks"])]  # SCAN kinds: the CTE's rows
    assert on_tasks and all(plan.startswith("SEARCH") for plan in on_tasks), plans
    # Only the few candidates (one per kind) are sorted: each index gives its rows in claim order.
    assert sum("TEMP B-TREE" in plan for plan in plans) <= 1, plans
