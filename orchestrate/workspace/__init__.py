"""Where a task runs and what it changed there: git, worktrees, checks and merging, as extensions;
and their settings, the configuration's top-level workspace keys."""

from __future__ import annotations

from orchestrate.configfile import WorkspaceConfig
from orchestrate.core.config import Config


def settings(cfg: Config) -> WorkspaceConfig:
    """The workspace settings of `cfg` (the defaults if it has none)."""
    found: WorkspaceConfig = cfg.features.get("workspace", WorkspaceConfig())
    return found
