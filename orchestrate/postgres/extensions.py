"""What a head on a PostgreSQL queue runs besides the built-ins: the features that make several
machines one team (each a core extension, as any feature is)."""

from __future__ import annotations

from typing import Any

from orchestrate.core.config import Config
from orchestrate.core.extension import Extension


def extensions(cfg: Config, settings: Any) -> list[Extension]:
    from orchestrate.postgres.cooling import SharedCooling
    from orchestrate.postgres.logs import ShippedLogs
    from orchestrate.postgres.outputs import SharedOutputs

    found: list[Extension] = [SharedCooling(settings), SharedOutputs(settings)]
    found.append(ShippedLogs(cfg, settings))
    return found
