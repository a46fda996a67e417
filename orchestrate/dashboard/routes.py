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
from urllib.parse import unquote

from orchestrate import api, shapes
from orchestrate.core.config import Config
from orchestrate.core.errors import TaskNotFound, UsageError
from orchestrate.core.store import Task
from orchestrate.dashboard import data

PAGE = Path(__file__).with_name("page.html")
# The page is one file: nothing may load from elsewhere, and no other site may frame it.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:;"
    " frame-ancestors 'none'"
)
NUMBER_MAX = api.MAX_ID  # SQLite's largest integer, and a file's largest offset
ID_TEXT_MAX = 64  # characters: more is no task id, and int() is never asked to read thousands of digits
BODY_MAX = 64 * 1024  # bytes: a task's description, with room to spare


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
    body: bytes | None = b""  # None: over BODY_MAX

    def json(self) -> Any:
        """The body as JSON in UTF-8; anything else is a bad request."""
        if self.body is None:
            raise Refused(400, f"the request body is over {BODY_MAX // 1024} KiB")
        try:
            return json.loads(self.body.decode())
        except UnicodeDecodeError:
            raise Refused(400, "the request body is not UTF-8 text") from None
        except RecursionError:
            raise Refused(400, "the request body is JSON nested too deeply to read") from None
        except ValueError as exc:
            raise Refused(400, f"the request body is not JSON: {exc}") from None

    def param(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[-1]

    def number(self, name: str) -> int | None:
        """The query parameter `name` as a whole number from 0 to NUMBER_MAX; None if it is not given."""
        text = self.param(name)
        if not text:
            return None
        found = whole_number(text)
        if found is None:
            raise Refused(400, f"{name} must be a whole number from 0 to {NUMBER_MAX}, not {shown(text)}")
        return found

    @contextmanager
    def queue(self, create: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection of this request's own: in WAL mode readers never hold up the head. Without
        `create`, a queue that does not exist yet reads as an empty one; a change creates it."""
        with api.queue_of(self.cfg, create=create) as conn:
            yield conn


Route = Callable[[Request], Reply]
ROUTES: list[tuple[str, re.Pattern[str], Route]] = []


def route(method: str, pattern: str) -> Callable[[Route], Route]:
    def register(answer: Route) -> Route:
        ROUTES.append((method, re.compile(pattern + r"\Z"), answer))
        return answer

    return register


def whole_number(text: str) -> int | None:
    """`text` as a number from 0 to NUMBER_MAX in ASCII digits (not "١٢" or "²", which str.isdigit
    takes), or None."""
    if not (text.isascii() and text.isdigit()):
        return None
    significant = text.lstrip("0") or "0"
    if len(significant) > len(str(NUMBER_MAX)):
        return None  # before int(), which refuses to read more than 4300 digits
    value = int(significant)
    return value if value <= NUMBER_MAX else None


def shown(text: str) -> str:
    """A value as an error quotes it: never the whole of something huge."""
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _task_id(ref: str) -> int:
    """The task id in a path, as the CLI takes them; one that cannot name a task is a bad parameter (400),
    while a well-formed one naming no task is left to get_task's 404."""
    text = unquote(ref)
    try:
        found = api.parse_task_id(text) if len(text) <= ID_TEXT_MAX else 0
    except (UsageError, TaskNotFound):  # TaskNotFound: too many digits to be any task's
        found = 0
    if not 1 <= found <= NUMBER_MAX:
        raise Refused(400, f"task id must be task_001, task_1 or 1, from 1 to {NUMBER_MAX}; not {shown(text)}")
    return found


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


def _shown(conn: sqlite3.Connection, task: Task) -> dict[str, Any]:
    """The task as `show --json` prints it: with its runs, and the tasks its agents queued."""
    return shapes.show_json(task, api.runs(conn, task.id), api.children(conn, task.id))


@route("POST", "/api/tasks")
def add(req: Request) -> Reply:
    """What `orchestrate add "…" --priority … --agent … --after … [--plan]` does, through the same functions:
    the task as GET /api/tasks/ID shows it, with the notes the command prints beside."""
    from orchestrate.dashboard import adding  # it reads the CLI's validators, whose package loads typer

    try:
        new = adding.new_task(req.json(), req.cfg.task_queue.max_retries)
        with req.queue(create=True) as conn:
            [task_id] = api.add(conn, req.cfg, [new])
            shown = _shown(conn, api.get_task(conn, task_id))
            notes = api.notes(conn, req.cfg, [task_id], [new])[task_id]
    except TaskNotFound as exc:  # a task to wait for that is not there: the request is wrong, not the path
        raise Refused(400, str(exc)) from None
    return json_reply(shown | {"notes": notes}, 201)


@route("GET", "/api/tasks/([^/]+)")
def task(req: Request) -> Reply:
    with req.queue() as conn:
        return json_reply(_shown(conn, _task(conn, req.args[0])))


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
        if req.cfg.features.get("postgres") is not None:  # its runs may have run on other machines
            chunk = data.shared_log_chunk(conn, req.cfg, found, req.number("offset"))
            return json_reply({"task": found.name, "status": found.status, **chunk})
    chunk = data.log_chunk(api.log_path(req.cfg, found), req.number("offset"))
    return json_reply({"task": found.name, "status": found.status, **chunk})


@route("POST", "/api/tasks/([^/]+)/(retry|cancel)")
def change(req: Request) -> Reply:
    """What `orchestrate retry` and `orchestrate cancel` do, through the same functions."""
    transition = api.retry if req.args[1] == "retry" else api.cancel
    task_id = _task_id(req.args[0])
    with req.queue() as conn:
        transition(conn, task_id)
        return json_reply(_shown(conn, api.get_task(conn, task_id)))


@route("POST", "/api/(pause|resume)")
def hold(req: Request) -> Reply:
    """What `orchestrate pause` and `orchestrate resume` do: the status as GET /api/status shows it."""
    with req.queue(create=True) as conn:
        (api.pause if req.args[0] == "pause" else api.resume)(conn)
        return json_reply(data.status(conn, req.cfg))


@route("GET", "/api/completions")
def completions(req: Request) -> Reply:
    with req.queue() as conn:
        return json_reply(data.completions(conn, req.cfg))


@route("GET", "/metrics")
def metrics(req: Request) -> Reply:
    with req.queue() as conn:
        return Reply(200, data.metrics(conn, req.cfg).encode(), "text/plain; version=0.0.4; charset=utf-8")


def dispatch(cfg: Config, method: str, path: str, query: dict[str, list[str]], body: bytes | None = b"") -> Reply:
    """The answer of the route that takes `method` on `path`."""
    allowed = []
    for verb, pattern, answer in ROUTES:
        if match := pattern.match(path):
            if verb == method:
                return answer(Request(cfg, match.groups(), query, body))
            allowed.append(verb)
    if allowed:
        return json_reply({"error": f"{path} takes {' or '.join(allowed)}, not {method}"}, 405)
    raise Refused(404, f"no such page: {path}")
