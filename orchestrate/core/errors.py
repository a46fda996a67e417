"""The one exception tree: every message is a sentence a user can act on."""

from __future__ import annotations


class OrchestrateError(Exception):
    """An error the CLI reports in one line; `exit_code` follows docs/design.md (1 failed, 2 bad usage)."""

    exit_code = 1


class UsageError(OrchestrateError):
    """Bad input on the command line or in a task file."""

    exit_code = 2


class ConfigError(OrchestrateError):
    """An invalid configuration file, or a queue file that is not a queue."""

    exit_code = 2


class TaskNotFound(OrchestrateError):
    """No task has the id the user gave."""


class InvalidTransition(OrchestrateError):
    """The task is not in a state that allows the requested change."""


class QueueBusy(OrchestrateError):
    """Another process held the queue locked for longer than the busy timeout."""


class AgentUnavailable(OrchestrateError):
    """An agent's CLI cannot be started (not installed, not on PATH)."""
