"""Context travels: every finished task's output file is kept in the database, and each head
writes the other machines' into its own context/, and enters them in its journal, so that
completed_tasks.json, current_state.md's block and agent_outputs/ tell of the whole team's work.

A task whose dependency finished on another machine a moment ago gets that output file before its
prompt is built (the `workdir` step runs before any `before`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg

from orchestrate import completed, context
from orchestrate.core.agent import output_path
from orchestrate.core.errors import QueueBusy
from orchestrate.core.extension import Extension
from orchestrate.core.states import FINISHED
from orchestrate.core.store import SELECT_TASKS, task_from_row
from orchestrate.postgres import Settings, shown

if TYPE_CHECKING:
    from orchestrate.core.attempt import Attempt
    from orchestrate.core.head import Head

BATCH = 500  # output files brought over per beat: a head joining a long queue catches up in steps
KEEP = "DELETE FROM outputs WHERE task_id = ?"  # then insert: a new sequence number, seen by every head
PUT = "INSERT INTO outputs (task_id, head, path, text) VALUES (?, ?, ?, ?)"


class SharedOutputs(Extension):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.seen = 0  # the newest output's sequence number this head has written

    async def started(self, head: Head) -> None:
        self.head, self.cfg = head, head.cfg
        self.journal = next((x for x in head.extensions if isinstance(x, context.Journal)), None)
        if self.journal:  # started before this, and reads the queue only from its first beat on
            self.journal.rows = self.finished

    def finished(self) -> Iterator[Any]:
        """Every machine's finished tasks, for the journal's worker thread: on a connection of its
        own, through a server-side cursor, so that they stream rather than all arrive at once."""
        try:
            with psycopg.connect(self.settings.url, connect_timeout=10) as pg, pg.cursor("journal") as rows:
                rows.itersize = 2000
                rows.execute(completed.ROWS)
                yield from rows
        except psycopg.Error as exc:  # as the queue's connection says it, which the journal catches
            raise sqlite3.OperationalError(f"cannot read {shown(self.settings.url)}: {exc}") from None

    async def settled(self, attempt: Attempt) -> None:
        if (done := attempt.recorded) is None or done.status not in FINISHED or not done.output_file:
            return
        text = context.output(done, attempt.result.message, attempt.changes, attempt.checks)  # as Outputs wrote it
        try:
            await self.head.queue.write(
                (KEEP, (done.id,)), (PUT, (done.id, self.settings.head, done.output_file, text))
            )
        except QueueBusy as exc:
            self.head.once(f"cannot share {done.name}'s output: {exc}")

    async def workdir(self, attempt: Attempt) -> None:
        wanted = [d for d in attempt.task.depends_on if not output_path(self.cfg, d).exists()]
        if wanted:
            marks = ",".join("?" * len(wanted))
            self.write(
                await self.head.queue.read(f"SELECT path, text FROM outputs WHERE task_id IN ({marks})", *wanted)
            )

    async def beat(self) -> None:
        rows = await self.head.queue.read(
            "SELECT seq, task_id, path, text FROM outputs WHERE seq > ? AND head <> ? ORDER BY seq LIMIT ?",
            self.seen, self.settings.head, BATCH,
        )  # fmt: skip
        if not rows:
            return
        self.seen = rows[-1][0]
        self.write([(path, text) for _, _, path, text in rows])
        if self.journal:
            ids = [r[1] for r in rows]
            found = await self.head.queue.read(f"{SELECT_TASKS} WHERE t.id IN ({','.join('?' * len(ids))})", *ids)
            for task in map(task_from_row, found):
                if task.status in FINISHED:
                    self.journal.add(task)

    def write(self, files: list[Any]) -> None:
        for path, text in files:
            try:
                context.write_atomic(self.cfg.root / path, text)
            except OSError as exc:
                self.head.once(f"cannot write output files in {self.cfg.context.directory} ({exc.strerror})")
