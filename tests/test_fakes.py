"""Sanity checks for the fake agent CLIs in tests/fakes: argv, output formats and directives."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

FAKES = Path(__file__).parent / "fakes"
CLIS = ("claude", "codex", "gemini")
HEADLESS = {
    "claude": ["--permission-mode", "acceptEdits", "-p", "--output-format", "stream-json", "--verbose", "--"],
    "codex": [
        *("--ask-for-approval", "never", "--sandbox", "danger-full-access"),
        *("exec", "--json", "--skip-git-repo-check", "--"),
    ],
    "gemini": ["--approval-mode", "yolo", "--skip-trust", "--output-format", "stream-json"],
}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
PROMPT = "# Notes\n\nCreate NOTES.md with the meeting notes.\nKeep it short."
ANSWER = "Done: Create NOTES.md with the meeting notes. (created NOTES.md)"


def argv(cli: str, prompt: str | None) -> list[str]:
    """The headless argv the tool's adapters build; a None prompt travels on stdin."""
    base = [str(FAKES / cli), *HEADLESS[cli]]
    if prompt is None:
        return [*base[:-1], "-"] if cli == "codex" else [a for a in base if a != "--"]
    return [*base, f"--prompt={prompt}"] if cli == "gemini" else [*base, prompt]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_") and k != "IS_SANDBOX"}
    return {**env, **extra}


def run(
    cli: str,
    prompt: str | None,
    *,
    args: list[str] | None = None,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args or argv(cli, prompt),
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        text=True,
        timeout=15,
        env=clean_env(**(env or {})),
    )


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def answer(cli: str, evs: list[dict[str, Any]]) -> str:
    """The final answer, read the way each CLI's output is meant to be read."""
    if cli == "claude":
        return str(evs[-1]["result"])
    if cli == "codex":
        items = [e["item"] for e in evs if e["type"] == "item.completed"]
        messages = [item["text"] for item in items if item["type"] == "agent_message"]
        return str(messages[-1])
    return "".join(e["content"] for e in evs if e["type"] == "message" and e["role"] == "assistant")


def read_line(proc: subprocess.Popen[bytes], timeout: float = 10) -> dict[str, Any]:
    """The next stdout line of a running fake, failing after `timeout` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no output from the fake"
    return json.loads(proc.stdout.readline())  # type: ignore[no-any-return]


@pytest.mark.parametrize("cli", CLIS)
def test_success_prints_the_documented_format_and_creates_the_file(cli: str, project: Path) -> None:
    proc = run(cli, PROMPT)
    assert proc.returncode == 0, proc.stderr
    evs = events(proc.stdout)
    assert answer(cli, evs) == ANSWER
    assert "meeting notes" in (project / "NOTES.md").read_text()
    if cli == "claude":
        init, result = evs[0], evs[-1]
        assert (init["type"], init["subtype"]) == ("system", "init") and UUID.match(init["session_id"])
        assert all(len(e["message"]["content"]) == 1 for e in evs if e["type"] == "assistant")
        assert any(e["type"] == "user" for e in evs)  # the tool_result of the Write
        assert result["type"] == "result" and result["subtype"] == "success" and result["is_error"] is False
        assert result["session_id"] == init["session_id"] and result["api_error_status"] is None
        assert 0 < result["total_cost_usd"] < 1 and result["num_turns"] >= 1
        assert result["usage"]["input_tokens"] > 0 and result["usage"]["output_tokens"] > 0
    elif cli == "codex":
        assert evs[0]["type"] == "thread.started" and UUID.match(evs[0]["thread_id"])
        assert evs[1] == {"type": "turn.started"}
        assert evs[-1]["type"] == "turn.completed"
        assert set(evs[-1]["usage"]) >= {"input_tokens", "cached_input_tokens", "output_tokens"}
        assert "cost" not in proc.stdout
    else:
        init, result = evs[0], evs[-1]
        assert init["type"] == "init" and UUID.match(init["session_id"]) and init["model"]
        deltas = [e for e in evs if e["type"] == "message" and e["role"] == "assistant"]
        assert len(deltas) >= 2 and all(e["delta"] is True for e in deltas)
        assert result["type"] == "result" and result["status"] == "success"
        assert set(result["stats"]) >= {"total_tokens", "input_tokens", "output_tokens", "duration_ms", "tool_calls"}
        assert result["stats"]["tool_calls"] == 1


def test_gemini_json_prints_one_object() -> None:
    args = [str(FAKES / "gemini"), "--skip-trust", "--output-format", "json", "--prompt=Say hello"]
    proc = run("gemini", None, args=args)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["response"] == "Done: Say hello" and UUID.match(body["session_id"])
    assert "tokens" in next(iter(body["stats"]["models"].values()))


@pytest.mark.parametrize("prompt", ["Do it [fake:fail]", "Invalid task: nothing to do"])
@pytest.mark.parametrize("cli", CLIS)
def test_fail(cli: str, prompt: str) -> None:
    proc = run(cli, prompt)
    assert proc.returncode == 1
    last = events(proc.stdout)[-1]
    if cli == "claude":
        assert last["type"] == "result" and last["is_error"] is True
        assert last["result"] == "API Error: 400 fake failure"
    elif cli == "codex":
        assert last["type"] == "turn.failed" and last["error"]["message"]
    else:
        assert last["type"] == "result" and last["status"] == "error" and last["error"]["message"]


@pytest.mark.parametrize("cli", CLIS)
def test_ratelimit(cli: str) -> None:
    proc = run(cli, "Busy [fake:ratelimit]")
    last = events(proc.stdout)[-1]
    if cli == "claude":
        assert proc.returncode == 1 and last["is_error"] is True and last["api_error_status"] == 429
        match = re.fullmatch(r"Claude AI usage limit reached\|(\d{10})", last["result"])
        assert match and 0 < int(match.group(1)) - time.time() <= 3
    elif cli == "codex":
        assert proc.returncode == 1 and last["type"] == "turn.failed"
        assert last["error"]["message"] == "exceeded retry limit, last status: 429 Too Many Requests"
    else:
        assert proc.returncode == 173 and last["status"] == "error"
        assert last["error"]["type"] == "TerminalQuotaError"


@pytest.mark.parametrize("cli", CLIS)
def test_ratelimit_with_a_wait_prints_it_in_the_clis_own_field(cli: str) -> None:
    proc = run(cli, "Busy [fake:ratelimit=37]")
    printed = events(proc.stdout)
    last = printed[-1]
    if cli == "claude":
        retries = [e for e in printed if e.get("subtype") == "api_retry"]
        assert retries and all((e["error_status"], e["retry_delay_ms"]) == (429, 37_000) for e in retries)
        assert proc.returncode == 1 and (last["is_error"], last["api_error_status"]) == (True, 429)
        assert last["result"] == "API Error: Request rejected (429) · fake rate limit"
    elif cli == "codex":  # codex names no wait
        assert proc.returncode == 1 and last["type"] == "turn.failed"
        assert last["error"]["message"] == "exceeded retry limit, last status: 429 Too Many Requests"
    else:
        assert proc.returncode == 173 and (last["status"], last["error"]["type"]) == ("error", "RetryableQuotaError")
        message = last["error"]["message"]
        body = json.loads(message[message.index("{") : message.rindex("}") + 1])["error"]
        assert (body["code"], body["status"]) == (429, "RESOURCE_EXHAUSTED")
        assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"} in body["details"]


def test_gemini_json_errors_go_to_stderr() -> None:
    args = [str(FAKES / "gemini"), "--skip-trust", "--output-format", "json", "--prompt=Busy [fake:ratelimit]"]
    proc = run("gemini", None, args=args)
    assert proc.returncode == 173 and proc.stdout == ""
    error = json.loads(proc.stderr)["error"]
    assert error["message"] == "You have exhausted your daily quota on this model." and error["code"] == 429


@pytest.mark.parametrize("cli", CLIS)
def test_crash_leaves_half_a_line_and_no_result(cli: str) -> None:
    proc = run(cli, "Boom [fake:crash]")
    assert proc.returncode == 3
    *complete, fragment = proc.stdout.split("\n")
    assert fragment.startswith("{")
    with pytest.raises(json.JSONDecodeError):
        json.loads(fragment)
    kinds = {e["type"] for e in events("\n".join(complete))}
    assert kinds & {"system", "thread.started", "init"}
    assert not kinds & {"result", "turn.completed", "turn.failed"}


def test_claude_stream_json_requires_verbose() -> None:
    args = [str(FAKES / "claude"), "-p", "--output-format", "stream-json", "--", "hi"]
    proc = run("claude", None, args=args)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "requires --verbose" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal only happens as root")
def test_claude_refuses_to_skip_permissions_as_root() -> None:
    args = [str(FAKES / "claude"), "--dangerously-skip-permissions", *HEADLESS["claude"][2:], "hi"]
    for env in ({}, {"IS_SANDBOX": "yes"}):
        proc = run("claude", None, args=args, env=env)
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.strip() == (
            "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons"
        )
    assert run("claude", None, args=args, env={"IS_SANDBOX": "1"}).returncode == 0


def test_claude_reads_the_prompt_from_stdin() -> None:
    proc = run("claude", None, input="Write the summary\nmore")
    assert proc.returncode == 0, proc.stderr
    assert events(proc.stdout)[-1]["result"] == "Done: Write the summary"


def test_codex_reads_a_300_kb_prompt_from_stdin(project: Path) -> None:
    prompt = "Summarise the log below\n" + "log line with some words in it\n" * 10_000
    assert len(prompt) > 300_000
    proc = run("codex", None, input=prompt, env={"FAKE_RECORD": str(project / "rec.jsonl")})
    assert proc.returncode == 0, proc.stderr
    assert answer("codex", events(proc.stdout)) == "Done: Summarise the log below"
    start = json.loads((project / "rec.jsonl").read_text().splitlines()[0])
    assert (start["prompt"], start["prompt_source"], start["stdin_was"]) == (prompt, "stdin", "pipe")


def test_codex_appends_piped_stdin_to_an_argv_prompt(project: Path) -> None:
    proc = run("codex", "Fix it", input="extra context", env={"FAKE_RECORD": str(project / "rec.jsonl")})
    assert proc.returncode == 0, proc.stderr
    start = json.loads((project / "rec.jsonl").read_text().splitlines()[0])
    assert start["prompt"] == "Fix it\n\n<stdin>\nextra context\n</stdin>"


def test_codex_outside_a_git_repo_needs_skip_git_repo_check(project: Path) -> None:
    assert not any((d / ".git").exists() for d in (project, *project.parents))
    args = [a for a in argv("codex", "hi") if a != "--skip-git-repo-check"]
    proc = run("codex", None, args=args)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Not inside a trusted directory and --skip-git-repo-check was not specified." in proc.stderr


def test_gemini_untrusted_folder_exits_55() -> None:
    args = [a for a in argv("gemini", "hi") if a != "--skip-trust"]
    proc = run("gemini", None, args=args)
    assert proc.returncode == 55 and "not running in a trusted directory" in proc.stderr
    assert run("gemini", None, args=args, env={"GEMINI_CLI_TRUST_WORKSPACE": "true"}).returncode == 0


@pytest.mark.parametrize("cli", CLIS)
def test_fail_times_fails_then_succeeds(cli: str, tmp_path: Path) -> None:
    env = {"FAKE_STATE_DIR": str(tmp_path / "state")}
    prompt = f"Flaky {cli} task [fake:fail-times=1]"
    first, second = run(cli, prompt, env=env), run(cli, prompt, env=env)
    assert first.returncode == 1 and second.returncode == 0
    assert answer(cli, events(second.stdout)) == f"Done: Flaky {cli} task"


def test_record_describes_the_invocation(project: Path) -> None:
    record = project / "rec.jsonl"
    env = {"FAKE_RECORD": str(record), "ORCHESTRATE_TASK": "7", "CLAUDE_CODE_X": "1", "UNRELATED": "no"}
    proc = run("claude", "Record me", env=env)
    assert proc.returncode == 0
    start, done = (json.loads(line) for line in record.read_text().splitlines())
    assert start["cli"] == "claude" and start["argv"] == argv("claude", "Record me")[1:]
    assert start["cwd"] == str(project) and start["pid"] == done["pid"]
    assert isinstance(start["pgid"], int) and isinstance(start["sid"], int)
    assert (start["stdin_was"], start["prompt"], start["prompt_source"]) == ("devnull", "Record me", "argv")
    assert start["env"] == {"ORCHESTRATE_TASK": "7", "CLAUDE_CODE_X": "1"}
    assert abs(start["time"] - time.time()) < 60
    assert done["done"] is True and done["outcome"] == "success"


@pytest.mark.parametrize("cli", CLIS)
def test_ignore_term_survives_sigterm(cli: str) -> None:
    proc = subprocess.Popen(
        argv(cli, "Stubborn [fake:ignore-term]"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=clean_env(),
    )
    try:
        assert read_line(proc)["type"] in ("system", "thread.started", "init")
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.3)
        os.kill(proc.pid, 0)  # still alive
    finally:
        proc.kill()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def test_hang_dies_on_sigterm() -> None:
    proc = subprocess.Popen(
        argv("gemini", "Slow [fake:hang]"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=clean_env()
    )
    try:
        assert read_line(proc)["type"] == "init"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def test_claude_sigint_exits_0_with_an_error_result() -> None:
    proc = subprocess.Popen(
        argv("claude", "Slow [fake:hang]"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=clean_env()
    )
    try:
        assert read_line(proc)["subtype"] == "init"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0
    last = events(out.decode())[-1]
    assert last["subtype"] == "error_during_execution" and last["is_error"] is True and "result" not in last


def test_sleep_prints_progress_before_sleeping() -> None:
    proc = subprocess.Popen(
        argv("codex", "Take time [fake:sleep=60]"),
        bufsize=0,  # unbuffered: read_line selects on the pipe itself
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=clean_env(),
    )
    try:
        kinds = [read_line(proc)["type"] for _ in range(3)]
        assert kinds == ["thread.started", "turn.started", "item.completed"]
        assert proc.poll() is None  # the progress event came while it sleeps
    finally:
        proc.kill()
        proc.wait()


def test_child_leaves_a_grandchild_in_its_own_session(project: Path) -> None:
    pids = project / "pids"
    proc = run("claude", "Spawn [fake:child]", env={"FAKE_CHILD_PIDS": str(pids)})
    pid = int(pids.read_text())
    try:
        assert proc.returncode == 0
        assert os.getsid(pid) == pid  # alive, and the leader of its own session
    finally:
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("cli", CLIS)
def test_big_output_is_many_short_lines(cli: str) -> None:
    proc = run(cli, "Chatty [fake:big=200000]")
    assert proc.returncode == 0
    lines = proc.stdout.encode().splitlines()
    assert sum(len(line) + 1 for line in lines) >= 200_000
    assert max(len(line) for line in lines) <= 4096
    assert answer(cli, events(proc.stdout)) == "Done: Chatty"


def test_bigline_is_one_long_line() -> None:
    proc = run("codex", "Wide [fake:bigline=500000]")
    assert proc.returncode == 0
    assert max(len(line) for line in proc.stdout.encode().splitlines()) >= 500_000
    assert answer("codex", events(proc.stdout)) == "Done: Wide"


def test_noresult_exit_stderr_and_noise() -> None:
    proc = run("claude", "Quiet [fake:noresult]")
    assert proc.returncode == 0 and all(e["type"] != "result" for e in events(proc.stdout))
    proc = run("gemini", "Odd [fake:exit=7]")
    assert proc.returncode == 7 and events(proc.stdout)[-1]["status"] == "success"
    proc = run("codex", "Noisy [fake:noise] [fake:stderr]")
    evs = events(proc.stdout)
    assert proc.returncode == 0 and evs[-1]["type"] == "turn.completed"
    assert any(e["type"] == "error" for e in evs) and len(proc.stderr.splitlines()) >= 2


# --- sessions: resuming one, as each CLI does ----------------------------------------------------


def resume_argv(cli: str, session: str, prompt: str | None) -> list[str]:
    """The argv the adapters build to continue `session`; a None prompt travels on stdin."""
    base = argv(cli, prompt)
    if cli == "claude":
        return [base[0], "--resume", session, *base[1:]]
    if cli == "codex":
        at = base.index("--skip-git-repo-check") + 1
        return [*base[:at], "resume", session, *base[at:]]
    at = base.index("stream-json") + 1
    return [*base[:at], "--resume", session, *base[at:]]


def session_of(cli: str, evs: list[dict[str, Any]]) -> str:
    return str(evs[0]["thread_id"] if cli == "codex" else evs[0]["session_id"])


@pytest.mark.parametrize("cli", CLIS)
def test_a_resumed_session_keeps_its_id_and_remembers_its_task(cli: str, project: Path) -> None:
    first = run(cli, PROMPT)
    session = session_of(cli, events(first.stdout))
    (project / "NOTES.md").unlink()
    record = project / "rec.jsonl"
    again = run(
        cli, None, args=resume_argv(cli, session, "-that did not work; go on"), env={"FAKE_RECORD": str(record)}
    )
    assert again.returncode == 0, again.stderr
    evs = events(again.stdout)
    assert session_of(cli, evs) == session and answer(cli, evs) == ANSWER
    if cli == "claude":
        assert {e["session_id"] for e in evs} == {session}
    assert "meeting notes" in (project / "NOTES.md").read_text()  # the first prompt's task, done again
    start = json.loads(record.read_text().splitlines()[0])
    assert (start["resumed"], start["prompt"]) == (session, "-that did not work; go on")


@pytest.mark.parametrize("cli", CLIS)
def test_a_session_it_does_not_know_is_refused_as_the_real_cli_refuses_it(cli: str, project: Path) -> None:
    unknown = "0b6e2c1a-1111-4222-8333-444455556666"
    record = project / "rec.jsonl"
    proc = run(cli, None, args=resume_argv(cli, unknown, "go on"), env={"FAKE_RECORD": str(record)})
    if cli == "claude":  # its result, and no init before it
        assert proc.returncode == 1 and proc.stderr == f"No conversation found with session ID: {unknown}\n"
        (result,) = events(proc.stdout)
        assert (result["type"], result["subtype"], result["is_error"]) == ("result", "error_during_execution", True)
        assert (result["session_id"], result["num_turns"], "result" in result) == (unknown, 0, False)
        assert result["errors"] == [f"No conversation found with session ID: {unknown}"]
    elif cli == "codex":
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.splitlines()[0] == (
            f"Error: thread/resume: thread/resume failed: no rollout found for thread id {unknown} (code -32600)"
        )
    else:
        assert proc.returncode == 42 and proc.stdout == ""
        assert proc.stderr == "Error resuming session: No previous sessions found for this project.\n"
    start, done = (json.loads(line) for line in record.read_text().splitlines())
    assert (start["refused_session"], "resumed" in start, done["outcome"]) == (unknown, False, "no-session")


def test_claude_refuses_a_session_id_that_is_no_uuid() -> None:
    proc = run("claude", None, args=resume_argv("claude", "notauuid", "go on"))
    assert proc.returncode == 1 and proc.stderr.startswith("Error: --resume requires a valid session ID")
    assert events(proc.stdout)[0]["errors"] == [proc.stderr.strip()]


def test_codex_resumes_a_name_no_thread_has_as_a_new_session() -> None:
    proc = run("codex", None, args=resume_argv("codex", "my-thread", "go on"))
    assert proc.returncode == 0 and UUID.match(events(proc.stdout)[0]["thread_id"])


def test_gemini_keeps_no_failed_run_and_names_the_others_it_has() -> None:
    failed = run("gemini", "Broken [fake:fail]")
    assert failed.returncode == 1
    refused = run("gemini", None, args=resume_argv("gemini", session_of("gemini", events(failed.stdout)), "go on"))
    assert refused.returncode == 42 and "No previous sessions found for this project." in refused.stderr
    kept = session_of("gemini", events(run("gemini", "Say hello").stdout))
    refused = run("gemini", None, args=resume_argv("gemini", session_of("gemini", events(failed.stdout)), "go on"))
    assert refused.returncode == 42 and refused.stderr.startswith("Error resuming session: Invalid session identifier")
    for which in ("latest", "1", kept):
        resumed = run("gemini", None, args=resume_argv("gemini", which, "go on"))
        assert resumed.returncode == 0 and session_of("gemini", events(resumed.stdout)) == kept


def test_claude_and_gemini_keep_sessions_per_directory_and_codex_for_all(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"FAKE_STATE_DIR": str(project)}
    sessions = {cli: session_of(cli, events(run(cli, "Say hello", env=env).stdout)) for cli in CLIS}
    (project / "elsewhere").mkdir()
    monkeypatch.chdir(project / "elsewhere")
    codes = {cli: run(cli, None, args=resume_argv(cli, sessions[cli], "go on"), env=env).returncode for cli in CLIS}
    assert codes == {"claude": 1, "codex": 0, "gemini": 42}


def test_codex_resume_takes_execs_global_options_and_refuses_others_as_clap_does() -> None:
    session = session_of("codex", events(run("codex", "Say hello").stdout))
    base = [str(FAKES / "codex"), "exec", "resume", session]
    assert (
        run("codex", None, args=[*base, "--json", "--skip-git-repo-check", "-m", "gpt-5", "--", "-go"]).returncode == 0
    )
    proc = run("codex", None, args=[*base, "-x"])
    assert proc.returncode == 2 and proc.stderr.startswith("error: unexpected argument '-x' found\n\n  tip:")
    assert "Usage: codex exec resume [OPTIONS] [SESSION_ID] [PROMPT]" in proc.stderr


def test_codex_resume_reads_a_dash_prompt_from_stdin_and_appends_no_stdin_to_an_argv_one(project: Path) -> None:
    session = session_of("codex", events(run("codex", "Say hello").stdout))
    record = project / "rec.jsonl"
    env = {"FAKE_RECORD": str(record)}
    assert run("codex", None, args=resume_argv("codex", session, None), input="from stdin", env=env).returncode == 0
    assert run("codex", None, args=resume_argv("codex", session, "argv"), input="extra", env=env).returncode == 0
    starts = [json.loads(line) for line in record.read_text().splitlines() if "argv" in line]
    assert [(s["prompt"], s["prompt_source"]) for s in starts] == [("from stdin", "stdin"), ("argv", "argv")]


# --- a budget: claude's --max-budget-usd -----------------------------------------------------------


def test_claude_stops_with_error_max_budget_usd_once_its_cost_reaches_the_budget(project: Path) -> None:
    args = [str(FAKES / "claude"), "--max-budget-usd", "0.5", *HEADLESS["claude"], PROMPT + " [fake:cost=0.75]"]
    proc = run("claude", None, args=args)
    last = events(proc.stdout)[-1]
    assert proc.returncode == 1 and (last["type"], last["subtype"], last["is_error"]) == (
        "result",
        "error_max_budget_usd",
        True,
    )
    assert (last["errors"], last["total_cost_usd"], "result" in last) == (
        ["Reached maximum budget ($0.5)"],
        0.75,
        False,
    )
    assert (project / "NOTES.md").exists()  # it spent the money doing the work
    args[-1] = PROMPT + " [fake:cost=0.25]"
    cheap = run("claude", None, args=args)
    assert cheap.returncode == 0 and events(cheap.stdout)[-1]["total_cost_usd"] == 0.25


@pytest.mark.parametrize("budget", ["0", "-1", "lots"])
def test_claude_refuses_a_budget_that_is_no_positive_number(budget: str) -> None:
    proc = run("claude", None, args=[str(FAKES / "claude"), "--max-budget-usd", budget, *HEADLESS["claude"], "hi"])
    assert proc.returncode == 1 and "--max-budget-usd must be a positive number greater than 0" in proc.stderr
