"""The dashboard adds work and holds the queue: POST /api/tasks queues a task as `orchestrate add`
does, POST /api/pause and /api/resume do what `orchestrate pause` and `resume` do, all behind the
token and the same-origin rule; the page has the form, the paused banner and the plan tree. End to
end through the installed `orchestrate dashboard` (or a head's own), the commands, and Chromium."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import test_dashboard
from conftest import wait_until
from test_dashboard import Chromium, Response, Served, api, cli_json, free_port, request
from test_head import CONFIG, ok, status, task

serve = test_dashboard.serve  # the fixture: `orchestrate dashboard` on a free port
chromium = test_dashboard.chromium
BODY_MAX = 64 * 1024
CHANGES = ("/api/tasks", "/api/pause", "/api/resume")


def post(
    url: str, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> Response:
    """POST `body` as JSON (or the bytes `raw`) to the dashboard at `url`, as the page sends it."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", urlsplit(url).port, timeout=10)
    try:
        connection.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        answer = connection.getresponse()
        return Response(answer.status, answer.headers, answer.read())
    finally:
        connection.close()


def post_chunked(url: str, path: str, chunks: Iterable[bytes]) -> Response:
    connection = http.client.HTTPConnection("127.0.0.1", urlsplit(url).port, timeout=10)
    try:
        connection.request("POST", path, body=iter(chunks), encode_chunked=True)
        answer = connection.getresponse()
        return Response(answer.status, answer.headers, answer.read())
    finally:
        connection.close()


def added(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    answer = post(url, "/api/tasks", body, headers)
    assert (answer.status, answer.headers["Content-Type"]) == (201, "application/json"), answer.body
    shown: dict[str, Any] = answer.json()
    return shown


def refused(answer: Response, code: int) -> str:
    """The one-line error of a refused request."""
    assert (answer.status, answer.headers["Content-Type"]) == (code, "application/json"), answer.body
    error: str = answer.json()["error"]
    assert error and "\n" not in error and len(error) < 200, error
    return error


def same_task(one: dict[str, Any], other: dict[str, Any]) -> None:
    """Two tasks' JSON agree but for what makes each itself."""
    mine = ("id", "description", "created_at")
    assert {k: v for k, v in one.items() if k not in mine} == {k: v for k, v in other.items() if k not in mine}


def test_a_task_added_through_the_api_is_the_one_the_command_adds(project: Path, serve: Callable[..., Served]) -> None:
    (project / "config.yaml").write_text("task_queue:\n  max_retries: 5\n")
    ok("add", "First: write the parser")
    ok("add", "Second: test it")
    url = serve().url
    body = {"description": "Plan the release", "priority": "high", "agent": "claude", "after": "task_001,2"}
    shown = added(url, body | {"plan": True})
    assert shown["id"] == "task_003"
    assert {k: shown[k] for k in ("priority", "agent_type", "depends_on", "plan", "max_retries", "parent")} == {
        "priority": "high",
        "agent_type": "claude",
        "depends_on": ["task_001", "task_002"],
        "plan": True,
        "max_retries": 5,  # the config's, as `orchestrate add` takes it
        "parent": None,
    }
    assert shown["notes"] == []
    assert {k: v for k, v in shown.items() if k != "notes"} == api(url, "/api/tasks/3") == cli_json("show", "3")
    listed = cli_json("tasks")
    assert [t["id"] for t in listed] == ["task_001", "task_002", "task_003"]
    assert {k: v for k, v in shown.items() if k in listed[2]} == listed[2]
    ok("add", "Plan the release", "--priority", "high", "--agent", "claude", "--after", "task_001,2", "--plan")
    same_task(cli_json("tasks")[3], listed[2])  # task_004, from the command, is task_003's twin
    lone = added(url, {"description": "Anything, by anyone", "after": [], "agent": "", "priority": None})
    ok("add", "Anything, by anyone")
    same_task(task(5), task(6))
    assert (lone["priority"], lone["agent_type"], lone["depends_on"], lone["plan"]) == ("normal", None, [], False)
    listed_ids = added(url, {"description": "after a list", "after": ["task_001", 2, "3"]})["depends_on"]
    assert listed_ids == ["task_001", "task_002", "task_003"]


def test_the_answer_notes_what_the_command_would_note(serve: Callable[..., Served]) -> None:
    ok("add", "Doomed")
    ok("cancel", "1")
    url = serve().url
    shown = added(url, {"description": "Follow up", "agent": "nobody", "after": "1"})
    assert shown["notes"] == [
        "no agent 'nobody' is configured, so any agent may take task_002",
        "task_002 will not run until task_001 is retried: it waits for task_001, which was cancelled",
    ]
    assert task(2)["status"] == "pending" and task(2)["blocked"] is True


def test_a_head_runs_what_the_api_queued_once_the_api_resumes_it(project: Path, fakes: Path) -> None:
    """Through the head's own dashboard (dashboard.port) with its token: pause, add, nothing is
    claimed while paused, resume, and the fake claude completes it."""
    port = free_port()
    config = CONFIG.format(claude=1, retries=0, more="") + f"dashboard: {{port: {port}, token: t0k}}\n"
    (project / "config.yaml").write_text(config)
    ok("start")
    url, auth = f"http://127.0.0.1:{port}/", {"Authorization": "Bearer t0k"}
    wait_until(lambda: api(url, "/api/status", auth)["head"]["running"], message="the head's dashboard")
    paused = post(url, "/api/pause", headers=auth)
    assert paused.status == 200 and paused.json()["paused"] is True
    shown = added(url, {"description": "Say hello from the form", "priority": "low"}, auth)
    beat = status()["head"]["heartbeat_at"]
    for _ in range(2):  # two more beats of the head's loop: had it claimed, it would be running
        beat = wait_until(lambda b=beat: (now := status()["head"]["heartbeat_at"]) != b and now, message="a beat")
    assert task(1)["status"] == "pending" and task(1)["attempts"] == 0
    assert post(url, "/api/resume", headers=auth).json()["paused"] is False
    wait_until(lambda: task(1)["status"] == "completed", message="task_001 to complete")
    assert shown["id"] == "task_001" and task(1)["priority"] == "low"
    assert "Say hello from the form" in (project / "context/agent_outputs/task_001_output.md").read_text()
    ok("stop")


def test_pause_and_resume_through_the_api_are_the_commands(serve: Callable[..., Served]) -> None:
    url = serve().url
    assert status()["paused"] is False
    answer = post(url, "/api/pause")
    assert (answer.status, answer.headers["Content-Type"]) == (200, "application/json")
    shown = answer.json()
    since = shown["paused_since"]
    cli = status()
    assert cli["paused"] is True and cli["paused_since"] == since
    assert {k: shown[k] for k in cli if k != "head"} == {k: cli[k] for k in cli if k != "head"}
    assert post(url, "/api/pause").json()["paused_since"] == since  # paused already: since then still
    assert api(url, "/api/status")["paused"] is True
    resumed = post(url, "/api/resume").json()
    assert (resumed["paused"], resumed["paused_since"]) == (False, None)
    assert (status()["paused"], status()["paused_since"]) == (False, None)
    assert post(url, "/api/resume").json()["paused"] is False  # not paused: nothing to do
    ok("pause")  # and the other way round: the command's pause is the page's
    assert api(url, "/api/status")["paused"] is True
    for path in ("/api/pause", "/api/resume"):
        assert refused(request(url, path), 405) == f"{path} takes POST, not GET"


NESTED = b"[" * 5000 + b"]" * 5000  # deeper than Python's json reads
BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("empty description", b'{"description": ""}', "a task needs a description"),
    ("blank description", b'{"description": " \\n\\t "}', "a task needs a description"),
    ("no description", b'{"priority": "high"}', "description must be"),
    ("number description", b'{"description": 7}', "description must be"),
    ("bad priority", b'{"description": "x", "priority": "urgent"}', "priority must be high, normal or low"),
    ("priority not text", b'{"description": "x", "priority": 1}', "priority must be"),
    ("unknown after", b'{"description": "x", "after": "task_001,task_999"}', "task_999 does not exist"),
    ("after not an id", b'{"description": "x", "after": "soon"}', "'soon' is not a task id"),
    ("after past any id", b'{"description": "x", "after": "task_' + b"9" * 30 + b'"}', "does not exist"),
    ("after a list of junk", b'{"description": "x", "after": [true]}', "after must be task ids"),
    ("plan not a flag", b'{"description": "x", "plan": "yes"}', "plan must be true or false"),
    ("agent not text", b'{"description": "x", "agent": ["claude"]}', "agent must be a string"),
    ("unknown field", b'{"description": "x", "priorty": "high"}', "unknown field 'priorty'"),
    ("not JSON", b"description=x", "the request body is not JSON"),
    ("no body", b"", "the request body is not JSON"),
    ("a JSON list", b'["x"]', "the body must be a JSON object"),
    ("not UTF-8", b'{"description": "caf\xe9"}', "the request body is not UTF-8 text"),
    ("a lone surrogate", b'{"description": "\\ud800"}', "not valid UTF-8"),
    ("nested too deep", NESTED, "nested too deeply"),
    ("too big", json.dumps({"description": "x" * BODY_MAX}).encode(), "the request body is over 64 KiB"),
]


def test_bad_input_is_a_400_of_one_line_and_adds_nothing(serve: Callable[..., Served]) -> None:
    ok("add", "There already")
    url = serve().url
    for name, body, says in BAD_BODIES:
        assert says in refused(post(url, "/api/tasks", raw=body), 400), name
    chunked = post_chunked(url, "/api/tasks", [b'{"description": ', b'"x"}'])
    assert "Content-Length" in refused(chunked, 400)
    assert [t["id"] for t in cli_json("tasks")] == ["task_001"]  # nothing half-added
    exactly = json.dumps({"description": "y"})
    exactly = exactly[:-2] + "y" * (BODY_MAX - len(exactly)) + '"}'
    assert len(exactly.encode()) == BODY_MAX
    assert added(url, json.loads(exactly))["id"] == "task_002"  # 64 KiB is not too big


@pytest.mark.parametrize("path", CHANGES)
def test_the_new_routes_need_the_token_and_the_page_s_origin(serve: Callable[..., Served], path: str) -> None:
    body = {"description": "Sneaked in"} if path == "/api/tasks" else None
    if path == "/api/resume":
        ok("pause")  # so that resuming would change something
    before = (cli_json("tasks"), status()["paused"])
    url = serve("--token", "s3cret").url
    port, auth = urlsplit(url).port, {"Authorization": "Bearer s3cret"}
    assert "token is required" in refused(post(url, path, body), 401)
    assert refused(post(url, path, body, {"Authorization": "Bearer wrong"}), 401)
    assert refused(post(url, path, body, {"Cookie": f"orchestrate_token_{port}=wrong"}), 401)
    forged = post(url, path, body, auth | {"Origin": "https://evil.example"})
    assert refused(forged, 403) == "a change must come from the dashboard's own page"
    assert refused(post(url, path, body, auth | {"Origin": "null"}), 403)  # a sandboxed frame, a file
    assert (cli_json("tasks"), status()["paused"]) == before
    assert post(url, path, body, auth | {"Origin": url.rstrip("/")}).status in (200, 201)  # as the page sends it
    assert (cli_json("tasks"), status()["paused"]) != before
    open_url = serve().url  # loopback, no token: the origin and Host rules still hold
    assert refused(post(open_url, path, body, {"Origin": "http://localhost.evil.example"}), 403)
    rebound = {"Host": f"evil.example:{urlsplit(open_url).port}"}  # DNS rebinding
    assert refused(post(open_url, path, body, rebound), 403)


def test_the_page_has_the_form_the_banner_and_the_tree(serve: Callable[..., Served]) -> None:
    html = request(serve().url, "/").body.decode()
    for wanted in (
        '<form id="add-form"',
        '<textarea id="add-description"',
        '<select id="add-priority"',
        '<input id="add-agent"',
        '<input id="add-after"',
        'id="add-plan"',
        '<button type="submit"',
        'id="paused-banner"',
        'data-hold="resume"',
        'data-hold="pause"',
        'id="tree"',
    ):
        assert wanted in html, wanted
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html  # the queue's text is data


def test_the_page_adds_holds_and_shows_the_plan_tree_in_chromium(
    project: Path, serve: Callable[..., Served], chromium: Chromium
) -> None:
    page = chromium.open(serve().url)
    wait_until(lambda: page.text("#connection-text") == "live", message="the page to load and reach the API")
    marked = '<img src=x onerror="window.pwned=1"> Plan & ship'
    page.click("#add-description")
    page.send("Input.insertText", {"text": marked})
    page.evaluate('document.getElementById("add-priority").value = "high"')
    page.click("#add-agent")
    page.send("Input.insertText", {"text": "claude"})
    page.click("#add-plan")
    page.click("#add-submit")
    wait_until(lambda: page.text("#add-result") == "Queued task_001", message="the form to say the new id")
    shown = task(1)
    assert (shown["description"], shown["priority"], shown["agent_type"], shown["plan"]) == (
        marked,
        "high",
        "claude",
        True,
    )
    assert page.evaluate('document.getElementById("add-description").value') == ""
    wait_until(lambda: page.status_of("task_001") == "pending", message="the list to show task_001")
    row = '#tasks tr[data-task="task_001"] td.description'
    assert page.text(row) == "plan" + marked  # the tag, then the text as text
    assert page.evaluate(f"document.querySelectorAll({json.dumps(row + ' img')}).length") == 0
    assert page.evaluate("window.pwned ?? null") is None

    page.click("#add-description")
    page.send("Input.insertText", {"text": "Waits for nothing there"})
    page.click("#add-after")
    page.send("Input.insertText", {"text": "task_009"})
    page.click("#add-submit")
    error = "task_009 does not exist, so nothing can wait for it; nothing was added"
    wait_until(lambda: page.text("#add-result") == error, message="the form to show the error line")
    assert page.evaluate('document.getElementById("add-result").className') == "bad"
    assert [t["id"] for t in cli_json("tasks")] == ["task_001"]

    banner = "document.getElementById('paused-banner').hidden"
    assert page.evaluate(banner) is True
    page.click("#pause")
    wait_until(lambda: page.evaluate(banner) is False, message="the paused banner")
    assert status()["paused"] is True
    assert (page.text("#paused-text") or "").startswith("since ")
    assert page.evaluate("document.getElementById('pause').hidden") is True
    page.click('#paused-banner button[data-hold="resume"]')
    wait_until(lambda: page.evaluate(banner) is True, message="the banner to go once resumed")
    assert status()["paused"] is False
    ok("pause")  # the command's pause shows too
    wait_until(lambda: page.evaluate(banner) is False, message="the banner for `orchestrate pause`")

    ok("add", "Unrelated")  # task_002
    ok("add", "Step one", "--parent", "1")  # task_003
    ok("add", "Step two", "--parent", "task_001", "--plan")  # task_004
    ok("add", "Step two, part a", "--parent", "4")  # task_005
    wait_until(lambda: page.status_of("task_005") == "pending", message="the list to show task_005")
    rows = "[...document.querySelectorAll('#tasks tbody tr')].map((r) => [r.dataset.task, r.dataset.depth])"
    assert page.evaluate(rows) == [[f"task_00{n}", "0"] for n in (5, 4, 3, 2, 1)]  # newest first
    page.click("#tree")
    tree = [["task_002", "0"], ["task_001", "0"], ["task_003", "1"], ["task_004", "1"], ["task_005", "2"]]
    wait_until(lambda: page.evaluate(rows) == tree, message="children under their parent")
    assert page.text('#tasks tr[data-task="task_005"] td') == "↳ task_005"
    assert page.text('#tasks tr[data-task="task_004"] td.description') == "planStep two"
    page.click('#tasks tr[data-task="task_004"]')
    wait_until(lambda: "task_005" in (page.text("#detail-body") or ""), message="task_004's children in its detail")
    page.click("#tree")
    wait_until(lambda: [r[0] for r in page.evaluate(rows)] == [f"task_00{n}" for n in (5, 4, 3, 2, 1)], message="flat")
