"""The web dashboard: the installed `orchestrate dashboard` (or a head) serving a real queue,
asked with the standard library's HTTP client, and once through headless Chromium."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

import pytest
from conftest import ORCHESTRATE, orchestrate, wait_until
from test_head import CONFIG, configure, ok, status, task


class Served(NamedTuple):
    url: str
    process: subprocess.Popen[str]


class Response(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """Start `orchestrate dashboard ARGS` (on a free port unless ARGS name one); each is stopped at
    teardown, and none may have printed a traceback."""
    running: list[subprocess.Popen[str]] = []

    def start(*args: str) -> Served:
        argv = [ORCHESTRATE, "dashboard", *args, *([] if "--port" in args else ["--port", "0"])]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        running.append(process)
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else ""
        assert line.startswith("dashboard on http://"), line
        return Served(line.split()[2], process)

    yield start
    for process in running:
        if process.poll() is None:
            process.terminate()
        try:
            _, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        assert "Traceback" not in err, err


def request(url: str, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> Response:
    """One request to the dashboard at `url` (through loopback, whatever address it listens on)."""
    connection = http.client.HTTPConnection("127.0.0.1", urlsplit(url).port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        answer = connection.getresponse()
        return Response(answer.status, answer.headers, answer.read())
    finally:
        connection.close()


def api(url: str, path: str, headers: dict[str, str] | None = None) -> Any:
    answer = request(url, path, headers=headers)
    assert answer.status == 200, (path, answer.status, answer.body)
    assert answer.headers["Content-Type"] == "application/json"
    return answer.json()


def cli_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json"))


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def a_small_queue() -> None:
    ok("add", "First: write the parser")
    ok("add", "Second: test the parser", "--after", "1", "--priority", "high")
    ok("add", "Third: 100% coverage")
    ok("cancel", "3")


def test_the_api_answers_in_the_commands_shapes(serve: Callable[..., Served]) -> None:
    a_small_queue()
    url = serve().url
    shown = api(url, "/api/status")
    cli = cli_json("status")
    assert {key: shown[key] for key in cli} == cli  # status --json exactly, and more beside it
    assert shown["cost_usd"] == 0
    assert api(url, "/api/tasks") == cli_json("tasks")
    for wanted in ("pending", "blocked", "cancelled", "completed"):
        assert api(url, f"/api/tasks?status={wanted}") == cli_json("tasks", "--status", wanted), wanted
    assert api(url, "/api/tasks/task_002") == api(url, "/api/tasks/2") == cli_json("show", "task_002")


def test_the_task_list_searches_and_keeps_the_newest(serve: Callable[..., Served]) -> None:
    a_small_queue()
    url = serve().url

    def ids(query: str) -> list[str]:
        return [t["id"] for t in api(url, f"/api/tasks?{query}")]

    assert ids("q=PARSER") == ["task_001", "task_002"]  # any case
    assert ids("q=task_003") == ["task_003"]
    assert ids("q=%25%20coverage") == ["task_003"]
    assert ids("q=%25coverage") == []  # % is a character, not a wildcard
    assert ids("q=parser&status=blocked") == ["task_002"]
    assert ids("limit=2") == ["task_002", "task_003"]  # the newest, oldest first as everywhere
    assert ids("limit=0") == []


def test_errors_are_json_with_the_right_status(project: Path, serve: Callable[..., Served]) -> None:
    a_small_queue()
    url = serve().url
    for method, path, code in [
        ("GET", "/api/tasks/task_999", 404),
        ("GET", "/api/tasks/nonsense", 400),  # not a task id: a bad parameter
        ("GET", "/api/tasks/1/output", 404),  # it has not run
        ("GET", "/no/such/page", 404),
        ("GET", "/api/tasks?status=bogus", 400),
        ("GET", "/api/tasks?limit=-1", 400),
        ("GET", "/api/tasks/1/log?offset=x", 400),
        ("POST", "/api/tasks/task_999/retry", 404),
        ("POST", "/api/tasks/1/retry", 409),  # pending: nothing to retry
        ("POST", "/api/status", 405),
        ("GET", "/api/tasks/1/cancel", 405),
    ]:
        answer = request(url, path, method)
        assert answer.status == code, (method, path, answer.status, answer.body)
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.json()["error"], (method, path)
    assert "task_999 does not exist" in request(url, "/api/tasks/task_999").json()["error"]
    (project / ".orchestrate/logs/task_001.log").mkdir(parents=True)  # where its log would be, unreadable
    unreadable = request(url, "/api/tasks/1/log")
    assert unreadable.status == 500 and unreadable.json()["error"].startswith("cannot read ")


LARGEST = 2**63 - 1  # SQLite's largest integer, and a file's largest offset
# negative, 10**30, one past 64 bits, Arabic-Indic and superscript digits, more digits than int() parses
BAD_NUMBERS = ("-1", str(10**30), str(LARGEST + 1), "\u0661\u0662", "\u00b2", "1" * 5000)


def test_a_number_out_of_range_or_not_ascii_is_a_400_naming_it(serve: Callable[..., Served]) -> None:
    """Each was a 500 with a traceback on the server's stderr, or (Arabic-Indic digits) silently read as 12."""
    a_small_queue()
    served = serve()
    for bad in BAD_NUMBERS:
        value = quote(bad)
        for method, path, name in [
            ("GET", f"/api/tasks?limit={value}", "limit"),
            ("GET", f"/api/tasks/1/log?offset={value}", "offset"),
            ("GET", f"/api/tasks/{value}", "task id"),
            ("GET", f"/api/tasks/task_{value}/log", "task id"),
            ("GET", f"/api/tasks/{value}/output", "task id"),
            ("POST", f"/api/tasks/{value}/retry", "task id"),
            ("POST", f"/api/tasks/task_{value}/cancel", "task id"),
        ]:
            answer = request(served.url, path, method)
            assert (answer.status, answer.headers["Content-Type"]) == (400, "application/json"), (path, answer.body)
            error = answer.json()["error"]
            assert error.startswith(f"{name} must be ") and len(error) < 160, (path, error)
    assert request(served.url, "/api/tasks/0").status == 400  # ids start at 1
    for method, path in [
        ("GET", f"/api/tasks/{LARGEST}"),
        ("GET", "/api/tasks/task_999/log"),
        ("POST", f"/api/tasks/{LARGEST}/cancel"),
    ]:
        assert request(served.url, path, method).status == 404, path  # well-formed, but no such task
    assert api(served.url, f"/api/tasks?limit={LARGEST}") == cli_json("tasks")
    assert api(served.url, f"/api/tasks/task%5F001/log?offset={LARGEST}")["task"] == "task_001"  # %5F is _
    for length in ("\u00b2", "-1", "1" * 5000, "12abc"):  # every route reads Content-Length
        answer = request(served.url, "/api/tasks/1/cancel", "POST", {"Content-Length": length})
        assert answer.status == 400 and answer.json()["error"].startswith("Content-Length must be "), length
    assert task(1)["status"] == "pending"
    served.process.send_signal(signal.SIGTERM)
    _, err = served.process.communicate(timeout=10)
    assert err == ""


def test_retry_and_cancel_change_the_queue_as_the_commands_do(serve: Callable[..., Served]) -> None:
    a_small_queue()
    url = serve().url
    answer = request(url, "/api/tasks/task_001/cancel", "POST")
    assert answer.status == 200 and answer.json()["status"] == "cancelled"
    assert task(1)["status"] == "cancelled"
    again = request(url, "/api/tasks/1/cancel", "POST")
    assert again.status == 409
    assert again.json() == {"error": "task_001 is cancelled; only pending or running tasks can be cancelled"}
    answer = request(url, "/api/tasks/3/retry", "POST", {"Origin": url.rstrip("/")})  # as the page sends it
    assert answer.status == 200 and answer.json()["status"] == "pending"
    assert task(3)["status"] == "pending" and task(3)["attempts"] == 0


def test_another_site_cannot_change_or_read_the_queue(serve: Callable[..., Served]) -> None:
    a_small_queue()
    url = serve().url
    forged = request(url, "/api/tasks/1/cancel", "POST", {"Origin": "https://evil.example"})
    assert forged.status == 403
    assert task(1)["status"] == "pending"
    rebound = request(url, "/api/tasks", headers={"Host": f"evil.example:{urlsplit(url).port}"})
    assert rebound.status == 403  # DNS rebinding: another site's name for 127.0.0.1
    assert request(url, "/api/tasks", headers={"Host": f"localhost:{urlsplit(url).port}"}).status == 200


def test_a_running_task_s_log_is_followed_by_offset_and_its_output_served(
    project: Path, fakes: Path, serve: Callable[..., Served]
) -> None:
    configure(project)
    ok("start")
    ok("add", "Report progress slowly [fake:sleep=2]")
    url = serve().url
    first = wait_until(
        lambda: (chunk := api(url, "/api/tasks/1/log?offset=0"))["status"] == "running" and chunk["text"] and chunk,
        message="the running task's log",
    )
    assert first["offset"] == 0 and first["text"].startswith("=== orchestrate: attempt 1 on claude-1")
    assert first["next"] == len(first["text"].encode())
    wait_until(lambda: api(url, "/api/tasks/1")["status"] == "completed", message="task_001 to complete")
    rest = api(url, f"/api/tasks/1/log?offset={first['next']}")
    assert rest["offset"] == first["next"] and rest["next"] == rest["size"]
    assert '"type":"result"' in rest["text"].replace(" ", "")
    assert (first["text"] + rest["text"]).encode() == (project / ".orchestrate/logs/task_001.log").read_bytes()
    tail = api(url, "/api/tasks/1/log")  # no offset: the end of the log
    assert tail["next"] == tail["size"] and tail["text"]
    assert api(url, f"/api/tasks/1/log?offset={tail['size'] + 100}")["offset"] == 0  # a log started afresh
    output = request(url, "/api/tasks/task_001/output")
    assert output.status == 200 and output.headers["Content-Type"].startswith("text/plain")
    assert output.body == (project / "context/agent_outputs/task_001_output.md").read_bytes()
    ok("stop")


def test_metrics_are_prometheus_text(project: Path, fakes: Path, serve: Callable[..., Served]) -> None:
    configure(project, claude=2, retries=0)
    ok("start")
    ok("add", "quick one")
    ok("add", "a second [fake:sleep=1]")
    ok("add", "Invalid task")
    wait_until(lambda: status()["counts"]["pending"] + status()["counts"]["running"] == 0, message="all three run")
    # the head reports its slots with its heartbeat, a moment after it records the results
    wait_until(lambda: [a["state"] for a in status()["agents"]] == ["idle", "idle"], message="both agents idle")
    answer = request(serve().url, "/metrics")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples, types = parse_prometheus(answer.body.decode())
    assert types == {
        "orchestrate_head_running": "gauge",
        "orchestrate_tasks": "gauge",
        "orchestrate_agents": "gauge",
        "orchestrate_task_duration_seconds": "histogram",
        "orchestrate_cost_usd_total": "counter",
    }
    assert samples["orchestrate_head_running"] == 1
    counts = status()["counts"]
    for state in ("pending", "running", "completed", "failed", "cancelled"):
        assert samples[f'orchestrate_tasks{{status="{state}"}}'] == counts[state]
    assert samples['orchestrate_agents{state="idle"}'] == 2 and samples['orchestrate_agents{state="busy"}'] == 0
    buckets = [v for k, v in samples.items() if k.startswith("orchestrate_task_duration_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == samples["orchestrate_task_duration_seconds_count"] == 2
    assert samples['orchestrate_task_duration_seconds_bucket{le="1"}'] <= 1  # the second slept a second
    assert samples["orchestrate_task_duration_seconds_sum"] >= 1
    costs = [t["cost_usd"] or 0 for t in cli_json("tasks")]
    assert samples["orchestrate_cost_usd_total"] == pytest.approx(sum(costs)) and sum(costs) > 0
    ok("stop")


def parse_prometheus(text: str) -> tuple[dict[str, float], dict[str, str]]:
    """Samples by name with labels, and each family's type; fails on a line of any other form."""
    samples, types = {}, {}
    for line in text.splitlines():
        if match := re.fullmatch(r"# TYPE (\w+) (counter|gauge|histogram|summary|untyped)", line):
            types[match[1]] = match[2]
        elif not line.startswith("# HELP "):
            match = re.fullmatch(r'(\w+(?:\{\w+="[^"]*"\})?) (\S+)', line)
            assert match, line
            samples[match[1]] = float(match[2])
    return samples, types


def test_a_host_beyond_loopback_needs_a_token(serve: Callable[..., Served], monkeypatch: pytest.MonkeyPatch) -> None:
    line = one_line_error(orchestrate("dashboard", "--host", "0.0.0.0", "--port", "0", timeout=30), 2)
    assert "needs a token" in line
    url = serve("--host", "0.0.0.0", "--token", "s3cret t0ken").url
    assert url.startswith("http://0.0.0.0:")
    for path in ("/", "/api/status", "/api/tasks", "/metrics", "/no/such/page"):
        refused = request(url, path)
        assert refused.status == 401, path
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert "token" in refused.json()["error"]
        assert request(url, path, headers={"Authorization": "Bearer wrong"}).status == 401
        allowed = request(url, path, headers={"Authorization": "Bearer s3cret t0ken"})
        assert allowed.status == (404 if path == "/no/such/page" else 200), path
    in_url = request(url, "/api/status?token=s3cret%20t0ken")
    assert in_url.status == 200
    cookie = in_url.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert request(url, "/metrics", headers={"Cookie": cookie.split(";")[0]}).status == 200
    page = request(url, "/?token=s3cret%20t0ken")
    assert (page.status, page.headers["Location"]) == (303, "/")  # the token leaves the address bar
    assert request(url, "/api/status?token=nope").status == 401
    monkeypatch.setenv("ORCHESTRATE_DASHBOARD_TOKEN", "from-env")
    from_env = serve("--host", "0.0.0.0").url
    assert request(from_env, "/api/status").status == 401
    assert request(from_env, "/api/status", headers={"Authorization": "Bearer from-env"}).status == 200


def test_a_port_in_use_is_one_line(project: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(orchestrate("dashboard", "--port", str(port), timeout=30), 1)
    expected = f"orchestrate: cannot serve the dashboard on 127.0.0.1:{port}: the port is in use (choose another port)"
    assert line == expected


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_cleanly(serve: Callable[..., Served], sig: signal.Signals) -> None:
    served = serve()
    assert api(served.url, "/api/status")["head"]["running"] is False
    served.process.send_signal(sig)
    _, err = served.process.communicate(timeout=10)
    assert (served.process.returncode, err) == (0, "")
    with pytest.raises(ConnectionRefusedError):
        request(served.url, "/api/status")


def test_the_page_is_one_self_contained_file(serve: Callable[..., Served]) -> None:
    answer = request(serve().url, "/")
    assert answer.status == 200 and answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    html = answer.body.decode()
    assert set(re.findall(r"https?://[^\s\"'`)]+", html)) == {"http://www.w3.org/2000/svg"}  # SVG's namespace only
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=\"(?!data:)", html)


def test_the_head_serves_it_when_the_config_says(project: Path, fakes: Path, serve: Callable[..., Served]) -> None:
    port = free_port()
    (project / "config.yaml").write_text(
        CONFIG.format(claude=1, retries=0, more="") + f"dashboard: {{port: {port}, token: t0k}}\n"
    )
    ok("start")
    url, auth = f"http://127.0.0.1:{port}/", {"Authorization": "Bearer t0k"}
    shown = api(url, "/api/status", auth)
    assert shown["head"] == status()["head"] and shown["head"]["running"] is True
    assert request(url, "/api/status").status == 401  # the config's token
    ok("add", "hello from the head")
    wait_until(lambda: api(url, "/api/tasks/1", auth)["status"] == "completed", message="task_001 to complete")
    # `orchestrate dashboard` takes the config's port too, which the head holds
    assert "port is in use" in one_line_error(orchestrate("dashboard", timeout=30), 1)
    ok("stop")
    with pytest.raises(ConnectionRefusedError):
        request(url, "/api/status")
    alone = serve().url  # `orchestrate dashboard` takes the config's token as well
    assert request(alone, "/api/status").status == 401
    assert api(alone, "/api/status", auth)["head"]["running"] is False


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("{port: 0}", "dashboard.port: expected a port number, 1 to 65535, got 0"),
        ("{port: http}", "dashboard.port: expected a port number, 1 to 65535, got 'http'"),
        ("{host: 0.0.0.0}", "dashboard.token: required when dashboard.host is '0.0.0.0', which is not loopback"),
        ("{colour: red}", "dashboard.colour: unknown key (known: port, host, token)"),
    ],
)
def test_the_dashboard_section_is_validated(section: str, message: str) -> None:
    Path("config.yaml").write_text(f"dashboard: {section}\n")
    assert one_line_error(orchestrate("status"), 2).startswith(f"orchestrate: config.yaml: {message}")


def test_the_quick_commands_never_import_the_server() -> None:
    ok("add", "x")
    code = (
        "import sys; from orchestrate.cli import main\nsys.argv = ['orchestrate', 'status']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        # the package itself holds only the dashboard's settings, which the configuration reads
        "print(sorted(m for m in sys.modules if m == 'http.server' or m.startswith('orchestrate.dashboard.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr


def test_each_reply_goes_out_in_one_write(serve: Callable[..., Served]) -> None:
    """Headers and body in one segment: in two, Nagle's algorithm holds the body of every reply
    on a kept-alive connection until the client's delayed ack of the headers, 40 ms later."""
    a_small_queue()
    port = urlsplit(serve().url).port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        for path in ["/api/status", "/metrics", "/api/tasks?status=pending&limit=500", "/api/tasks/9", "/"] * 3:
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            assert _one_read_is_whole(conn), path
        conn.sendall(f"PUT / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())  # the standard library's 501
        assert _one_read_is_whole(conn)


def _one_read_is_whole(conn: socket.socket) -> bool:
    """Whether the first read once the reply begins to arrive holds all of it."""
    select.select([conn], [], [], 10)
    data = conn.recv(1 << 20)
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"\r\nContent-Length: (\d+)", head)
    return length is not None and len(body) == int(length[1])


def durations(conn: Any) -> dict[str, float]:
    """The run time histogram as /metrics had it before it was kept in memory: from every completed task."""
    took = "finished_at - started_at FROM tasks WHERE status = 'completed' AND started_at IS NOT NULL"
    found = {f'orchestrate_task_duration_seconds_bucket{{le="{le}"}}': 0.0 for le in (1, 5, 10, 30, 60, 120)}
    found |= {f'orchestrate_task_duration_seconds_bucket{{le="{le}"}}': 0.0 for le in (300, 600, 1800, 3600)}
    n = 0
    for (d,) in conn.execute(f"SELECT {took}"):
        n += 1
        for key in found:
            found[key] += d <= float(key.split('"')[1])
    prefix = "orchestrate_task_duration_seconds"
    return (
        found
        | {f'{prefix}_bucket{{le="+Inf"}}': n, f"{prefix}_count": n}
        | {
            f"{prefix}_sum": pytest.approx(
                conn.execute(f"SELECT total({took.replace(' FROM', ') FROM', 1)}").fetchone()[0]
            )
        }
    )


def test_the_histogram_and_chart_follow_completions_deletions_and_retries(
    project: Path, serve: Callable[..., Served]
) -> None:
    from orchestrate import api as queue

    now = time.time()
    with queue.opened(project / "tasks.db") as conn:
        queue.add_tasks(conn, [queue.NewTask(f"t{i}") for i in range(40)])
        url = serve().url
        complete = "UPDATE tasks SET status = 'completed', started_at = ? - ?, finished_at = ? WHERE id = ?"

        def check() -> None:
            samples, _ = parse_prometheus(request(url, "/metrics").body.decode())
            assert {k: v for k, v in samples.items() if k.startswith("orchestrate_task_duration")} == durations(conn)
            chart = api(url, "/api/completions")
            assert sum(chart["counts"]) == status()["counts"]["completed"]

        check()  # none yet
        for i in range(1, 21):  # in the order they finished, then one that committed after a later one
            conn.execute(complete, (now - 100 + i, i * 7 % 400, now - 100 + i, i))
        check()
        conn.execute(complete, (now - 300, 2, now - 300, 30))  # long before the latest
        conn.execute(complete, (now - 90, 0.5, now - 90, 31))  # a little before it
        conn.execute("UPDATE tasks SET status = 'completed', started_at = NULL, finished_at = ? WHERE id = 32", (now,))
        check()
        conn.execute("DELETE FROM tasks WHERE id IN (5, 30)")
        check()
        conn.execute("DELETE FROM tasks WHERE id = 6")  # with one more completed: the count alone stays
        conn.execute(complete, (now, 3, now, 33))
        check()
        conn.execute("UPDATE tasks SET status = 'failed', finished_at = ? WHERE id = 34", (now,))
        queue.retry(conn, 34)
        conn.execute(complete, (now + 1, 50, now + 1, 34))
        check()
    assert api(url, "/api/tasks?status=completed&limit=3")[-1]["id"] == "task_034"


def test_every_filter_lists_as_the_command_does(serve: Callable[..., Served]) -> None:
    a_small_queue()  # task_002 waits for task_001; task_003 is cancelled
    ok("add", "Fourth", "--after", "3")  # blocked behind a cancelled task
    ok("add", "Fifth", "--after", "2")  # behind a blocked one
    ok("add", "Sixth")
    url = serve().url
    from orchestrate import api as queue

    for wanted in queue.LIST_FILTERS:
        listed = cli_json("tasks", "--status", wanted)
        assert api(url, f"/api/tasks?status={wanted}") == listed, wanted
        assert api(url, f"/api/tasks?status={wanted}&limit=2") == listed[-2:], wanted
        found = api(url, f"/api/tasks?status={wanted}&q=h&limit=500")
        assert found == [t for t in listed if "h" in t["description"].lower()], wanted
    assert [t["id"] for t in api(url, "/api/tasks?status=blocked")] == ["task_002", "task_004", "task_005"]


@pytest.mark.parametrize("search", ["task_", "TASK_1", "ask_0", "_1", "_01", "_001", "_0001", "1", "0", "00", "01"])
def test_a_search_finds_the_names_printf_would(search: str) -> None:
    from orchestrate.dashboard.data import _named

    conn = sqlite3.connect(":memory:")
    ids = [*range(1, 1200), 12345, 19990, 100000, 199999, 2**62, 2**63 - 1]
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in ids])
    for each in (search, search + "9", search + "99", search + "s", "s" + search, "x" + search):
        escaped = each.replace("_", "\\_")
        printed = "SELECT id FROM t WHERE printf('task_%03d', id) LIKE ? ESCAPE '\\'"
        sql, args = _named(each, max(ids))
        assert (
            conn.execute(f"SELECT id FROM t WHERE {sql}", args).fetchall()
            == conn.execute(printed, (f"%{escaped}%",)).fetchall()
        ), each


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe: it reads commands on its
    fd 3 and writes answers on its fd 4, each a JSON text ended by a NUL byte."""

    def __init__(self, executable: str, profile: Path, log: Path) -> None:
        commands_read, self.commands = _high_pipe()
        self.answers, answers_write = _high_pipe()

        def wire() -> None:  # in the child: the pipe's ends where Chromium looks for them
            os.dup2(commands_read, 3)
            os.dup2(answers_write, 4)

        flags = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking"
        flags += " --disable-component-update --disable-sync --disable-dev-shm-usage --remote-debugging-pipe"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [executable, *flags.split(), f"--user-data-dir={profile}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, preexec_fn=wire, close_fds=False,
                start_new_session=True,  # its helper processes too are stopped with the group
            )  # fmt: skip
        os.close(commands_read)
        os.close(answers_write)
        self.buffer, self.last_id = b"", 0

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        self.last_id += 1
        command: dict[str, Any] = {"id": self.last_id, "method": method, "params": params or {}}
        if session:
            command["sessionId"] = session
        os.write(self.commands, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + 30
        while True:  # events (no id) are not asked for; any that come are passed over
            answer = self._next(deadline)
            if answer.get("id") == self.last_id:
                assert "error" not in answer, (method, answer["error"])
                return answer["result"]

    def _next(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            ready, _, _ = select.select([self.answers], [], [], max(deadline - time.monotonic(), 0))
            assert ready, "Chromium did not answer within 30 s"
            chunk = os.read(self.answers, 1 << 20)
            assert chunk, "Chromium closed its DevTools pipe"
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)  # type: ignore[no-any-return]

    def open(self, url: str) -> Tab:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        tab = Tab(self, self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"])
        screen = {"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False}
        tab.send("Emulation.setDeviceMetricsOverride", screen)
        tab.send("Page.navigate", {"url": url})
        return tab

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.send("Browser.close")
                self.process.wait(timeout=10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # whatever helper outlived it
            self.process.wait()
            os.close(self.commands)
            os.close(self.answers)


def _high_pipe() -> tuple[int, int]:
    """A pipe whose descriptors are above 4, so that wiring one to 3 cannot overwrite the other."""
    ends = []
    for fd in os.pipe():
        ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
        os.close(fd)
    return ends[0], ends[1]


class Tab:
    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser, self.session = browser, session

    def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.browser.send(method, params, self.session)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        assert "exceptionDetails" not in result, (expression, result["exceptionDetails"])
        return result["result"].get("value")

    def text(self, selector: str) -> str | None:
        return self.evaluate(f"document.querySelector({json.dumps(selector)})?.textContent ?? null")  # type: ignore[no-any-return]

    def status_of(self, task_id: str) -> str | None:
        """The status the page's task list shows for `task_id`."""
        row = json.dumps(f'#tasks tr[data-task="{task_id}"]')
        return self.evaluate(f"document.querySelector({row})?.dataset.status ?? null")  # type: ignore[no-any-return]

    def click(self, selector: str) -> None:
        """A real click, as a person's mouse makes one, in the middle of the element."""
        where = self.evaluate(
            f"""(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;
                e.scrollIntoView({{block: "center"}}); const r = e.getBoundingClientRect();
                return [r.x + r.width / 2, r.y + r.height / 2]; }})()"""
        )
        assert where, f"nothing on the page matches {selector}"
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            press = {"button": "left", "clickCount": 1} if kind != "mouseMoved" else {}
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": where[0], "y": where[1], **press})


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Chromium]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run installs it)")
    browser = Chromium(executable, tmp_path / "chromium-profile", tmp_path / "chromium.log")
    yield browser
    browser.close()


def test_the_page_follows_the_queue_live_in_chromium(
    project: Path, fakes: Path, serve: Callable[..., Served], chromium: Chromium, tmp_path: Path
) -> None:
    configure(project, claude=2, retries=0)
    ok("start")
    page = chromium.open(serve().url)
    wait_until(lambda: page.text("#connection-text") == "live", message="the page to load and reach the API")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    ok("add", "Write the summary [fake:sleep=3]")
    ok("add", "Flaky step [fake:fail-times=1]")
    wait_until(lambda: page.status_of("task_001") == "running", message="the page to show task_001 running")
    wait_until(lambda: page.status_of("task_002") == "failed", message="the page to show task_002 failed")
    wait_until(lambda: page.status_of("task_001") == "completed", message="the page to show task_001 completed")
    assert page.evaluate("window.sameDocument") is True
    page.click('#tasks button[data-action="retry"][data-task="task_002"]')
    wait_until(lambda: page.text("#toast") == "task_002 is pending again", message="the retry to be confirmed")
    wait_until(lambda: page.status_of("task_002") == "completed", message="the page to show the retried task done")
    retried = task(2)
    assert (retried["status"], retried["attempts"], retried["error"]) == ("completed", 1, None)
    page.click('#tasks tr[data-task="task_001"]')
    wait_until(lambda: "Write the summary" in (page.text("#output") or ""), message="task_001's output file")
    wait_until(lambda: "attempt 1 on claude-" in (page.text("#log") or ""), message="task_001's log")
    assert page.text("#counts [data-count=completed] strong") == "2"
    assert page.evaluate("window.sameDocument") is True
    shot = base64.b64decode(page.send("Page.captureScreenshot", {"format": "png"})["data"])
    (tmp_path / "dashboard.png").write_bytes(shot)
    assert shot.startswith(b"\x89PNG")
    ok("stop")
