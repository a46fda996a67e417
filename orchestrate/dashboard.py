"""The live web dashboard: one page and a JSON API over the queue, on the standard library's
threaded HTTP server, served by `orchestrate dashboard` or by a thread of the head."""

from __future__ import annotations

import errno
import hmac
import json
import logging
import re
import signal
import socket
import socketserver
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlsplit

from orchestrate import cli_render as render
from orchestrate import cli_store
from orchestrate import dashboard_data as data
from orchestrate.cli_config import is_loopback
from orchestrate.config import Config
from orchestrate.errors import InvalidTransition, OrchestrateError, QueueBusy, TaskNotFound, UsageError
from orchestrate.store import Task

log = logging.getLogger(__name__)
DEFAULT_PORT = 8765
PAGE = Path(__file__).with_name("dashboard.html")
# The page is one file: nothing may load from elsewhere, and no other site may frame it.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:;"
    " frame-ancestors 'none'"
)
STATUS_OF = {TaskNotFound: 404, UsageError: 400, InvalidTransition: 409, QueueBusy: 503}
BODY_MAX = 64 * 1024  # the API takes no request body; one is read and dropped to keep the connection usable


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
        with cli_store.opened(self.cfg.task_queue.database, create=False) as conn:
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
        return cli_store.parse_task_id(ref)
    except UsageError as exc:  # in a path, a malformed id names no task
        raise Refused(404, str(exc)) from None


def _task(conn: sqlite3.Connection, ref: str) -> Task:
    return cli_store.get_task(conn, _task_id(ref))


@route("GET", "/")
def page(req: Request) -> Reply:
    return Reply(200, PAGE.read_bytes(), "text/html; charset=utf-8", (("Content-Security-Policy", PAGE_POLICY),))


@route("GET", "/api/status")
def status(req: Request) -> Reply:
    with req.queue() as conn:
        return json_reply(data.status(conn))


@route("GET", "/api/tasks")
def tasks(req: Request) -> Reply:
    wanted = req.param("status", "all")
    if wanted not in cli_store.LIST_FILTERS:
        raise Refused(400, f"status must be one of {', '.join(cli_store.LIST_FILTERS)}, not {wanted!r}")
    with req.queue() as conn:
        found = data.tasks(conn, wanted, req.param("q").strip(), req.number("limit"))
    return json_reply([render.task_json(t) for t in found])


@route("GET", "/api/tasks/([^/]+)")
def task(req: Request) -> Reply:
    with req.queue() as conn:
        return json_reply(render.task_json(_task(conn, req.args[0])))


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
    chunk = data.log_chunk(cli_store.log_path(req.cfg, found), req.number("offset"))
    return json_reply({"task": found.name, "status": found.status, **chunk})


@route("POST", "/api/tasks/([^/]+)/(retry|cancel)")
def change(req: Request) -> Reply:
    """What `orchestrate retry` and `orchestrate cancel` do, through the same functions."""
    transition = cli_store.retry if req.args[1] == "retry" else cli_store.cancel
    task_id = _task_id(req.args[0])
    with req.queue() as conn:
        transition(conn, task_id)
        return json_reply(render.task_json(cli_store.get_task(conn, task_id)))


@route("GET", "/api/completions")
def completions(req: Request) -> Reply:
    with req.queue() as conn:
        return json_reply(data.completions(conn))


@route("GET", "/metrics")
def metrics(req: Request) -> Reply:
    with req.queue() as conn:
        return Reply(200, data.metrics(conn).encode(), "text/plain; version=0.0.4; charset=utf-8")


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"  # keep-alive: the page asks several times a second
    timeout = 60  # an idle connection gives its thread back

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            self._drop_body()
            remember = self._admit(method, query)
            if remember and method == "GET" and url.path == "/":  # out of the address bar and the history
                reply = Reply(303, b"", "text/plain", (("Location", "/"),))
            else:
                reply = self._dispatch(method, url.path, query)
            reply = reply._replace(headers=reply.headers + remember)
        except Refused as exc:
            challenge = (("WWW-Authenticate", "Bearer"),) if exc.status == 401 else ()
            reply = json_reply({"error": str(exc)}, exc.status)._replace(headers=challenge)
        except OrchestrateError as exc:
            reply = json_reply({"error": str(exc)}, STATUS_OF.get(type(exc), 500))
        except Exception:  # a bug: the page gets a sentence, the log the traceback
            log.exception("dashboard: %s %s failed", method, url.path)
            reply = json_reply({"error": "the dashboard failed to answer; its log has the details"}, 500)
        self._send(reply)

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]]) -> Reply:
        allowed = []
        for verb, pattern, answer in ROUTES:
            if match := pattern.match(path):
                if verb == method:
                    return answer(Request(self.server.cfg, match.groups(), query))
                allowed.append(verb)
        if allowed:
            return json_reply({"error": f"{path} takes {' or '.join(allowed)}, not {method}"}, 405)
        raise Refused(404, f"no such page: {path}")

    def _admit(self, method: str, query: dict[str, list[str]]) -> tuple[tuple[str, str], ...]:
        """Refuse what must not be answered; the header that remembers a token given in the URL."""
        host = self.headers.get("Host", "")
        origin = self.headers.get("Origin")
        if method == "POST" and origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            raise Refused(403, "a change must come from the dashboard's own page")  # another site's form
        token = self.server.token
        if token is None:
            # Loopback only; a page of another site that renamed itself 127.0.0.1 (DNS rebinding) is turned away.
            if host and _hostname(host) not in self.server.local_names:
                raise Refused(403, f"this dashboard answers to {self.server.url}, not to {host}")
            return ()
        bearer = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        in_url = query.get("token", [""])[-1]
        if self._matches(in_url):
            cookie = f"{self.server.cookie}={quote(in_url, safe='')}; HttpOnly; SameSite=Strict; Path=/"
            return (("Set-Cookie", cookie),)
        if self._matches(bearer) or self._matches(self._cookie()):
            return ()
        raise Refused(401, "a token is required: send Authorization: Bearer TOKEN, or open the page with ?token=TOKEN")

    def _matches(self, offered: str) -> bool:
        token = self.server.token or ""
        return bool(offered) and hmac.compare_digest(offered.encode(), token.encode())

    def _cookie(self) -> str:
        try:
            morsel = SimpleCookie(self.headers.get("Cookie", "")).get(self.server.cookie)
        except CookieError:
            return ""
        return unquote(morsel.value) if morsel else ""

    def _drop_body(self) -> None:
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > BODY_MAX:
            self.close_connection = True  # what follows on this connection cannot be found
            return
        self.rfile.read(int(length))

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("dashboard: " + format, *args)  # the page polls: one line per request would bury the rest


def _hostname(host: str) -> str | None:
    """The name in a Host header, without its port or brackets."""
    try:
        return urlsplit(f"//{host}").hostname
    except ValueError:  # "[::1", say
        return None


class Server(ThreadingHTTPServer):
    """The dashboard's server: a thread per connection, each reading the queue on its own."""

    daemon_threads = True  # a page left open must not keep the process alive

    def __init__(self, cfg: Config, host: str, port: int, token: str | None) -> None:
        self.cfg, self.host, self.token = cfg, host, token or None
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), Handler)
        named = f"[{host}]" if ":" in host else host
        self.url = f"http://{named}:{self.server_port}/"
        self.local_names = {"localhost", "127.0.0.1", "::1", host.lower()}
        self.cookie = f"orchestrate_token_{self.server_port}"  # a cookie is shared by every port of a host

    def server_bind(self) -> None:
        # HTTPServer's own looks the host up in DNS, which can take seconds on a machine offline.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.host, self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # the browser went away, or an idle connection timed out: nothing to report
        log.exception("dashboard: a connection from %s failed", client_address[0])

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def open_server(cfg: Config, host: str, port: int, token: str | None) -> Server:
    """A dashboard server listening on host:port (not answering yet); `port` 0 picks a free one."""
    if not token and not is_loopback(host):
        raise UsageError(
            f"the dashboard on {host}, which is not loopback, needs a token (--token, or dashboard.token in"
            " the config): anyone who can reach it could cancel tasks"
        )
    try:
        return Server(cfg, host, port, token)
    except OSError as exc:
        why = "the port is in use (choose another port)" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise OrchestrateError(f"cannot serve the dashboard on {host}:{port}: {why}") from None


def serve_until_stopped(server: Server) -> None:
    """Answer requests in this thread until Ctrl-C or SIGTERM."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def start(cfg: Config, port: int) -> Server:
    """Serve the dashboard from a daemon thread of this process: the head's, when its config asks."""
    server = open_server(cfg, cfg.dashboard.host, port, cfg.dashboard.token)
    # A short poll interval: the head's stop waits for the serving thread to notice.
    threading.Thread(target=server.serve_forever, args=(0.1,), name="dashboard", daemon=True).start()
    log.info("dashboard on %s", server.url)
    return server
