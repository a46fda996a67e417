"""The live web dashboard's server: the standard library's threaded HTTP server with the token
and same-origin rules, run by `orchestrate dashboard` or in a thread of the head."""

from __future__ import annotations

import errno
import hmac
import io
import logging
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from orchestrate.configfile import is_loopback
from orchestrate.core.config import Config
from orchestrate.core.errors import InvalidTransition, OrchestrateError, QueueBusy, TaskNotFound, UsageError
from orchestrate.dashboard import settings
from orchestrate.dashboard.routes import BODY_MAX, NUMBER_MAX, Refused, Reply, dispatch, json_reply, shown, whole_number

log = logging.getLogger(__name__)
DEFAULT_PORT = 8765
STATUS_OF = {TaskNotFound: 404, UsageError: 400, InvalidTransition: 409, QueueBusy: 503}
DRAIN_MAX = 1024 * 1024  # a body too big to take but this small is read and dropped, so its 400 arrives


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
            body = self._body()
            remember = self._admit(method, query)
            if remember and method == "GET" and url.path == "/":  # out of the address bar and the history
                reply = Reply(303, b"", "text/plain", (("Location", "/"),))
            else:
                reply = dispatch(self.server.cfg, method, url.path, query, body)
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

    def _body(self) -> bytes | None:
        """The request's body, read whatever the route (so the connection stays usable); None if it is
        over BODY_MAX."""
        text = self.headers.get("Content-Length", "0").strip()
        length = whole_number(text)
        chunked = "Transfer-Encoding" in self.headers
        if length is None or chunked or length > DRAIN_MAX:
            self.close_connection = True  # what follows on this connection cannot be found
            if length is None:  # no number, "²" (which str.isdigit takes) or beyond 64 bits: malformed
                raise Refused(400, f"Content-Length must be a number of bytes, 0 to {NUMBER_MAX}, not {shown(text)}")
            if chunked:
                raise Refused(400, "send the body with a Content-Length, not Transfer-Encoding")
            return None  # left unread: the client may see the connection reset before the answer
        body = self.rfile.read(length)
        return body if length <= BODY_MAX else None

    def _send(self, reply: Reply) -> None:
        with self._one_write():
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        with self._one_write():  # a request the standard library refuses: a malformed one, HEAD, PUT...
            super().send_error(code, message, explain)

    @contextmanager
    def _one_write(self) -> Iterator[None]:
        """Send what is written meanwhile in one write when done. Headers and body in two would stall
        each reply on a kept-alive connection by 40 ms: Nagle's algorithm holds the body back until
        the client acknowledges the headers, which it delays hoping to send the ack with data."""
        sock, self.wfile = self.wfile, io.BytesIO()
        try:
            yield
            data = self.wfile.getvalue()
        finally:
            self.wfile = sock
        self.wfile.write(data)

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
    shown = settings(cfg)
    server = open_server(cfg, shown.host, port, shown.token)
    # A short poll interval: the head's stop waits for the serving thread to notice.
    threading.Thread(target=server.serve_forever, args=(0.1,), name="dashboard", daemon=True).start()
    log.info("dashboard on %s", server.url)
    return server
