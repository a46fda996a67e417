"""The live web dashboard: its server, its routes, what it reads, and the page; and its settings,
the configuration's dashboard section."""

from __future__ import annotations

from typing import NamedTuple

from orchestrate.core.config import Config


class DashboardConfig(NamedTuple):
    port: int | None = None  # set: the head serves the dashboard itself
    host: str = "127.0.0.1"
    token: str | None = None


def settings(cfg: Config) -> DashboardConfig:
    """The dashboard settings of `cfg` (the defaults if it has none)."""
    found: DashboardConfig = cfg.features.get("dashboard", DashboardConfig())
    return found
