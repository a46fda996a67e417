"""The dashboard served by the head itself, from a thread, while the config gives it a port."""

from __future__ import annotations

from orchestrate.core.config import Config
from orchestrate.core.extension import Extension
from orchestrate.core.head import Head
from orchestrate.dashboard import server, settings


class Serving(Extension):
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.web: server.Server | None = None

    async def started(self, head: Head) -> None:
        port = settings(self.cfg).port
        assert port
        self.web = server.start(self.cfg, port)

    async def stopping(self) -> None:
        if self.web:
            self.web.stop()
