"""What each of the dashboard's URLs answers: the page, the JSON API and /metrics, one small
function per route, reading the queue through the functions and JSON shapes the CLI uses."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from orchestrate import api, shapes
from orchestrate.core.config import Config
from orchestrate.core.errors import UsageError
from orchestrate.core.store import Task
from orchestrate.dashboard import data

PAGE = Path(__file__).with_name("page.html")
# The page is one file: nothing may load from elsewhere, and no other site may frame it.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:;"
    " frame-ancestors 'none'"
)


class Reply(NamedTuple):
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def json_reply(value: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(value).encode())


class Refused(Exception):
    """A request the dashboard does not answer: its HTTP status, and a sentence for {"error": ...}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Request(NamedTuple):
    cfg: Config
    args: tuple[str, ...]  # what the route's pattern captured from the path
    query: dict[str, list[str]]

    def param(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[-1]

    def number(self, name: str) -> int | None:
        text = self.param(name)
        if not text:
            return None
        if not text.isdigit():
            raise Refused(400, f"{name} must be a whole number, 0 or more, not {text!r}")
        return int(text)

    @contextmanager
    def queue(self) -> Iterator[sqlite3.Connection]:
        """A connection of this request's own: in WAL mode readers never hold up the head."""
        with api.opened(self.cfg.task_queue.database, create=False) as conn:
            yield conn


Route = Callable[[Request], Reply]
ROUTES: list[tuple[str, re.Pattern[str], Route]] = []


def route(method: str, pattern: str) -> Callable[[Route], Route]:
    def register(answer: Route) -> Route:
        ROUTES.append((method, re.compile(pattern + r"\Z"), answer))
        return answer

    return register


def _task_id(ref: str) -> int:
    try:
        return api.parse_task_id(ref)
    except UsageError as exc:  # in a path, a malformed id names no task
        raise Refused(404, str(exc)) from None


def _task(conn: sqlite3.Connection, ref: str) -> Task:
    return api.get_task(conn, _task_id(ref))


@route("GET", "/")
def page(req: Request) -> Reply:
    return Reply(200, PAGE.read_bytes(), "text/html; charset=utf-8", (("Content-Security-Policy", PAGE_POLICY),))


@route("GET", "/api/status")
def status(req: Request) -> Reply:
    with req.queue() as conn:
        return json_reply(data.status(conn, req.cfg))


@route("GET", "/api/tasks")
def tasks(req: Request) -> Reply:
    wanted = req.param("status", "all")
    if wanted not in api.LIST_FILTERS:
        raise Refused(400, f"status must be one of {', '.join(api.LIST_FILTERS)}, not {wanted!r}")
    with req.queue() as conn:
        found = data.tasks(conn, wanted, req.param("q").strip(), req.number("limit"))
    return json_reply([shapes.task_json(t) for t in found])


@route("GET", "/api/tasks/([^/]+)")
def task(req: Request) -> Reply:
    with req.queue() as conn:
        return json_reply(shapes.task_json(_task(conn, req.args[0])))


@route("GET", "/api/tasks/([^/]+)/output")
def output(req: Request) -> Reply:
    with req.queue() as conn:
        found = _task(conn, req.args[0])
    text = data.output_text(req.cfg, found)
    if text is None:
        raise Refused(404, f"{found.name} has no output file yet: orchestrate writes it when the task ends")
    return Reply(200, text.encode(), "text/plain; charset=utf-8")


@route("GET", "/api/tasks/([^/]+)/log")
def log_tail(req: Request) -> Reply:
    with req.queue() as conn:
        found = _task(conn, req.args[0])
    chunk = data.log_chunk(api.log_path(req.cfg, found), req.number("offset"))
    return json_reply({"task": found.name, "status": found.status, **chunk})


@route("POST", "/api/tasks/([^/]+)/(retry|cancel)")
def change(req: Request) -> Reply:
    """What `orchestrate retry` and `orchestrate cancel` do, through the same functions."""
    transition = api.retry if req.args[1] == "retry" else api.cancel
    task_id = _task_id(req.args[0])
    with req.queue() as conn:
        transition(conn, task_id)
        return json_reply(shapes.task_json(api.get_task(conn, task_id)))


@route("GET", "/api/completions")
def completions(req: Request) -> Reply:
    with req.queue() as conn:
        return json_reply(data.completions(conn))


@route("GET", "/metrics")
def metrics(req: Request) -> Reply:
    with req.queue() as conn:
        return Reply(200, data.metrics(conn).encode(), "text/plain; version=0.0.4; charset=utf-8")


def dispatch(cfg: Config, method: str, path: str, query: dict[str, list[str]]) -> Reply:
    """The answer of the route that takes `method` on `path`."""
    allowed = []
    for verb, pattern, answer in ROUTES:
        if match := pattern.match(path):
            if verb == method:
                return answer(Request(cfg, match.groups(), query))
            allowed.append(verb)
    if allowed:
        return json_reply({"error": f"{path} takes {' or '.join(allowed)}, not {method}"}, 405)
    raise Refused(404, f"no such page: {path}")
