"""The built-in features and adapters, as the entry point hands them to the head: each an extension
that uses the same hooks a third party's would (core/extension.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrate import agents
from orchestrate.core.config import Config
from orchestrate.core.extension import Extension


def extensions(cfg: Config) -> list[Extension]:
    """What this configuration turns on, in the order the head calls them at each step."""
    from orchestrate.journal import Journal
    from orchestrate.workspace.changes import Changes
    from orchestrate.workspace.checks import Checks
    from orchestrate.workspace.git import Project
    from orchestrate.workspace.merging import AutoMerge
    from orchestrate.workspace.worktrees import Worktrees

    project = Project(cfg)
    worktrees = Worktrees(project)
    found: list[Extension] = [worktrees, Changes(project), Checks()]
    if cfg.workspace.merge == "auto":
        found.append(AutoMerge(project, worktrees))
    if cfg.context.update_on_completion:
        found.append(Journal(cfg))
    if cfg.dashboard.port:  # imported only then; it reads the queue on connections of its own
        from orchestrate.dashboard.serving import Serving

        found.append(Serving(cfg))
    return found


def adapters(cfg: Config) -> Mapping[str, Any]:
    return agents.adapters({a.type for a in cfg.agents})
