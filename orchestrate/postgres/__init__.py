"""The queue on PostgreSQL, for several machines working one backlog (`task_queue.database:
postgresql://...`); imported only when a URL is configured, and needing the `postgres` extra.

A Connection here answers the calls the rest of orchestrate makes on an sqlite3 connection
(`execute`, rows read by index or name, `close`) and raises sqlite3's error classes, which every
caller already catches, so the commands, the dashboard and the head share their SQL with SQLite;
dialect.py holds the differences."""

from __future__ import annotations

import functools
import logging
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, NamedTuple

try:
    import psycopg
except ImportError:  # pragma: no cover - the message is the point
    from orchestrate.core.errors import ConfigError

    raise ConfigError(
        "task_queue.database is a PostgreSQL URL, which needs psycopg: pip install 'orchestrate[postgres]'"
    ) from None

from orchestrate.postgres import dialect, schema


class Settings(NamedTuple):
    """The PostgreSQL queue's settings (task_queue's keys that only this backend reads)."""

    url: str
    head: str  # this head's name in the heads table: the machine's host name unless set
    lease_seconds: float = 60.0
    max_interruptions: int = 3  # leases that may run out on one task before it fails
    max_total: Mapping[str, int] = {}  # by agent name: how many may run at once across every machine
    cooling_keys: Mapping[str, str] = {}  # by agent name: what a rate limit cools (an account); default the name


def shown(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


class Row(tuple[Any, ...]):
    """A row read by position or by column name, as sqlite3.Row."""

    names: ClassVar[dict[str, int]] = {}

    def __getitem__(self, key: Any) -> Any:
        return tuple.__getitem__(self, self.names[key] if isinstance(key, str) else key)

    def keys(self) -> list[str]:
        return list(self.names)


def _rows(cursor: Any) -> Any:
    """The row class of the cursor's result, by its columns' names: read off the result itself,
    since `description` builds a Column, with its type looked up, for every column of every result."""
    result = cursor.pgresult
    return _row_class(tuple((result.fname(i) or b"").decode() for i in range(result.nfields)) if result else ())


@functools.lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"names": {name: i for i, name in enumerate(names)}, "__slots__": ()})


# A pipeline whose block raised says so again on its way out ("error ignored terminating ...:
# pipeline aborted"); the caller already has the error, so the second report is only noise.
logging.getLogger("psycopg").addFilter(lambda record: not record.getMessage().startswith("error ignored terminating"))


class Numeric(psycopg.adapt.Loader):
    """sum() of integers is `numeric` here: read it as SQLite gives it, an int or a float."""

    def load(self, data: Any) -> Any:
        text = bytes(data).decode()
        return int(text) if text.lstrip("-").isdigit() else float(text)


class Connection:
    """One connection, in autocommit mode: a transaction is the BEGIN...COMMIT the caller writes."""

    def __init__(self, settings: Settings, lock_file: str = "") -> None:
        self.settings = settings
        try:
            self.pg = psycopg.connect(settings.url, autocommit=True, row_factory=_rows, connect_timeout=10)
        except psycopg.Error as exc:
            raise sqlite3.OperationalError(f"cannot connect to {shown(settings.url)}: {_line(exc)}") from None
        self.pg.adapters.register_loader("numeric", Numeric)
        self.mine = str(self.pg.info.backend_pid)
        names = "SELECT set_config('orchestrate.head', %s, false), set_config('orchestrate.lock', %s, false)"
        self._guard(self.pg.execute, names, (settings.head, lock_file))
        self._guard(schema.migrate, self.pg, shown(settings.url))

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        *before, last = dialect.statements(sql)
        for statement in before:
            self._guard(self.pg.execute, statement)
        return Cursor(self._guard(self.pg.execute, last, tuple(args)))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if rows:
            with self.pg.cursor() as cur:
                self._guard(cur.executemany, dialect.translate(sql), rows)

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        """Statements executed inside are sent together, their results read at the end (where
        an error in any of them is raised)."""
        with _translated(), self.pg.pipeline():
            yield

    def close(self) -> None:
        self.pg.close()

    def _guard(self, call: Any, *args: Any) -> Any:
        with _translated():
            return call(*args)


class Cursor:
    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def fetchone(self) -> Any:
        return self.cursor.fetchone() if self.cursor.description else None

    def fetchall(self) -> list[Any]:
        return self.cursor.fetchall() if self.cursor.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


@contextmanager
def _translated() -> Iterator[None]:
    """psycopg's errors raised as sqlite3's classes of the same meaning."""
    try:
        yield
    except psycopg.errors.IntegrityError as exc:
        raise sqlite3.IntegrityError(_line(exc)) from exc
    except psycopg.OperationalError as exc:  # the server is gone or refused: the callers' "cannot use"
        raise sqlite3.OperationalError(_line(exc)) from exc
    except psycopg.Error as exc:
        raise sqlite3.DatabaseError(_line(exc)) from exc


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def settings_from(database: str, values: dict[str, Any], agents: dict[str, dict[str, Any]]) -> Settings:
    """From task_queue's keys and each agent entry's max_total and cooling_key."""
    return Settings(
        database,
        values.get("head_name") or os.uname().nodename,
        values["lease_seconds"],
        values["max_interruptions"],
        {name: a["max_total"] for name, a in agents.items() if a.get("max_total")},
        {name: a.get("cooling_key") or name for name, a in agents.items()},
    )
