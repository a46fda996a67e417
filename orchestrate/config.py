"""The configuration as the head and the commands use it: frozen, already validated (cli_config reads it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class AgentConfig:
    name: str
    type: str
    command: tuple[str, ...]
    max_instances: int = 1
    timeout_seconds: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    verify: tuple[str, ...] | None = None  # overrides the project's checks for tasks this agent runs


@dataclass(frozen=True)
class TaskQueueConfig:
    database: Path
    timeout_minutes: float = 30
    max_retries: int = 3
    retry_delay_seconds: float = 60
    kill_grace_seconds: float = 30


@dataclass(frozen=True)
class ContextConfig:
    directory: Path
    update_on_completion: bool = True
    inline_max_kb: int = 32  # a larger context file is named in the prompt, not copied into it
    prompt_max_kb: int = 128  # all the context copied into one prompt


@dataclass(frozen=True)
class PerformanceConfig:
    max_memory_mb: int | None = 4096


@dataclass(frozen=True)
class WorkspaceConfig:
    mode: str = "shared"  # or "worktree": each task on its own branch, in its own checkout
    files: tuple[str, ...] = ()  # copied into each worktree (untracked files such as .env)
    setup: str | None = None  # a shell command run in the worktree before each attempt
    verify: tuple[str, ...] = ()  # shell commands that must all exit 0 for a task to complete
    verify_timeout_seconds: float = 600
    require_changes: bool = False
    merge: str = "manual"  # or "auto": a task that completes is merged into the current branch


@dataclass(frozen=True)
class DashboardConfig:
    port: int | None = None  # set: the head serves the dashboard itself
    host: str = "127.0.0.1"
    token: str | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    root: Path  # the project directory: relative paths in the file are resolved against it
    agents: tuple[AgentConfig, ...]
    task_queue: TaskQueueConfig
    context: ContextConfig
    performance: PerformanceConfig
    workspace: WorkspaceConfig = WorkspaceConfig()
    dashboard: DashboardConfig = DashboardConfig()

    @property
    def runtime_dir(self) -> Path:
        return self.root / ".orchestrate"

    def with_database(self, database: Path) -> Config:
        return replace(self, task_queue=replace(self.task_queue, database=database))

    def agent_names(self) -> set[str]:
        """Every value a task's preferred agent can match: entry names and adapter types."""
        return {a.name for a in self.agents} | {a.type for a in self.agents}
