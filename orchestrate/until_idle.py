"""`orchestrate run`: the head stops once nothing is left that can run, and says whether all went well."""

from __future__ import annotations

import logging

from orchestrate.core.extension import Extension
from orchestrate.core.head import Head
from orchestrate.core.states import Status, sql_list

log = logging.getLogger(__name__)
# Pending tasks that can still run: none of their dependencies, however indirect, failed or was cancelled.
RUNNABLE = f"""WITH RECURSIVE stuck(id) AS (
        SELECT d.task_id FROM deps d JOIN tasks p ON p.id = d.depends_on
        WHERE p.status IN {sql_list((Status.FAILED, Status.CANCELLED))}
        UNION SELECT d.task_id FROM deps d JOIN stuck s ON d.depends_on = s.id)
    SELECT count(*) FROM tasks WHERE status = '{Status.PENDING}' AND id NOT IN (SELECT id FROM stuck)"""


class UntilIdle(Extension):
    async def started(self, head: Head) -> None:
        self.head = head

    async def idle(self) -> None:
        """Stop when nothing runnable is left; a task left pending (behind a failure, or with no
        agent able to run it) makes the run a failure, as a failed task does."""
        slots, queue = self.head.distributor.slots, self.head.queue
        runnable = (await queue.read(RUNNABLE))[0][0]
        if stuck := all(s.agent.name in self.head.distributor.unavailable for s in slots):
            log.error("no agent can run: every configured agent is unavailable")
        elif stuck := bool(runnable and self.head.held):  # nothing more is claimed until a person acts
            log.error("%d task(s) left pending: claiming is held: %s", runnable, "; ".join(self.head.held.values()))
        if stuck or not runnable:
            pending = await queue.read("SELECT n FROM task_counts WHERE status = ?", Status.PENDING)
            self.head.failures += stuck or pending[0][0] > 0
            self.head.stop("drain")
