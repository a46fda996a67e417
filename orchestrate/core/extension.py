"""The extension interface: what a feature may do at each named step of an attempt.

Every hook does nothing by default. The head calls each hook of every extension in the order the
entry point listed them, awaiting one before the next; the built-in features (worktrees, git
changes, checks, merging, the context journal, the dashboard) use these hooks and nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrate.core.attempt import Attempt
    from orchestrate.core.head import Head


class Extension:
    async def started(self, head: Head) -> None:
        """The head is up, about to register and recover the queue: start what the extension keeps."""

    async def workdir(self, attempt: Attempt) -> None:
        """Choose where the agent runs: `attempt.cwd`, the project directory unless changed."""

    async def before(self, attempt: Attempt) -> None:
        """Prepare the working directory before the agent runs; `attempt.fail()` stops the attempt."""

    async def after(self, attempt: Attempt) -> None:
        """The agent has ended: read what it changed, check its work, `attempt.fail()` if it falls short."""

    async def accept(self, attempt: Attempt) -> None:
        """A completed attempt is about to be recorded: merge it (after `attempt.current()` says its row is still its)."""

    async def record(self, attempt: Attempt) -> None:
        """The attempt is decided (`attempt.verdict`): add to `attempt.writes` what should be written in
        the transaction that records it, such as the run's own row."""

    async def settled(self, attempt: Attempt) -> None:
        """The attempt is recorded (`attempt.recorded`), or its claim had moved on; tidy, publish."""

    async def beat(self) -> None:
        """Once a second while the head runs, after its own heartbeat."""

    async def idle(self) -> None:
        """Nothing runs, and nothing more could be claimed this round."""

    async def stopping(self) -> None:
        """Every attempt has settled and the head is about to exit: write what is left, close."""
