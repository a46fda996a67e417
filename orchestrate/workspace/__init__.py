"""Where a task runs and what it changed there: git, worktrees, checks and merging, as extensions;
and their settings, the configuration's top-level workspace keys."""

from __future__ import annotations

from typing import NamedTuple

from orchestrate.core.config import Config


class WorkspaceConfig(NamedTuple):
    mode: str = "shared"  # or "worktree": each task on its own branch, in its own checkout
    files: tuple[str, ...] = ()  # copied into each worktree (untracked files such as .env)
    setup: str | None = None  # a shell command run in the worktree before each attempt
    verify: tuple[str, ...] = ()  # shell commands that must all exit 0 for a task to complete
    verify_timeout_seconds: float = 600
    require_changes: bool = False
    merge: str = "manual"  # or "auto": a task that completes is merged into the current branch


def settings(cfg: Config) -> WorkspaceConfig:
    """The workspace settings of `cfg` (the defaults if it has none)."""
    found: WorkspaceConfig = cfg.features.get("workspace", WorkspaceConfig())
    return found
