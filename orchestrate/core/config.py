"""The configuration as the head and the commands use it: frozen, already validated (configfile reads it).

NamedTuples rather than dataclasses: every command imports this, and a NamedTuple class costs an
eighth of a frozen dataclass to create (about half a millisecond each, against the start-up budget)."""

# No `from __future__ import annotations` here: NamedTuple compiles each string annotation into
# a ForwardRef, half the cost of the class, and every command imports this module.

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple


class AgentConfig(NamedTuple):
    name: str
    type: str
    command: tuple[str, ...]
    max_instances: int = 1
    timeout_seconds: float | None = None
    env: Mapping[str, str] = {}  # shared by every entry without env: read, never changed
    verify: tuple[str, ...] | None = None  # overrides the project's checks for tasks this agent runs
    rate_limit_exit_code: int | None = None  # command agents: the exit status that means "rate limited"
    rate_limit_pattern: str | None = None  # command agents: a regex on stderr that means the same


class TaskQueueConfig(NamedTuple):
    database: Path
    timeout_minutes: float = 30
    max_retries: int = 3
    retry_delay_seconds: float = 60
    kill_grace_seconds: float = 30


class ContextConfig(NamedTuple):
    """Where the shared context lives; the rest of the section is the context feature's."""

    directory: Path


class Config(NamedTuple):
    path: Path
    root: Path  # the project directory: relative paths in the file are resolved against it
    agents: tuple[AgentConfig, ...]
    task_queue: TaskQueueConfig
    context: ContextConfig
    features: Mapping[str, Any] = {}  # each feature's own settings, by name: read through the feature's settings()

    @property
    def runtime_dir(self) -> Path:
        return self.root / ".orchestrate"
