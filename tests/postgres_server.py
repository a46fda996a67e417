"""A real PostgreSQL server for the tests: Debian's binaries, a data directory in a temporary
directory and a Unix socket there, no TCP. The server refuses to run as root, so under root it
runs as the `postgres` user (the Debian package creates it)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def binaries() -> Path | None:
    """The newest installed server's bin directory."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class Server:
    def __init__(self, bin_dir: Path, base: Path) -> None:
        self.bin, self.base = bin_dir, base
        self.data, self.socket = base / "data", base

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_as_server_user(list(argv)), capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> None:
        options = f"-k {self.socket} -c listen_addresses='' -c fsync=off -c max_connections=200"
        self.run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.base / "log"), "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket}"

    def create(self, database: str) -> str:
        self.run(str(self.bin / "createdb"), "-h", str(self.socket), "-U", "postgres", database)
        return self.url(database)


@contextlib.contextmanager
def running() -> Iterator[Server | None]:
    """A started server, stopped and removed afterwards; None where none is installed."""
    bin_dir = binaries()
    if bin_dir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        yield None
        return
    base = Path(tempfile.mkdtemp(prefix="orchestrate-pg-"))
    os.chmod(base, 0o755)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    server = Server(bin_dir, base)
    server.run(str(bin_dir / "initdb"), "-D", str(server.data), "-A", "trust", "-U", "postgres", "--no-sync")
    server.start()
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
