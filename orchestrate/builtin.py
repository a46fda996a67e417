"""The built-in features and adapters, as the entry point hands them to the head: each an extension
that uses the same hooks a third party's would (core/extension.py)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrate import agents, dashboard, workspace
from orchestrate.core.config import Config
from orchestrate.core.extension import Extension


def extensions(cfg: Config, until_idle: bool = False) -> list[Extension]:
    """What this configuration turns on, in the order the head calls them at each step;
    `until_idle` for `orchestrate run`, which ends once nothing is left that can run."""
    from orchestrate import context, hooks, runs
    from orchestrate.aging import Aging
    from orchestrate.context import Context, Journal, Outputs
    from orchestrate.orphans import Orphans
    from orchestrate.pause import Pause
    from orchestrate.plans import Plans
    from orchestrate.slots import Slots
    from orchestrate.spending import Spending
    from orchestrate.watchdog import Watchdog
    from orchestrate.workspace.changes import Changes
    from orchestrate.workspace.checks import Checks
    from orchestrate.workspace.git import Project
    from orchestrate.workspace.merging import AutoMerge
    from orchestrate.workspace.worktrees import Worktrees

    project = Project(cfg)
    worktrees = Worktrees(project)
    run_settings = runs.settings(cfg)
    # Outputs first: nothing may run between a run's record and its output file (see Outputs)
    found: list[Extension] = [Outputs(), Slots(), Orphans(), Watchdog(run_settings), Aging()]
    found += [worktrees, Changes(project), Checks()]
    if workspace.settings(cfg).merge == "auto":
        found.append(AutoMerge(project, worktrees))
    found += [runs.Runs(run_settings), Spending(cfg, run_settings.max_cost_usd)]
    journal = Journal(cfg) if context.settings(cfg).update_on_completion else None
    found += [Context(cfg, journal), *([journal] if journal else []), Plans(), Pause()]
    found += [hooks.Hooks(cfg)] if hooks.settings(cfg).commands else []  # none: the head pays nothing
    if (pg := cfg.features.get("postgres")) is not None:  # several machines on one queue
        from orchestrate.postgres.extensions import extensions as shared

        found += shared(cfg, pg)
    else:
        from orchestrate.checkpoints import Checkpoints

        found.append(Checkpoints())
    if until_idle:
        from orchestrate.until_idle import UntilIdle

        found.append(UntilIdle())
    if dashboard.settings(cfg).port:  # imported only then; it reads the queue on connections of its own
        from orchestrate.dashboard.serving import Serving

        found.append(Serving(cfg))
    return found


def adapters(cfg: Config) -> Mapping[str, Any]:
    return agents.adapters({a.type for a in cfg.agents})


def serve(cfg: Config, until_idle: bool = False) -> int:
    """Run a head node in this process, with the built-ins the configuration turns on, until it
    stops; its exit status."""
    import asyncio
    import logging
    import os
    import sys

    from orchestrate.core.head import Head

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    own_project(cfg.runtime_dir, cfg.task_queue.database.resolve())
    if sys.version_info < (3, 12) and hasattr(os, "pidfd_open"):
        # 3.12 does this itself; the default before it starts a thread per agent to wait for it
        asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    head = Head(cfg, extensions(cfg, until_idle), adapters(cfg))
    if (pg := cfg.features.get("postgres")) is not None:  # a database several heads share
        from orchestrate.postgres.queue import PostgresQueue

        head.queue_type = functools.partial(PostgresQueue, pg, head)
    return asyncio.run(head.run())


def own_project(runtime: Path, db: Path) -> None:
    """One queue per project: two would share its agents' logs, its output files and its pid file."""
    from orchestrate.core.errors import OrchestrateError

    record = runtime / "queue"
    if record.exists() and (owner := Path(record.read_text().strip())) != db and owner.exists():
        raise OrchestrateError(
            f"this project's runtime files and outputs belong to the queue {owner}; a second queue"
            " needs a project directory (and a config.yaml) of its own"
        )
    runtime.mkdir(parents=True, exist_ok=True)
    record.write_text(f"{db}\n")
