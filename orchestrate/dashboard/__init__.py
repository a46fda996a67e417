"""The live web dashboard: its server, its routes, what it reads, and the page; and its settings,
the configuration's dashboard section."""

from __future__ import annotations

from orchestrate.configfile import DashboardConfig
from orchestrate.core.config import Config


def settings(cfg: Config) -> DashboardConfig:
    """The dashboard settings of `cfg` (the defaults if it has none)."""
    found: DashboardConfig = cfg.features.get("dashboard", DashboardConfig())
    return found
