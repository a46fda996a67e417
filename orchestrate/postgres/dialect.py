"""Where PostgreSQL's SQL differs from the SQLite the rest of orchestrate writes, in one place.

The queries are written once, in the SQL both engines share; this module turns a statement into
PostgreSQL's (placeholders, an empty IN list, SQLite's write lock), and the schema defines the
few SQLite functions the queries call (printf, total, group_concat: see schema.py)."""

from __future__ import annotations

import functools
import re

WRITE_LOCK = 7_746_001  # pg_advisory_xact_lock key: the commands' transactions, one at a time, as SQLite's
MIGRATION_LOCK = 7_746_002  # pg_advisory_lock key: one process migrates at a time
TOTAL_LOCK = 7_746_003  # with the agent's name hashed: claims of one agent with a max_total, one at a time
EMPTY_IN = re.compile(r"[\w.]+ (NOT )?IN \(\s*\)")  # a column in an empty list
INDEXED_BY = re.compile(r" INDEXED BY \w+")


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """`sql` as PostgreSQL reads it: `?` placeholders become `%s` (and a literal `%` doubles), and
    `column IN ()`, which SQLite accepts for an empty list, becomes FALSE (and NOT IN, TRUE); the
    indexes SQLite's planner is told to use, PostgreSQL's finds by its statistics."""
    sql = INDEXED_BY.sub("", sql.replace("%", "%%").replace("?", "%s"))
    return EMPTY_IN.sub(lambda m: "TRUE" if m[1] else "FALSE", sql)


def statements(sql: str) -> list[str]:
    """What one statement of the shared SQL runs as here: SQLite's BEGIN IMMEDIATE, which takes the
    write lock up front, becomes a transaction holding an advisory lock, so that the commands'
    read-then-write transactions keep SQLite's one-writer semantics."""
    word = sql.strip().upper()
    if word == "BEGIN IMMEDIATE":
        return ["BEGIN", f"SELECT pg_advisory_xact_lock({WRITE_LOCK})"]
    if word == "PRAGMA DATABASE_LIST":  # api.head: the file a head locks, to tell a frozen head
        return ["SELECT 0, 'main', current_setting('orchestrate.lock')"]
    if word.startswith("PRAGMA"):
        raise ValueError(f"no PostgreSQL equivalent for {sql!r}")
    return [translate(sql)]
