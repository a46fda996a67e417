"""An agent's word is not taken for it: `require_changes`, then the task's `verify` commands in turn."""

from __future__ import annotations

from orchestrate.core.attempt import Attempt
from orchestrate.core.extension import Extension
from orchestrate.workspace import settings
from orchestrate.workspace.shell import shell


class Checks(Extension):
    async def after(self, attempt: Attempt) -> None:
        if attempt.over or not attempt.result.ok:
            return
        workspace, task = settings(attempt.cfg), attempt.task
        if workspace.require_changes and not attempt.changes:
            unseen = " (not a git repository: none can be seen)" if attempt.changes is None else ""
            return attempt.fail("no changes made" + unseen)
        for command in next(c for c in (task.verify, attempt.slot.agent.verify, workspace.verify) if c is not None):
            await shell(attempt, "verify", command)
            attempt.checks.append(f"`{command}`: {attempt.stopped or ('FAILED' if attempt.failure else 'passed')}")
            if attempt.over:
                return
