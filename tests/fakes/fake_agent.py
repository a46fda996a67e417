"""Fake `claude`, `codex` and `gemini` executables for end-to-end tests.

Each fake accepts the real CLI's headless argv and prints the real CLI's output format, as
observed on Claude Code 2.1, Codex 0.169 and Gemini CLI 0.61 (docs/design.md, "Agents: the adapter
contract", says what the adapters rely on). The
scripts `claude`, `codex` and `gemini` next to this file call `main(<name>)`.

Behaviour is steered by directives anywhere in the prompt, `[fake:NAME]` or `[fake:NAME=VALUE]`:

    (none)            succeed; the answer is "Done: <first task line>" and a sentence like
                      "Create NOTES.md" writes that file in the working directory
    fail              a failed run in the CLI's own way (also whenever the prompt says "Invalid task")
    fail-times=N      the failure directives of this prompt (plain `fail` if it has none) apply to
                      the first N runs only; runs are counted in $FAKE_STATE_DIR (default: the cwd),
                      keyed by [fake:key=K] or else by the first non-blank prompt line
    key=K             the counter key for fail-times
    ratelimit         the CLI's usage-limit / quota failure (claude: a usage limit that resets in 2 s;
                      codex: a 429 after its retries; gemini: a daily quota, TerminalQuotaError)
    ratelimit=SECONDS a 429 whose wait the CLI prints in its own structured field: claude, `api_retry`
                      events of error_status 429 with retry_delay_ms SECONDS*1000, then a result with
                      api_error_status 429; gemini, a RetryableQuotaError quoting the API's 429 body,
                      whose RetryInfo has retryDelay "<SECONDS>s" (exit 173); codex prints no wait of
                      its own, so as `ratelimit`
    auth              the CLI's not-logged-in failure (gemini: exit 41)
    http=CODE         an API error with that HTTP status (gemini: exit CODE % 256)
    max-turns         claude: an error_max_turns result; gemini: exit 53; codex: ignored
    invalid-stream    gemini only: a broken stream that still exits 0
    hang              print the init event, then wait forever (SIGTERM kills it)
    ignore-term       ignore SIGTERM and SIGINT, print the init event, wait forever
    sleep=SECONDS     print one progress event, wait, then finish normally
    crash             print the init event and half a JSON line, then exit 3
    big=BYTES         about BYTES of extra events before the result, every line <= 4 KB
    bigline=BYTES     one extra event line of about BYTES
    child             leave behind a grandchild in its own session ($FAKE_CHILD_PIDS gets its pid)
    stderr            a few lines on stderr
    noise             harmless non-fatal error events (codex `{"type":"error"}` reconnect notice,
                      claude api_retry event, gemini warning event)
    exit=N            normal output, exit status N
    echo=TEXT         the answer also quotes every prompt line containing TEXT ("I read: ...")
    noresult          events but no result object, exit 0
    heed              on a retry, create each file that the previous attempt's error (quoted in
                      the prompt, or in a continued session's) says "NAME is missing"
    subtasks=N        a planner: queue N subtasks, "Part K of <task line>: Create part_K.md", with the
                      `orchestrate add` on PATH (the environment the head gives names the queue),
                      then a final task after all of them, "Join the parts of <task line>: Create
                      final.md"; the answer names the ids it printed, or quotes the error of an add
                      that failed (as an agent reads its shell tool's output) and stops adding
    cost=USD          claude: the run's total_cost_usd. With --max-budget-usd B, a run whose cost
                      (this one, or the usual few cents) reaches B does its work, then ends with an
                      error_max_budget_usd result ("Reached maximum budget ($B)"), exit 1, as claude
                      stops once it has spent its budget

Only the task's own words steer a run (see own_words): the shared context that orchestrate adds
to a prompt quotes other tasks.

Sessions: a run saves its session in $FAKE_SESSIONS_DIR, else $FAKE_STATE_DIR/.fake-agent-sessions/
(delete it to forget them all), with its first prompt: claude and codex every run, gemini only a run that did not fail
(its --resume does not find a failed run's). claude and gemini keep them per working directory,
codex for every directory (it resumes a UUID from anywhere). `claude --resume ID -p ...`,
`codex exec [OPTIONS] resume ID [--] PROMPT` (or `-`: stdin) and `gemini --resume ID|latest|N`
continue one: the output's session id stays ID, FAKE_RECORD's start line says "resumed": ID, and
the session's first prompt steers the run along with this one (its directives, task line and
"Create NAME"), as the agent remembers its task. An id it does not know is refused as the real CLI
refuses it: claude, an error_during_execution result with no init whose errors say "No conversation
found with session ID: ID", the same on stderr, exit 1 (not a UUID: its "--resume requires a valid
session ID" error); codex, nothing on stdout and "Error: thread/resume: thread/resume failed: no
rollout found for thread id ID (code -32600)" on stderr, exit 1 (not a UUID: codex finds no thread
of that name and starts a new session); gemini, "Error resuming session: No previous sessions
found for this project." on stderr (`Invalid session identifier "ID"` when the project has others),
exit 42. FAKE_RECORD's start line of a refused run says "refused_session": ID.

Environment: FAKE_RECORD=/path.jsonl appends one line per start and one per normal finish;
FAKE_STATE_DIR (fail-times counters, sessions); FAKE_CHILD_PIDS (pids of `child` grandchildren);
FAKE_ENFORCE_PERMISSIONS=1 makes writes depend on the permission flags as in the real CLIs
(claude acceptEdits/bypassPermissions, codex workspace-write/danger-full-access, gemini
yolo/auto_edit): a denied write does not fail the run, as documented.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import select
import signal
import stat
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

DIRECTIVE = re.compile(r"\[fake:([A-Za-z][\w-]*)(?:=([^\]]*))?\]")
CREATE = re.compile(r"\bCreate ([\w./-]+\.\w+)")
# directives that make a run misbehave; with fail-times they only apply to the first N runs
GATED = frozenset(
    {"fail", "ratelimit", "auth", "http", "max-turns", "invalid-stream", "crash", "hang", "ignore-term"}
    | {"noresult", "exit"}
)
LINE_MAX = 4096  # bytes per line for `big`
BULK_TEXT = 3000  # characters of filler per `big` event, well under LINE_MAX with its envelope
STARTED = time.monotonic()
RECORD_ENV = re.compile(r"^(ORCHESTRATE_|GEMINI_|CLAUDE_|CODEX_)|^IS_SANDBOX$")


class UsageError(Exception):
    """An argv or environment problem: the CLI prints `message` on stderr and exits with `code`."""

    def __init__(self, message: str, code: int = 1, outcome: str = "usage-error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.outcome = outcome


# --- small helpers -----------------------------------------------------------------------


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def write_stdout(text: str) -> None:
    try:
        sys.stdout.buffer.write(text.encode("utf-8", "replace"))
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        os._exit(1)


def eprint(text: str) -> None:
    try:
        sys.stderr.buffer.write((text + "\n").encode("utf-8", "replace"))
        sys.stderr.buffer.flush()
    except BrokenPipeError:
        pass


def append_line(path: str, text: str) -> None:
    """Append with O_APPEND in one write, so that concurrent fakes do not interleave."""
    data = memoryview(text.encode("utf-8", "replace"))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str = "", length: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:length]


def sleep_forever() -> NoReturn:
    while True:
        time.sleep(3600)


def stdin_kind() -> str:
    """How fd 0 is connected: pipe, devnull, tty or other (a file, a closed descriptor...)."""
    try:
        st = os.fstat(0)
    except OSError:
        return "other"
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        return "pipe"
    if os.isatty(0):
        return "tty"
    if stat.S_ISCHR(st.st_mode):
        try:
            if st.st_rdev == os.stat(os.devnull).st_rdev:
                return "devnull"
        except OSError:
            pass
    return "other"


def read_stdin(first_data_timeout: float | None = None, limit: int | None = None) -> str | None:
    """Read stdin to EOF; None when no data (nor EOF) arrived within `first_data_timeout` seconds."""
    try:
        if first_data_timeout is not None:
            ready, _, _ = select.select([0], [], [], first_data_timeout)
            if not ready:
                return None
        data = sys.stdin.buffer.read()
    except (OSError, ValueError):
        return ""
    if limit is not None:
        data = data[:limit]
    return data.decode("utf-8", "replace")


def in_git_repo(path: Path) -> bool:
    return any((directory / ".git").exists() for directory in (path, *path.parents))


def task_line(prompt: str) -> str:
    """The first line that is neither blank nor a markdown heading (directives removed), 80 chars."""
    for line in prompt.splitlines():
        text = DIRECTIVE.sub("", line).strip()
        if text and not text.startswith("#"):
            return text[:80]
    return "(empty prompt)"


def own_words(prompt: str) -> str:
    """The task's own text: orchestrate's prompt adds instructions and shared context after it,
    which may quote other tasks (and their directives) that must not steer this run."""
    own, found, _ = prompt.partition("\nYou are working in ")
    return own if found else prompt


def first_line(prompt: str) -> str:
    return next((line.strip() for line in prompt.splitlines() if line.strip()), "")


def parse_directives(prompt: str) -> dict[str, str]:
    return {m.group(1).lower(): (m.group(2) or "").strip() for m in DIRECTIVE.finditer(prompt)}


def number(directives: dict[str, str], name: str, default: float) -> float:
    try:
        return float(directives.get(name, ""))
    except ValueError:
        return default


def filler(index: int, size: int) -> str:
    text = f"[bulk {index}] " + "lorem ipsum dolor sit amet " * (size // 27 + 1)
    return text[: max(size, 0)]


def record(obj: dict[str, Any]) -> None:
    path = os.environ.get("FAKE_RECORD")
    if path:
        append_line(path, json.dumps(obj, ensure_ascii=True) + "\n")


def bump_run_count(directives: dict[str, str], prompt: str) -> int:
    """Count this run in the fail-times state file and return its number (1 for the first run)."""
    key = directives.get("key") or first_line(prompt)
    digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:16]
    directory = Path(os.environ.get("FAKE_STATE_DIR") or os.getcwd())
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / f".fake-agent-runs-{digest}", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.read(fd, 64).decode().strip()
        count = (int(raw) if raw.isdigit() else 0) + 1
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, f"{count}\n".encode())
        return count
    finally:
        os.close(fd)


def spawn_grandchild() -> None:
    """Leave a process behind in its own session, as the real CLIs' tool commands do."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)"],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = os.environ.get("FAKE_CHILD_PIDS")
    if path:
        append_line(path, f"{child.pid}\n")


# --- argv --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    value: frozenset[str]  # options that take one value
    variadic: frozenset[str] = frozenset()  # options that swallow every following non-option
    optional: frozenset[str] = frozenset()  # options with an optional value
    dash_values: bool = True  # whether a value may start with "-" (yargs: no)


@dataclass
class Scan:
    options: list[tuple[str, str | None]] = field(default_factory=list)
    positionals: list[str] = field(default_factory=list)
    after_dashdash: list[str] | None = None

    def has(self, *names: str) -> bool:
        return any(name in names for name, _ in self.options)

    def values(self, *names: str) -> list[str]:
        return [value for name, value in self.options if name in names and value is not None]

    def value(self, *names: str) -> str | None:
        found = self.values(*names)
        return found[-1] if found else None


def scan(args: list[str], spec: Spec, stop_at_positional: bool = False) -> tuple[Scan, list[str]]:
    """Split argv into options and positionals; with stop_at_positional, also return the rest."""
    out = Scan()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out.after_dashdash = args[i + 1 :]
            return out, []
        if len(arg) > 1 and arg.startswith("-"):
            name, eq, attached = arg.partition("=") if arg.startswith("--") else (arg, "", "")
            i += 1
            if eq:
                out.options.append((name, attached))
            elif name in spec.value:
                if i < len(args) and (spec.dash_values or not args[i].startswith("-")):
                    out.options.append((name, args[i]))
                    i += 1
                else:
                    out.options.append((name, ""))
            elif name in spec.variadic:
                taken: list[str] = []
                while i < len(args) and not args[i].startswith("-"):
                    taken.append(args[i])
                    i += 1
                out.options.append((name, ",".join(taken)))
            elif name in spec.optional and i < len(args) and not args[i].startswith("-"):
                out.options.append((name, args[i]))
                i += 1
            else:
                out.options.append((name, None))
            continue
        if stop_at_positional:
            return out, args[i:]
        out.positionals.append(arg)
        i += 1
    return out, []


@dataclass
class Invocation:
    """What the argv asked for."""

    prompt_arg: str | None = None  # the prompt given in argv (None: none given)
    output_format: str = "text"
    model: str = ""
    can_write: bool = True  # whether the permission flags allow file writes
    permission_mode: str = "default"
    bypass: bool = False  # claude: bypassPermissions
    verbose: bool = False
    json_events: bool = False  # codex --json
    skip_git: bool = False
    skip_trust: bool = False
    sandbox: str = "read-only"
    approval: str = "never"
    workdir: str | None = None  # codex -C
    last_message_file: str | None = None  # codex -o
    resume: str | None = None  # the session id it asks to continue ("": the option without one)
    budget: float | None = None  # claude --max-budget-usd
    ephemeral: bool = False  # codex --ephemeral: it keeps no session


CLAUDE_SPEC = Spec(
    value=frozenset(
        {"--model", "--permission-mode", "--output-format", "--input-format", "--max-turns"}
        | {"--append-system-prompt", "--system-prompt", "--system-prompt-file", "--append-system-prompt-file"}
        | {"--settings", "--session-id", "--fallback-model", "--max-budget-usd", "--agents", "--agent"}
        | {"--setting-sources", "--permission-prompt-tool", "--json-schema", "--max-thinking-tokens"}
    ),
    variadic=frozenset(
        {"--add-dir", "--allowedTools", "--allowed-tools", "--disallowedTools", "--disallowed-tools"}
        | {"--tools", "--mcp-config", "--betas", "--plugin-dir"}
    ),
    optional=frozenset({"--debug", "-d", "--resume", "-r"}),
)
CODEX_TOP_VALUES = frozenset(
    {"-c", "--config", "-m", "--model", "-s", "--sandbox", "-a", "--ask-for-approval", "-p", "--profile"}
    | {"-C", "--cd", "--add-dir", "--local-provider", "--enable", "--disable"}
)
CODEX_TOP_SPEC = Spec(value=CODEX_TOP_VALUES, variadic=frozenset({"-i", "--image"}))
CODEX_EXEC_SPEC = Spec(
    value=(CODEX_TOP_VALUES - {"-a", "--ask-for-approval"})
    | {"--color", "-o", "--output-last-message", "--output-schema"},
    variadic=frozenset({"-i", "--image"}),
)
# `codex exec resume [OPTIONS] [SESSION_ID] [PROMPT]`: its own options, and exec's that are global in clap
CODEX_RESUME_SPEC = Spec(
    value=frozenset({"-i", "--image", "-m", "--model", "-c", "--config"}) | {"-o", "--output-last-message"}
)
CODEX_RESUME_FLAGS = (
    CODEX_RESUME_SPEC.value
    | {"--last", "--all", "--json", "--experimental-json", "--skip-git-repo-check", "--ephemeral"}
    | {"--ignore-user-config", "--ignore-rules", "--dangerously-bypass-approvals-and-sandbox", "--yolo"}
)
CODEX_RESUME_USAGE = "codex exec resume [OPTIONS] [SESSION_ID] [PROMPT]"
GEMINI_SPEC = Spec(
    value=frozenset(
        {"-m", "--model", "-p", "--prompt", "-i", "--prompt-interactive", "-o", "--output-format"}
        | {"--approval-mode", "-r", "--resume", "--input-format", "--session-summary"}
    ),
    variadic=frozenset(
        {"--allowed-tools", "--allowed-mcp-server-names", "-e", "--extensions", "--include-directories"}
    ),
    dash_values=False,  # yargs: `-p -x` leaves -p empty and reads -x as a flag
)
FORMATS = ("text", "json", "stream-json")


def clap_error(argument: str, usage: str, tip: bool = False) -> UsageError:
    hint = f"\n\n  tip: to pass '{argument}' as a value, use '-- {argument}'" if tip else ""
    return UsageError(
        f"error: unexpected argument '{argument}' found{hint}\n\nUsage: {usage}\n\nFor more information, try '--help'.",
        2,
    )


def parse_claude(args: list[str]) -> Invocation:
    s, _ = scan(args, CLAUDE_SPEC)
    inv = Invocation(output_format=s.value("--output-format") or "text", model=s.value("--model") or "")
    inv.verbose = s.has("--verbose")
    inv.permission_mode = s.value("--permission-mode") or "default"
    if s.has("--dangerously-skip-permissions"):
        inv.permission_mode = "bypassPermissions"
    inv.bypass = inv.permission_mode == "bypassPermissions"
    allowed = " ".join(s.values("--allowedTools", "--allowed-tools"))
    inv.can_write = inv.permission_mode in ("acceptEdits", "bypassPermissions") or bool(
        re.search(r"\b(Write|Edit)\b", allowed)
    )
    if s.after_dashdash:
        inv.prompt_arg = s.after_dashdash[0]
    elif s.positionals:
        inv.prompt_arg = s.positionals[-1]
    if inv.output_format not in FORMATS:
        raise UsageError(
            f"error: option '--output-format <format>' argument '{inv.output_format}' is invalid."
            " Allowed choices are text, json, stream-json."
        )
    if not s.has("-p", "--print"):
        raise UsageError("fake claude: only headless runs (-p/--print) are emulated, not the interactive UI")
    if inv.output_format == "stream-json" and not inv.verbose:
        raise UsageError("Error: When using --print, --output-format=stream-json requires --verbose")
    if s.has("--resume", "-r"):
        inv.resume = s.value("--resume", "-r") or ""
    if (budget := s.value("--max-budget-usd")) is not None:
        inv.budget = js_number(budget)
        if not inv.budget > 0:  # NaN too
            raise UsageError("--max-budget-usd must be a positive number greater than 0")
    return inv


def js_number(text: str) -> float:
    """JavaScript's Number(text): NaN for what is no number."""
    try:
        return float(text.strip() or "0")
    except ValueError:
        return float("nan")


def parse_codex(args: list[str]) -> Invocation:
    top, rest = scan(args, CODEX_TOP_SPEC, stop_at_positional=True)
    if top.has("--full-auto"):
        raise clap_error("--full-auto", "codex [OPTIONS] [PROMPT]")
    if not rest or rest[0] not in ("exec", "e"):
        if stdin_kind() != "tty":
            raise UsageError("Error: stdin is not a terminal")
        raise UsageError("fake codex: only `codex exec` is emulated, not the interactive UI")
    ex, tail = scan(rest[1:], CODEX_EXEC_SPEC, stop_at_positional=True)
    for flag in ("-a", "--ask-for-approval", "--full-auto"):
        if ex.has(flag):
            raise clap_error(flag, "codex exec [OPTIONS] [PROMPT]")
    resume = None
    if tail[:1] == ["resume"]:
        resume, words = codex_resume(ex, tail[1:])
    else:  # options may follow the prompt
        more, _ = scan(tail, CODEX_EXEC_SPEC)
        ex.options += more.options
        words = [*more.positionals, *(ex.after_dashdash or more.after_dashdash or [])]
    inv = Invocation(model=ex.value("-m", "--model") or top.value("-m", "--model") or "", resume=resume)
    inv.ephemeral = ex.has("--ephemeral")
    inv.json_events = ex.has("--json", "--experimental-json")
    inv.skip_git = ex.has("--skip-git-repo-check")
    inv.workdir = ex.value("-C", "--cd") or top.value("-C", "--cd")
    inv.last_message_file = ex.value("-o", "--output-last-message")
    inv.approval = top.value("-a", "--ask-for-approval") or "never"
    sandbox = ex.value("-s", "--sandbox") or top.value("-s", "--sandbox")
    for setting in [*top.values("-c", "--config"), *ex.values("-c", "--config")]:
        key, _, value = setting.partition("=")
        if key.strip() == "sandbox_mode" and not sandbox:
            sandbox = value.strip().strip("\"'")
    if top.has("--dangerously-bypass-approvals-and-sandbox", "--yolo") or ex.has(
        "--dangerously-bypass-approvals-and-sandbox", "--yolo"
    ):
        sandbox = "danger-full-access"
    inv.sandbox = sandbox or "read-only"
    inv.can_write = inv.sandbox in ("workspace-write", "danger-full-access")
    inv.prompt_arg = words[0] if words else None
    return inv


def codex_resume(ex: Scan, args: list[str]) -> tuple[str, list[str]]:
    """`exec ... resume [OPTIONS] SESSION_ID [PROMPT]`: the session id and the prompt's words; the options
    join exec's (clap lets exec's global ones follow the subcommand, and nothing else)."""
    sub, _ = scan(args, CODEX_RESUME_SPEC)
    for name, _value in sub.options:
        if name not in CODEX_RESUME_FLAGS:
            raise clap_error(name, CODEX_RESUME_USAGE, tip=True)
    if sub.has("--last"):
        raise UsageError("fake codex: `exec resume --last` is not emulated; give the session id")
    words = [*sub.positionals, *(sub.after_dashdash or [])]
    if len(words) > 2:
        raise clap_error(words[2], CODEX_RESUME_USAGE)
    if not words:
        raise UsageError("fake codex: `exec resume` without a session id is not emulated")
    ex.options += sub.options
    return words[0], words[1:]


def parse_gemini(args: list[str]) -> Invocation:
    s, _ = scan(args, GEMINI_SPEC)
    inv = Invocation(output_format=s.value("-o", "--output-format") or "text")
    inv.model = s.value("-m", "--model") or ""
    if inv.output_format not in FORMATS:
        raise UsageError(
            f'Invalid values:\n  Argument: output-format, Given: "{inv.output_format}",'
            ' Choices: "text", "json", "stream-json"'
        )
    if s.has("-i", "--prompt-interactive"):
        raise UsageError("fake gemini: the interactive UI (-i/--prompt-interactive) is not emulated")
    flag = s.value("-p", "--prompt")
    query = " ".join([*s.positionals, *(s.after_dashdash or [])])
    if flag is not None and query:
        raise UsageError("Cannot use both a positional prompt and the --prompt (-p) flag together")
    inv.prompt_arg = flag if flag is not None else (query or None)
    inv.permission_mode = s.value("--approval-mode") or ("yolo" if s.has("-y", "--yolo") else "default")
    inv.can_write = inv.permission_mode in ("yolo", "auto_edit")
    inv.skip_trust = s.has("--skip-trust")
    if s.has("-r", "--resume"):
        inv.resume = s.value("-r", "--resume") or "latest"  # yargs: a bare --resume is the latest session
    return inv


# --- refusals and prompt reading -----------------------------------------------------------

CLAUDE_ROOT = "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons"
CLAUDE_NO_INPUT = "Error: Input must be provided either through stdin or as a prompt argument when using --print"
CLAUDE_STDIN_WAIT = (
    "Warning: no stdin data received in 3s, proceeding without it. If piping from a slow command,"
    " redirect stdin explicitly: < /dev/null to skip, or wait longer."
)
CODEX_UNTRUSTED = "Not inside a trusted directory and --skip-git-repo-check was not specified."
GEMINI_UNTRUSTED = (
    "Gemini CLI is not running in a trusted directory. To proceed, either use `--skip-trust`, set the"
    " `GEMINI_CLI_TRUST_WORKSPACE=true` environment variable, or trust this directory in interactive mode."
)
GEMINI_NO_INPUT = (
    "No input provided via stdin. Input can be provided by piping data into gemini or using the --prompt option."
)


def refuse(cli: str, inv: Invocation) -> None:
    """The checks the real CLIs make before reading the prompt."""
    if cli == "claude":
        if inv.bypass and os.geteuid() == 0 and os.environ.get("IS_SANDBOX") != "1":
            raise UsageError(CLAUDE_ROOT, 1, "refused")
    elif cli == "codex":
        if inv.workdir:
            try:
                os.chdir(inv.workdir)
            except OSError as error:
                raise UsageError(f"Error: {error.strerror} (os error {error.errno})", 1, "refused") from None
        if not inv.skip_git and not in_git_repo(Path.cwd()):
            raise UsageError(CODEX_UNTRUSTED, 1, "refused")
    elif cli == "gemini" and not inv.skip_trust and os.environ.get("GEMINI_CLI_TRUST_WORKSPACE") != "true":
        raise UsageError(GEMINI_UNTRUSTED, 55, "refused")


def read_prompt(cli: str, inv: Invocation, kind: str) -> tuple[str, str]:
    """The prompt and where it came from ("argv" or "stdin"), read the way the real CLI reads it."""
    arg = inv.prompt_arg
    if cli == "claude":  # stdin is joined after an argv prompt; it waits 3 s for a silent pipe
        piped = ""
        if kind == "pipe":
            got = read_stdin(first_data_timeout=3.0)
            if got is None:
                eprint(CLAUDE_STDIN_WAIT)
            piped = got or ""
        elif kind in ("devnull", "other"):
            piped = read_stdin() or ""
        prompt = "\n".join(part for part in (arg, piped) if part)
        if not prompt.strip():
            raise UsageError(CLAUDE_NO_INPUT)
        return prompt, "argv" if arg else "stdin"
    if cli == "codex":  # `-` or no prompt reads stdin; an argv prompt also takes stdin as a block
        if arg is not None and arg != "-" and inv.resume is not None:
            return arg, "argv"  # resume's prompt takes no stdin block
        if arg is not None and arg != "-":
            extra = (read_stdin() or "").rstrip("\n") if kind != "tty" else ""
            if extra.strip():
                return f"{arg}\n\n<stdin>\n{extra}\n</stdin>", "argv"
            return arg, "argv"
        if kind == "tty" and arg != "-":
            raise UsageError("No prompt provided. Either specify one as an argument or pipe the prompt into stdin.")
        if arg != "-":
            eprint("Reading prompt from stdin...")
        prompt = read_stdin() or ""
        if not prompt.strip():
            raise UsageError("No prompt provided via stdin.")
        return prompt, "stdin"
    # gemini: stdin that is not a TTY is read (500 ms for the first data, 8 MB at most) and prepended
    question = arg or ""
    if kind == "tty" and not question:
        raise UsageError("fake gemini: no --prompt and stdin is a TTY; the real CLI would start its UI")
    prompt = question
    if kind != "tty":
        data = read_stdin(first_data_timeout=0.5 if kind == "pipe" else None, limit=8 * 1024 * 1024)
        if data:
            prompt = f"{data}\n\n{question}"
    if not prompt:
        raise UsageError(GEMINI_NO_INPUT)
    return prompt, "argv" if question else "stdin"


# --- sessions ------------------------------------------------------------------------------

SESSIONS = ".fake-agent-sessions"  # under $FAKE_STATE_DIR: a file per session, holding its first run's prompt
SESSION_NAME = re.compile(r"[0-9A-Za-z_-]+")  # what can name a session's file


@dataclass
class Resumed:
    session_id: str
    prompt: str  # the prompt of the session's first run: what the agent remembers of its task


class NoSession(Exception):
    """The CLI will not continue the session asked for: `reason` is unknown (no such session here), invalid
    (no session id) or none-here (gemini: no session at all in this project)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def project_key(cli: str) -> str:
    """Where the CLI keeps its sessions: claude and gemini per project (the working directory); codex in
    CODEX_HOME for every directory alike, as it resumes a session's UUID whatever the cwd."""
    where = "" if cli == "codex" else os.path.realpath(os.getcwd())
    return hashlib.sha256(where.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def session_path(cli: str, session_id: str) -> Path:
    # As the real CLIs keep theirs under the home directory: never in the project, where git would see them.
    kept = os.environ.get("FAKE_SESSIONS_DIR")
    directory = Path(kept) if kept else Path(os.environ.get("FAKE_STATE_DIR") or os.getcwd()) / SESSIONS
    return directory / f"{cli}-{project_key(cli)}-{session_id}.txt"


def keep_session(cli: str, session_id: str, prompt: str) -> None:
    """Save a new session, as the CLI saves its transcript; a continued one keeps its first prompt."""
    path = session_path(cli, session_id)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(prompt, encoding="utf-8", errors="surrogateescape")


def sessions_here(cli: str) -> list[Path]:
    """This project's sessions, oldest first."""
    found = session_path(cli, "*")
    return sorted(found.parent.glob(found.name), key=lambda path: path.stat().st_mtime_ns)


def resumed(path: Path) -> Resumed:
    session_id = path.stem.split("-", 2)[2]
    return Resumed(session_id, path.read_text(encoding="utf-8", errors="surrogateescape"))


def resume(cli: str, inv: Invocation) -> Resumed | None:
    """The session the argv asks to continue (None: a new one), found as the real CLI finds it, or NoSession."""
    asked = inv.resume
    if asked is None:
        return None
    if cli == "gemini":
        return gemini_session(asked)
    path = session_path(cli, asked) if is_uuid(asked) and SESSION_NAME.fullmatch(asked) else None
    if path is not None and path.exists():
        return resumed(path)
    if cli == "codex" and path is None:
        return None  # not a UUID: codex looks for a thread of that name, finds none, and starts a new one
    raise NoSession("unknown" if path is not None else "invalid")


def gemini_session(asked: str) -> Resumed:
    """gemini --resume: `latest`, an index into this project's sessions (1 the oldest), or a session id."""
    known = sessions_here("gemini")
    if not known:
        raise NoSession("none-here")
    if asked == "latest":
        return resumed(known[-1])
    if asked.isdigit() and 0 < int(asked) <= len(known):
        return resumed(known[int(asked) - 1])
    path = session_path("gemini", asked) if SESSION_NAME.fullmatch(asked) else None
    if path not in known:
        raise NoSession("invalid")
    return resumed(path)


# --- the run -------------------------------------------------------------------------------


@dataclass
class Failure:
    kind: str  # fail, ratelimit, auth, http, max-turns
    status: int | None = None
    delay: float | None = None  # ratelimit=SECONDS: the wait the CLI names


@dataclass
class Plan:
    """What a successful run does: the answer and the file it writes."""

    task: str
    answer: str
    filename: str | None = None
    path: Path | None = None
    content: str = ""
    allowed: bool = True


def heed(prompt: str) -> None:
    """Act on the hint a retry's prompt carries: create each file the last error says is missing."""
    hint = prompt.partition("## The previous attempt failed")[2] or prompt.partition("your last attempt did not")[2]
    root = Path.cwd().resolve()
    for name in re.findall(r"([\w./-]+) is missing", hint):
        if root in (root / name).resolve().parents:
            (root / name).write_text("fixed after the hint\n", encoding="utf-8")


def queue_subtasks(task: str, count: int) -> str:
    """Queue `count` parts and a final task after them, as a planning agent does from its shell;
    what it would report."""
    import shutil

    program = shutil.which("orchestrate") or "orchestrate"
    adds = [[f"Part {k} of {task}: Create part_{k}.md"] for k in range(1, count + 1)]
    queued: list[str] = []
    for n, args in enumerate([*adds, [f"Join the parts of {task}: Create final.md"]]):
        after = ["--after", ",".join(queued)] if n == count and queued else []
        done = subprocess.run([program, "add", *args, *after], capture_output=True, text=True, timeout=60)
        if done.returncode:
            return f"\n`orchestrate add` failed: {done.stderr.strip()}" + (
                f"\nQueued {', '.join(queued)}" if queued else ""
            )
        queued.append(done.stdout.strip())
    return f"\nQueued {', '.join(queued[:-1])}, then {queued[-1]} after them"


def make_plan(cli: str, prompt: str, can_write: bool) -> Plan:
    task = task_line(prompt)
    match = CREATE.search(prompt)
    if match:
        root = Path.cwd().resolve()
        path = (root / match.group(1)).resolve()
        if path != root and root in path.parents:
            name = match.group(1)
            content = f"Created by the fake {cli} agent for the task: {task}\n"
            if can_write:
                return Plan(task, f"Done: {task} (created {name})", name, path, content)
            answer = f"Done: {task} (could not create {name}: permission denied)"
            return Plan(task, answer, name, path, content, allowed=False)
    return Plan(task, f"Done: {task}")


def pick_failure(directives: dict[str, str], prompt: str, failing: bool) -> Failure | None:
    if "Invalid task" in prompt:
        return Failure("fail")
    if not failing:
        return None
    for kind in ("ratelimit", "auth", "max-turns", "http", "fail"):
        if kind in directives:
            status = int(number(directives, "http", 500)) if kind == "http" else None
            delay = number(directives, "ratelimit", 0.0) if kind == "ratelimit" else 0.0
            return Failure(kind, status, delay if delay > 0 else None)
    if "fail-times" in directives and not GATED & directives.keys():
        return Failure("fail")
    return None


@dataclass
class Context:
    cli: str
    inv: Invocation
    prompt: str
    directives: dict[str, str]
    failing: bool  # whether the misbehaviour directives apply to this run
    failure: Failure | None
    plan: Plan
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=lambda: STARTED)

    def on(self, name: str) -> bool:
        return name in self.directives and (name not in GATED or self.failing)

    def keep_session(self) -> None:
        if not self.inv.ephemeral:
            keep_session(self.cli, self.session_id, self.prompt)

    def elapsed_ms(self) -> int:
        """Time since the process started, plus a nominal 100 ms of model time."""
        return int((time.monotonic() - self.started) * 1000) + 100


class Agent:
    """The shared course of a run; subclasses print it in their CLI's format."""

    cli = ""
    default_model = ""
    base_input_tokens = 1000
    stderr_lines: tuple[str, ...] = ()
    keeps_failed_sessions = True  # whether a run that fails leaves a session to resume

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.model = ctx.inv.model or self.default_model
        self.streaming = True
        self.events: list[dict[str, Any]] = []  # kept for formats printed at the end
        self.input_tokens = self.base_input_tokens + len(ctx.prompt) // 4
        self.output_tokens = 20 + len(ctx.plan.answer) // 4

    # output
    def emit(self, event: dict[str, Any]) -> int:
        line = dumps(event)
        if self.streaming:
            write_stdout(line + "\n")
        else:
            self.events.append(event)
        return len(line.encode("utf-8", "replace")) + 1

    # the steps, overridden per CLI
    def init(self) -> None:
        raise NotImplementedError

    def progress(self) -> None:
        raise NotImplementedError

    def noise(self) -> None:
        raise NotImplementedError

    def bulk_events(self, index: int, text: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def work(self) -> None:
        """The events of a successful run before its result."""
        raise NotImplementedError

    def succeed(self) -> None:
        raise NotImplementedError

    def fail(self, failure: Failure) -> int:
        raise NotImplementedError

    def fails_before_init(self, failure: Failure) -> bool:
        return False

    def invalid_stream(self) -> int | None:
        """A broken stream (gemini only); None where the CLI has no such thing."""
        return None

    def over_budget(self) -> int | None:
        """The exit status of a run stopped at its budget (claude only); None if it was not."""
        return None

    @staticmethod
    def no_session(inv: Invocation, refusal: NoSession) -> int:
        """Refuse to continue the session `inv.resume` the CLI's own way; the exit status."""
        raise NotImplementedError

    def noresult(self) -> None:
        """Finish without a result object."""

    def interrupt(self, signum: int, frame: object) -> None:
        finish(1, "interrupted")

    # the course of a run
    def run(self) -> tuple[int, str]:
        ctx, d = self.ctx, self.ctx.directives
        failure = ctx.failure
        if failure and self.fails_before_init(failure):
            return self.fail(failure), failure.kind
        if ctx.on("ignore-term"):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.init()
            sleep_forever()
        self.init()
        if ctx.on("hang"):
            sleep_forever()
        if "noise" in d:
            self.noise()
        if "stderr" in d:
            for line in self.stderr_lines:
                eprint(line)
        if "sleep" in d:
            self.progress()
            time.sleep(max(number(d, "sleep", 1.0), 0.0))
        if ctx.on("crash"):
            self.crash()
        if "big" in d:
            self.bulk(int(number(d, "big", 100_000)))
        if "bigline" in d:
            self.bigline(int(number(d, "bigline", 100_000)))
        if failure:
            return self.fail(failure), failure.kind
        if "child" in d:
            spawn_grandchild()
        if ctx.on("invalid-stream"):
            code = self.invalid_stream()
            if code is not None:
                return code, "invalid-stream"
        plan = ctx.plan
        if plan.path is not None and plan.allowed:
            plan.path.parent.mkdir(parents=True, exist_ok=True)
            plan.path.write_text(plan.content, encoding="utf-8")
        if "heed" in d:
            heed(ctx.prompt)
        if "subtasks" in d:
            ctx.plan.answer += queue_subtasks(ctx.plan.task, int(number(d, "subtasks", 2)))
        self.work()
        if not self.keeps_failed_sessions:
            ctx.keep_session()
        if (code := self.over_budget()) is not None:
            return code, "budget"
        if ctx.on("noresult"):
            self.noresult()
            return 0, "noresult"
        self.succeed()
        if ctx.on("exit"):
            return int(number(d, "exit", 1)), "exit"
        return 0, "success"

    def crash(self) -> NoReturn:
        line = dumps(self.bulk_events(0, "partial output that never ends")[-1])
        write_stdout(line[: len(line) // 2])
        os._exit(3)

    def bulk(self, total: int) -> None:
        written, index = 0, 0
        while written < total:
            for event in self.bulk_events(index, filler(index, min(BULK_TEXT, total - written))):
                written += self.emit(event)
            index += 1

    def bigline(self, total: int) -> None:
        *head, last = self.bulk_events(0, "")
        for event in head:
            self.emit(event)
        envelope = len(dumps(last).encode())
        self.emit(self.bulk_events(0, filler(0, total - envelope))[-1])  # the line, without its newline


# --- Claude Code ---------------------------------------------------------------------------

CLAUDE_INVALID_SESSION = (
    "Error: --resume requires a valid session ID or session title when used with --print. Usage: claude -p"
    ' --resume <session-id|title>. Provided value "{}" is not a UUID and does not match any session title.'
)


def js_string(value: float) -> str:
    """How JavaScript prints a number: 0.5, 2."""
    return str(int(value)) if value.is_integer() else repr(value)


CLAUDE_TOOLS = [
    "Task", "Bash", "Glob", "Grep", "ExitPlanMode", "Read", "Edit", "Write", "NotebookEdit",
    "WebFetch", "TodoWrite", "WebSearch", "BashOutput", "KillShell", "SlashCommand",
]  # fmt: skip


class Claude(Agent):
    cli = "claude"
    default_model = "claude-sonnet-4-5-20250929"
    base_input_tokens = 3400
    stderr_lines = (
        "[DEBUG] fake claude: settings loaded from ~/.claude/settings.json",
        "Warning: fake claude: could not refresh the plugin marketplace (offline)",
        "[DEBUG] fake claude: session started",
    )

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.streaming = ctx.inv.output_format == "stream-json"
        self.turns = 0
        self.denials: list[dict[str, Any]] = []

    def common(self) -> dict[str, Any]:
        return {"session_id": self.ctx.session_id, "uuid": str(uuid.uuid4())}

    def init(self) -> None:
        self.emit(
            {
                "type": "system",
                "subtype": "init",
                "cwd": os.getcwd(),
                "session_id": self.ctx.session_id,
                "tools": CLAUDE_TOOLS,
                "mcp_servers": [],
                "model": self.model,
                "permissionMode": self.ctx.inv.permission_mode,
                "slash_commands": ["compact", "context", "cost", "init", "review"],
                "apiKeySource": "none",
                "claude_code_version": "2.1.0",
                "output_style": "default",
                "agents": ["general-purpose", "Explore", "Plan"],
                "skills": [],
                "plugins": [],
                "uuid": str(uuid.uuid4()),
            }
        )

    def usage(self, cost: bool = True) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens if cost else 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": self.output_tokens if cost else 0,
            "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
            "service_tier": "standard",
        }

    def cost(self) -> float:
        if "cost" in self.ctx.directives:
            return max(number(self.ctx.directives, "cost", 0.0), 0.0)
        return round(self.input_tokens * 3e-6 + self.output_tokens * 15e-6, 6)

    def over_budget(self) -> int | None:
        """--max-budget-usd: once what the run spent reaches the budget, claude ends with error_max_budget_usd."""
        budget = self.ctx.inv.budget
        if budget is None or self.cost() < budget:
            return None
        self.result(
            subtype="error_max_budget_usd",
            is_error=True,
            result=None,
            errors=[f"Reached maximum budget (${js_string(budget)})"],
        )
        return 1

    @staticmethod
    def no_session(inv: Invocation, refusal: NoSession) -> int:
        """A result of error_during_execution whose `errors` say why (no init before it), the same on stderr."""
        asked = inv.resume or ""
        if refusal.reason == "invalid":
            message, session_id = CLAUDE_INVALID_SESSION.format(asked), str(uuid.uuid4())
        else:
            message, session_id = f"No conversation found with session ID: {asked}", asked
        usage = {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0}
        result = {"type": "result", "subtype": "error_during_execution", "duration_ms": 0, "duration_api_ms": 0}
        result |= {"is_error": True, "num_turns": 0, "stop_reason": None, "session_id": session_id}
        result |= {"total_cost_usd": 0, "usage": usage, "modelUsage": {}, "permission_denials": []}
        result |= {"uuid": str(uuid.uuid4()), "errors": [message]}
        if inv.output_format == "stream-json":
            write_stdout(dumps(result) + "\n")
        elif inv.output_format == "json":
            write_stdout(dumps([result] if inv.verbose else result) + "\n")
        eprint(message)
        return 1

    def assistant(self, block: dict[str, Any], synthetic: bool = False) -> int:
        message = {
            "model": "<synthetic>" if synthetic else self.model,
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "content": [block],
            "stop_reason": "stop_sequence" if synthetic else None,
            "stop_sequence": "" if synthetic else None,
            "usage": {
                "input_tokens": 0 if synthetic else self.input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 0 if synthetic else 12,
                "service_tier": "standard",
            },
            "context_management": None,
        }
        return self.emit({"type": "assistant", "message": message, "parent_tool_use_id": None, **self.common()})

    def text(self, text: str, synthetic: bool = False) -> int:
        return self.assistant({"type": "text", "text": text}, synthetic)

    def tool_result(self, tool_use_id: str, content: str, is_error: bool = False) -> None:
        block: dict[str, Any] = {"tool_use_id": tool_use_id, "type": "tool_result", "content": content}
        if is_error:
            block["is_error"] = True
        message = {"role": "user", "content": [block]}
        self.emit({"type": "user", "message": message, "parent_tool_use_id": None, **self.common()})

    def progress(self) -> None:
        self.text(f"Working on it: {self.ctx.plan.task}")

    def noise(self) -> None:
        self.api_retry(1, 529, "overloaded", 0)

    def api_retry(self, attempt: int, status: int, error: str, delay_ms: float) -> None:
        """What claude prints before it retries an API call: the status it got and how long it waits."""
        event = {"type": "system", "subtype": "api_retry", "attempt": attempt, "max_retries": 10}
        self.emit({**event, "retry_delay_ms": delay_ms, "error_status": status, "error": error, **self.common()})

    def bulk_events(self, index: int, text: str) -> list[dict[str, Any]]:
        message = {
            "model": self.model,
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": text}],
        }
        return [{"type": "assistant", "message": message, "parent_tool_use_id": None, **self.common()}]

    def work(self) -> None:
        plan = self.ctx.plan
        self.text("I'll take care of that.")
        self.turns += 1
        if plan.path is not None:
            tool_id = new_id("toolu_")
            tool_input = {"file_path": str(plan.path), "content": plan.content}
            self.assistant({"type": "tool_use", "id": tool_id, "name": "Write", "input": tool_input})
            if plan.allowed:
                self.tool_result(tool_id, f"File created successfully at: {plan.path}")
            else:
                denial = f"Claude requested permissions to write to {plan.path}, but you haven't granted it yet."
                self.tool_result(tool_id, denial, is_error=True)
                self.denials.append({"tool_name": "Write", "tool_use_id": tool_id, "tool_input": tool_input})
            self.turns += 1
        self.text(plan.answer)

    def result(self, **fields: Any) -> None:
        event = {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "api_error_status": None,
            "duration_ms": self.ctx.elapsed_ms(),
            "duration_api_ms": max(self.ctx.elapsed_ms() - 5, 0),
            "num_turns": self.turns or 1,
            "result": self.ctx.plan.answer,
            "stop_reason": "end_turn",
            "session_id": self.ctx.session_id,
            "total_cost_usd": self.cost(),
            "usage": self.usage(),
            "modelUsage": {
                self.model: {
                    "inputTokens": self.input_tokens,
                    "outputTokens": self.output_tokens,
                    "cacheReadInputTokens": 0,
                    "cacheCreationInputTokens": 0,
                    "webSearchRequests": 0,
                    "costUSD": self.cost(),
                    "contextWindow": 200000,
                }
            },
            "permission_denials": self.denials,
            "terminal_reason": "completed",
            "uuid": str(uuid.uuid4()),
        }
        event.update(fields)
        if "result" in fields and fields["result"] is None:
            del event["result"]
        self.emit(event)
        self.flush()

    def flush(self) -> None:
        """Print what the json and text formats print at the end."""
        if self.streaming or not self.events:
            return
        result = next((e for e in reversed(self.events) if e.get("type") == "result"), None)
        if self.ctx.inv.output_format == "json":
            write_stdout(dumps(self.events if self.ctx.inv.verbose else result) + "\n")
        elif result is not None:
            text = result.get("result") or "; ".join(result.get("errors") or [])
            write_stdout(f"{text}\n")
        self.events.clear()

    def succeed(self) -> None:
        self.result()

    def fail(self, failure: Failure) -> int:
        if failure.kind == "max-turns":
            limit = int(number(self.ctx.directives, "max-turns", 1) or 1)
            self.result(
                subtype="error_max_turns",
                is_error=True,
                result=None,
                num_turns=limit + 1,
                stop_reason="tool_use",
                errors=[f"Reached maximum number of turns ({limit})"],
            )
            return 1
        status: int | None
        if failure.kind == "ratelimit" and failure.delay is not None:
            for attempt in (1, 2):  # it waits as the API's retry-after says, and says so before each retry
                self.api_retry(attempt, 429, "rate_limit", failure.delay * 1000)
            message, status = "API Error: Request rejected (429) · fake rate limit", 429
        elif failure.kind == "ratelimit":
            message, status = f"Claude AI usage limit reached|{int(time.time()) + 2}", 429
        elif failure.kind == "auth":
            message, status = "Not logged in · Please run /login", None
        elif failure.kind == "http":
            status = failure.status or 500
            message = {
                401: "Invalid API key · Fix external API key",
                429: "API Error: Request rejected (429) · fake rate limit",
                529: 'API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
            }.get(status, f"API Error: {status} fake HTTP {status} error")
        else:
            message, status = "API Error: 400 fake failure", 400
        self.text(message, synthetic=True)
        self.result(
            is_error=True,
            api_error_status=status,
            result=message,
            stop_reason="stop_sequence",
            total_cost_usd=0,
            usage=self.usage(cost=False),
            modelUsage={},
        )
        return 1

    def noresult(self) -> None:
        if not self.streaming:
            self.events.clear()  # the json and text formats print nothing without a result

    def interrupt(self, signum: int, frame: object) -> None:
        """SIGINT: an error_during_execution result and exit 0, as the real CLI does."""
        self.result(
            subtype="error_during_execution",
            is_error=True,
            result=None,
            stop_reason=None,
            errors=["Request was aborted."],
        )
        finish(0, "interrupted")


# --- Codex ---------------------------------------------------------------------------------


class Codex(Agent):
    cli = "codex"
    default_model = "gpt-5-codex"
    base_input_tokens = 9000
    stderr_lines = (
        "2025-01-01T00:00:00.000000Z  WARN codex_core::config: fake codex: ignoring unknown config key",
        "2025-01-01T00:00:00.000000Z ERROR codex_models_manager::cache: failed to load models cache (fake)",
        "2025-01-01T00:00:00.000000Z  INFO codex_exec: fake codex: session started",
    )

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.streaming = True
        self.items = 0
        self.last_message = ""

    def emit(self, event: dict[str, Any]) -> int:
        if self.ctx.inv.json_events:
            return super().emit(event)
        self.human(event)  # without --json the transcript goes to stderr
        return 0

    def human(self, event: dict[str, Any]) -> None:
        kind, item = event.get("type"), event.get("item") or {}
        if kind == "thread.started":
            inv = self.ctx.inv
            eprint(
                f"OpenAI Codex v0.169.0 (fake)\n--------\nworkdir: {os.getcwd()}\nmodel: {self.model}\n"
                f"provider: openai\napproval: {inv.approval}\nsandbox: {inv.sandbox}\n"
                f"session id: {event['thread_id']}\n--------\nuser\n{self.ctx.prompt}\n"
            )
        elif kind == "item.completed" and item.get("type") == "agent_message":
            eprint(f"codex\n{item.get('text', '')}")
        elif kind == "item.started" and item.get("type") == "command_execution":
            eprint(f"exec\n{item.get('command', '')}")
        elif kind == "turn.completed":
            usage = event.get("usage") or {}
            eprint(f"tokens used\n{usage.get('input_tokens', 0) + usage.get('output_tokens', 0):,}")
        elif kind in ("error", "turn.failed"):
            eprint(f"ERROR: {event.get('message') or (event.get('error') or {}).get('message', '')}")

    def next_id(self) -> str:
        self.items += 1
        return f"item_{self.items - 1}"

    def message(self, text: str) -> int:
        self.last_message = text
        item = {"id": self.next_id(), "type": "agent_message", "text": text}
        return self.emit({"type": "item.completed", "item": item})

    def init(self) -> None:
        self.emit({"type": "thread.started", "thread_id": self.ctx.session_id})
        self.emit({"type": "turn.started"})

    def progress(self) -> None:
        self.message(f"Working on it: {self.ctx.plan.task}")

    def noise(self) -> None:
        self.emit(
            {
                "type": "error",
                "message": "Reconnecting... 1/5 (stream disconnected before completion: error sending"
                " request for url (https://api.openai.com/v1/responses))",
            }
        )

    def bulk_events(self, index: int, text: str) -> list[dict[str, Any]]:
        item = {"id": self.next_id(), "type": "agent_message", "text": text}
        return [{"type": "item.completed", "item": item}]

    def work(self) -> None:
        plan = self.ctx.plan
        self.emit(
            {"type": "item.completed", "item": {"id": self.next_id(), "type": "reasoning", "text": "**Planning**"}}
        )
        if plan.filename is not None:
            self.message(f"I'll create {plan.filename}.")
            command = f"/bin/bash -lc \"cat > {plan.filename} <<'EOF'\n{plan.content}EOF\""
            item_id = self.next_id()
            started = {"id": item_id, "type": "command_execution", "command": command}
            self.emit({"type": "item.started", "item": {**started, "aggregated_output": "", "status": "in_progress"}})
            if plan.allowed:
                done = {"aggregated_output": "", "exit_code": 0, "status": "completed"}
            else:
                output = f"bash: line 1: {plan.filename}: Read-only file system\n"
                done = {"aggregated_output": output, "exit_code": 1, "status": "failed"}
            self.emit({"type": "item.completed", "item": {**started, **done}})
        self.message(plan.answer)

    def succeed(self) -> None:
        usage = {
            "input_tokens": self.input_tokens,
            "cached_input_tokens": 0,
            "output_tokens": self.output_tokens,
            "reasoning_output_tokens": 0,
        }
        self.emit({"type": "turn.completed", "usage": usage})
        if self.ctx.inv.last_message_file:
            Path(self.ctx.inv.last_message_file).write_text(self.last_message, encoding="utf-8")
        if not self.ctx.inv.json_events:
            write_stdout(self.last_message + "\n")

    @staticmethod
    def no_session(inv: Invocation, refusal: NoSession) -> int:
        """Its thread/resume request fails before anything is printed on stdout: anyhow's report, exit 1."""
        eprint(
            f"Error: thread/resume: thread/resume failed: no rollout found for thread id {inv.resume} (code -32600)"
            "\n\nStack backtrace:\n   0: <unknown>\n   1: <unknown>\n   2: <unknown>"
        )
        return 1

    def fail(self, failure: Failure) -> int:
        if failure.kind == "ratelimit":
            message = "exceeded retry limit, last status: 429 Too Many Requests"
        elif failure.kind == "auth":
            message = "unexpected status 401 Unauthorized: Missing bearer or basic authentication in header"
        elif failure.kind == "http":
            status = failure.status or 500
            message = {
                500: "We're currently experiencing high demand, which may cause temporary errors.",
                429: "exceeded retry limit, last status: 429 Too Many Requests",
                401: "unexpected status 401 Unauthorized: fake",
                400: '{"error":{"message":"fake HTTP 400 error","type":"invalid_request_error"}}',
            }.get(status, f"unexpected status {status}: fake HTTP {status} error")
        elif failure.kind == "max-turns":  # codex has no turn limit: just succeed
            self.work()
            self.succeed()
            return 0
        else:
            message = "unexpected status 400 Bad Request: fake failure"
        self.emit({"type": "error", "message": message})
        self.emit({"type": "turn.failed", "error": {"message": message}})
        return 1


# --- Gemini CLI ------------------------------------------------------------------------------


class Gemini(Agent):
    cli = "gemini"
    default_model = "gemini-2.5-pro"
    base_input_tokens = 400
    keeps_failed_sessions = False  # --resume does not find the session of a run that failed (seen on 0.61)
    stderr_lines = (
        "Loaded cached credentials.",
        "[WARN] fake gemini: skipping unreadable directory ./.cache",
        "[INFO] fake gemini: session started",
    )

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.streaming = ctx.inv.output_format == "stream-json"
        answer = ctx.plan.answer
        step = max(len(answer) // 3, 1)
        self.chunks = [answer[:step], answer[step : 2 * step], answer[2 * step :]]
        self.chunks = [chunk for chunk in self.chunks if chunk] or [""]
        self.sent = 0
        self.tool_calls = 0
        self.lines_added = 0

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "timestamp": iso_now(), **fields}

    def init(self) -> None:
        self.emit(self.event("init", session_id=self.ctx.session_id, model=self.model))
        self.emit(self.event("message", role="user", content=self.ctx.prompt))

    def chunk(self) -> None:
        if self.sent < len(self.chunks):
            self.emit(self.event("message", role="assistant", content=self.chunks[self.sent], delta=True))
            self.sent += 1

    def progress(self) -> None:
        self.chunk()

    def noise(self) -> None:
        message = "Agent execution blocked: a fake hook declined a tool call (harmless)"
        self.emit(self.event("error", severity="warning", message=message))

    def emit(self, event: dict[str, Any]) -> int:
        if event.get("type") == "tool_use":
            self.tool_calls += 1
        if self.streaming:
            return super().emit(event)
        return len(dumps(event).encode("utf-8", "replace")) + 1  # json and text print only at the end

    def tool(self, name: str, parameters: dict[str, Any], output: str) -> list[dict[str, Any]]:
        tool_id = f"{name}-{int(time.time() * 1000)}-{uuid.uuid4().hex[:12]}"
        return [
            self.event("tool_use", tool_name=name, tool_id=tool_id, parameters=parameters),
            self.event("tool_result", tool_id=tool_id, status="success", output=output),
        ]

    def bulk_events(self, index: int, text: str) -> list[dict[str, Any]]:
        return self.tool("read_file", {"file_path": f"bulk-{index}.txt"}, text)

    def work(self) -> None:
        plan = self.ctx.plan
        if plan.path is not None and plan.allowed:
            params = {"file_path": str(plan.path), "content": plan.content}
            for event in self.tool("write_file", params, f"Successfully created and wrote to new file: {plan.path}."):
                self.emit(event)
            self.lines_added += plan.content.count("\n")
        while self.sent < len(self.chunks):
            self.chunk()

    def stream_stats(self, duration_ms: int) -> dict[str, Any]:
        return {
            "total_tokens": self.input_tokens + self.output_tokens,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached": 0,
            "input": self.input_tokens,
            "duration_ms": duration_ms,
            "tool_calls": self.tool_calls,
        }

    def session_metrics(self) -> dict[str, Any]:
        tokens = {
            "input": self.input_tokens,
            "prompt": self.input_tokens,
            "candidates": self.output_tokens,
            "total": self.input_tokens + self.output_tokens,
            "cached": 0,
            "thoughts": 0,
            "tool": 0,
        }
        api = {"totalRequests": self.tool_calls + 1, "totalErrors": 0, "totalLatencyMs": self.ctx.elapsed_ms()}
        calls = self.tool_calls
        return {
            "models": {self.model: {"api": api, "tokens": tokens}},
            "tools": {
                "totalCalls": calls,
                "totalSuccess": calls,
                "totalFail": 0,
                "totalDurationMs": 0,
                "totalDecisions": {"accept": 0, "reject": 0, "modify": 0, "auto_accept": calls},
                "byName": {},
            },
            "files": {"totalLinesAdded": self.lines_added, "totalLinesRemoved": 0},
        }

    def pretty(self, obj: dict[str, Any]) -> str:
        return json.dumps(obj, ensure_ascii=False, indent=2)  # JSON.stringify(output, null, 2)

    def succeed(self) -> None:
        fmt = self.ctx.inv.output_format
        if fmt == "stream-json":
            self.emit(self.event("result", status="success", stats=self.stream_stats(self.ctx.elapsed_ms())))
        elif fmt == "json":
            body = {"session_id": self.ctx.session_id, "response": self.ctx.plan.answer}
            write_stdout(self.pretty({**body, "stats": self.session_metrics()}) + "\n")
        else:
            write_stdout(self.ctx.plan.answer + "\n")

    def fails_before_init(self, failure: Failure) -> bool:
        return failure.kind == "auth"  # auth is validated before the session starts

    @staticmethod
    def no_session(inv: Invocation, refusal: NoSession) -> int:
        """Its SessionError on stderr, whatever the output format, and exit 42 (FatalInputError)."""
        if refusal.reason == "none-here":
            eprint("Error resuming session: No previous sessions found for this project.")
        else:
            chats = Path.home() / ".gemini" / "tmp" / Path.cwd().name / "chats"
            eprint(
                f'Error resuming session: Invalid session identifier "{inv.resume}".\n  Searched for sessions in'
                f" {chats}.\n  Use --list-sessions to see available sessions, then use --resume {{number}},"
                " --resume {uuid}, or --resume latest."
            )
        return 42

    def fail(self, failure: Failure) -> int:
        if failure.kind == "ratelimit" and failure.delay is not None:
            kind, message, code = "RetryableQuotaError", google_429(failure.delay), 429
        elif failure.kind == "ratelimit":
            kind, message, code = ("TerminalQuotaError", "You have exhausted your daily quota on this model.", 429)
        elif failure.kind == "auth":
            kind, code = "FatalAuthenticationError", 41
            message = (
                f"Please set an Auth method in your {Path.home() / '.gemini' / 'settings.json'} or specify one"
                " of the following environment variables before running: GEMINI_API_KEY,"
                " GOOGLE_GENAI_USE_VERTEXAI, GOOGLE_GENAI_USE_GCA"
            )
        elif failure.kind == "http":
            code = failure.status or 500
            kind, message = "ApiError", f"[API Error: fake HTTP {code} error (Status: {code})]"
        elif failure.kind == "max-turns":
            kind, code = "FatalTurnLimitedError", 53
            message = (
                "Reached max session turns for this session. Increase the number of turns by specifying"
                " maxSessionTurns in settings.json."
            )
        else:
            kind, message, code = "Error", "[API Error: fake failure]", 1
        fmt = self.ctx.inv.output_format
        if fmt == "stream-json":
            error = {"type": kind, "message": message}
            self.emit(self.event("result", status="error", error=error, stats=self.stream_stats(0)))
        elif fmt == "json":
            body = {"session_id": self.ctx.session_id, "error": {"type": kind, "message": message, "code": code}}
            eprint(self.pretty(body))
        else:
            eprint(f"{kind}: {message}" if failure.kind == "ratelimit" else message)
        return code % 256

    def invalid_stream(self) -> int | None:
        garbage = '{"functionCall": {"name": "write_fi'
        message = "Invalid stream: The model returned an empty response or malformed tool call."
        fmt = self.ctx.inv.output_format
        if fmt == "stream-json":
            self.emit(self.event("message", role="assistant", content=garbage, delta=True))
            self.emit(self.event("error", severity="error", message=message))
            self.emit(self.event("result", status="error", stats=self.stream_stats(self.ctx.elapsed_ms())))
        elif fmt == "json":
            body = {"session_id": self.ctx.session_id, "response": garbage, "stats": self.session_metrics()}
            write_stdout(self.pretty({**body, "error": {"type": "INVALID_STREAM", "message": message}}) + "\n")
        else:
            write_stdout(garbage + "\n")
            eprint(f"[ERROR] {message}")
        return 0

    def interrupt(self, signum: int, frame: object) -> None:
        finish(0, "interrupted")  # a run ended by a signal exits 0


def google_429(delay: float) -> str:
    """Gemini's message for a per-minute quota: the API's own 429 body, whose RetryInfo names the wait."""
    seconds = f"{delay:g}s"
    violation = {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}
    violation["quotaId"] = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": seconds},
    ]
    said = f"You exceeded your current quota, please check your plan and billing details. Please retry in {seconds}."
    body = {"error": {"code": 429, "message": said, "status": "RESOURCE_EXHAUSTED", "details": details}}
    return f"[API Error: got status: 429 Too Many Requests. {dumps(body)}]"


AGENTS: dict[str, type[Agent]] = {"claude": Claude, "codex": Codex, "gemini": Gemini}
PARSERS = {"claude": parse_claude, "codex": parse_codex, "gemini": parse_gemini}


def finish(code: int, outcome: str) -> NoReturn:
    record({"pid": os.getpid(), "done": True, "outcome": outcome, "exit_code": code, "time": time.time()})
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)


def main(cli: str) -> NoReturn:
    """Run as the fake `cli` (claude, codex or gemini) with sys.argv."""
    if cli not in AGENTS:
        raise SystemExit(f"fake_agent: unknown CLI {cli!r}")
    kind = stdin_kind()
    start = {
        "cli": cli,
        "argv": sys.argv[1:],
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "stdin_was": kind,
    }
    env = {key: value for key, value in os.environ.items() if RECORD_ENV.match(key)}
    try:
        inv = PARSERS[cli](sys.argv[1:])
        refuse(cli, inv)
        prompt, source = read_prompt(cli, inv, kind)
    except UsageError as error:
        record({**start, "prompt": None, "prompt_source": None, "env": env, "time": time.time()})
        eprint(error.message)
        finish(error.code, error.outcome)
    start |= {"prompt": prompt, "prompt_source": source, "env": env}
    try:
        session = resume(cli, inv)
    except NoSession as refusal:
        record({**start, "refused_session": inv.resume, "time": time.time()})
        finish(AGENTS[cli].no_session(inv, refusal), "no-session")
    record({**start, **({"resumed": session.session_id} if session else {}), "time": time.time()})

    # A continued session remembers its task: its first prompt steers the run as much as this one does.
    own = f"{own_words(session.prompt)}\n\n{own_words(prompt)}" if session else own_words(prompt)
    heard = f"{session.prompt}\n\n{prompt}" if session else prompt
    directives = parse_directives(own)
    failing = True
    if "fail-times" in directives:
        failing = bump_run_count(directives, own) <= number(directives, "fail-times", 1)
    plan = make_plan(cli, own, inv.can_write or os.environ.get("FAKE_ENFORCE_PERMISSIONS") != "1")
    if directives.get("echo"):
        quoted = [line.strip() for line in heard.splitlines() if directives["echo"] in DIRECTIVE.sub("", line)]
        plan.answer += "".join(f"\nI read: {line}" for line in quoted)
    ctx = Context(
        cli=cli,
        inv=inv,
        prompt=prompt,
        directives=directives,
        failing=failing,
        failure=pick_failure(directives, own, failing),
        plan=plan,
    )
    if session:
        ctx.session_id = session.session_id
    agent = AGENTS[cli](ctx)
    if agent.keeps_failed_sessions:
        ctx.keep_session()
    signal.signal(signal.SIGINT, agent.interrupt)
    code, outcome = agent.run()
    finish(code, outcome)
