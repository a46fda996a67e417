"""The dashboard served by the head itself, from a thread, while the config gives it a port."""

from __future__ import annotations

from orchestrate.core.config import Config
from orchestrate.core.extension import Extension
from orchestrate.core.head import Head
from orchestrate.dashboard import server


class Serving(Extension):
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.web: server.Server | None = None

    async def started(self, head: Head) -> None:
        assert self.cfg.dashboard.port
        self.web = server.start(self.cfg, self.cfg.dashboard.port)

    async def stopping(self) -> None:
        if self.web:
            self.web.stop()
