"""Read config.yaml into a Config, validating every key on the way in: the commands' edge."""

# No `from __future__ import annotations` here: NamedTuple compiles each string annotation into
# a ForwardRef, half the cost of the class, and every command imports this module.

import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from orchestrate.core.config import AgentConfig, Config, ContextConfig, TaskQueueConfig
from orchestrate.core.errors import ConfigError, UsageError
from orchestrate.inline_code import prompt_as_code

AGENT_TYPES = ("claude", "codex", "gemini", "command")
DEFAULT_COMMANDS = {
    "claude": "claude --dangerously-skip-permissions",
    "codex": "codex --ask-for-approval never --sandbox danger-full-access exec",
    "gemini": "gemini --approval-mode yolo --skip-trust",
}


MAX_SLOTS = 100  # slots of one agent: more is a typo, and would take the machine
LARGEST = 1e9  # seconds or minutes: a bound well past any real wait, and below what a clock can add (not .inf)
# The kinds of value a key may hold: a test, and what to tell a user whose value fails it.
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "count": (lambda v: type(v) is int and v > 0, "a positive integer"),
    "slots": (lambda v: type(v) is int and 0 < v <= MAX_SLOTS, f"a whole number from 1 to {MAX_SLOTS}"),
    "count0": (lambda v: type(v) is int and v >= 0, "a whole number, 0 or more"),
    "number": (lambda v: type(v) in (int, float) and 0 < v <= LARGEST, f"a positive number, at most {LARGEST:g}"),
    "number0": (lambda v: type(v) in (int, float) and 0 <= v <= LARGEST, f"a number from 0 to {LARGEST:g}"),
    "flag": (lambda v: type(v) is bool, "true or false"),
    "text": (lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
    "command": (
        lambda v: bool(v) and (isinstance(v, str) or (type(v) is list and all(type(x) is str for x in v))),
        "a command: a string, or a list of strings",
    ),
    "env": (lambda v: type(v) is dict, "a mapping of variable names to values"),
    "commands": (
        lambda v: isinstance(v, str) or (type(v) is list and all(isinstance(x, str) and x.strip() for x in v)),
        "a shell command, or a list of them",
    ),
    "paths": (lambda v: type(v) is list and all(isinstance(x, str) and x.strip() for x in v), "a list of file names"),
    "workspace": (lambda v: v in ("shared", "worktree"), "shared or worktree"),
    "merge": (lambda v: v in ("manual", "auto"), "manual or auto"),
    "port": (lambda v: type(v) is int and 0 < v < 65536, "a port number, 1 to 65535"),
    "exit": (lambda v: type(v) is int and 0 < v < 256, "an exit status, 1 to 255"),
    "regex": (lambda v: isinstance(v, str) and bool(v) and _compiles(v), "a regular expression (Python syntax)"),
}
SECTIONS: dict[str, dict[str, tuple[str, Any]]] = {  # key: (kind, default); "?" allows null
    "task_queue": {
        "database": ("text", "tasks.db"),
        "timeout_minutes": ("number", 30.0),
        "max_retries": ("count0", 3),
        "retry_delay_seconds": ("number0", 60.0),
        "kill_grace_seconds": ("number0", 30.0),
        # The runs feature's (orchestrate/runs.py): the default idle timeout, and the spending cap.
        "idle_timeout_seconds": ("number0", 900.0),
        "max_cost_usd": ("number?", None),
        # The plans feature's (orchestrate/plans.py): how many tasks one task's agent may queue.
        "max_subtasks": ("count0", 20),
        # The PostgreSQL backend's (orchestrate/postgres), read only when database is a URL.
        "head_name": ("text?", None),
        "lease_seconds": ("number", 60.0),
        "max_interruptions": ("count0", 3),
    },
    "context": {
        "directory": ("text", "context"),
        "update_on_completion": ("flag", True),
        "inline_max_kb": ("count", 32),
        "prompt_max_kb": ("count", 128),
    },
    "performance": {"max_memory_mb": ("count?", 4096)},
    "dashboard": {"port": ("port?", None), "host": ("text", "127.0.0.1"), "token": ("text?", None)},
}
# Top-level keys: where and how each task runs, and what it must pass to count as completed.
WORKSPACE_KEYS: dict[str, tuple[str, Any]] = {
    "workspace": ("workspace", "shared"),
    "workspace_files": ("paths", []),
    "setup": ("text?", None),
    "verify": ("commands", []),
    "verify_timeout_seconds": ("number", 600.0),
    "require_changes": ("flag", False),
    "merge": ("merge", "manual"),
    "remote": ("text", "origin"),  # on a PostgreSQL queue: where task branches travel between machines
}
# What happens, for `hooks:` (orchestrate/hooks.py): each event may run shell commands.
HOOK_EVENTS = (
    "task_completed",
    "task_failed",
    "task_cancelled",
    "agent_cooling",
    "agent_unavailable",
    "queue_idle",
    "head_stopped",
)
HOOKS_TIMEOUT = ("hooks_timeout_seconds", ("number", 30.0))  # a top-level key: how long one hook may run
AGENT_KEYS: dict[str, tuple[str, Any]] = {
    "type": ("text?", None),
    "command": ("command?", None),
    "max_instances": ("slots", 1),
    "timeout_seconds": ("number?", None),
    "env": ("env", {}),
    "verify": ("commands?", None),
    # A command agent says nothing structured about limits: these mark a failure as a rate limit.
    "rate_limit_exit_code": ("exit?", None),
    "rate_limit_pattern": ("regex?", None),
}
# The runs feature's keys of an agent entry (orchestrate/runs.py), kept apart from the core's.
AGENT_RUN_KEYS: dict[str, tuple[str, Any]] = {
    "idle_timeout_seconds": ("number0?", None),  # None: task_queue's; 0: no limit
    "resume": ("flag", True),
    "max_cost_usd": ("number?", None),  # what one claude run may spend (--max-budget-usd)
}

# The PostgreSQL backend's keys of an agent entry (orchestrate/postgres), read only on such a queue.
AGENT_SHARED_KEYS: dict[str, tuple[str, Any]] = {
    "max_total": ("count?", None),  # running at once across every machine; max_instances is this machine's
    "cooling_key": ("text?", None),  # agents with one key (an account) cool together; default: the entry's name
}


def _compiles(pattern: str) -> bool:
    import re  # only for a configuration that sets a pattern

    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def _values(data: Any, where: str, spec: dict[str, tuple[str, Any]], sep: str = ".") -> dict[str, Any]:
    """Check `data` against `spec`, naming the key path of the first thing wrong."""
    data = {} if data is None else data
    if type(data) is not dict:
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    for key in data:
        if key not in spec:
            raise ConfigError(f"{where}{sep}{key}: unknown key (known: {', '.join(spec)})")
    values = {}
    for key, (kind, default) in spec.items():
        value = data.get(key, default)
        test, expected = KINDS[kind.rstrip("?")]
        if not (value is default or (value is None and kind.endswith("?")) or test(value)):
            raise ConfigError(f"{where}{sep}{key}: expected {expected}, got {value!r}")
        values[key] = value
    return values


def _agent(name: str, data: Any, where: str) -> tuple[AgentConfig, dict[str, Any]]:
    """The entry's AgentConfig, and its settings for the runs feature and the PostgreSQL backend."""
    values = _values(data, where, AGENT_KEYS | AGENT_RUN_KEYS | AGENT_SHARED_KEYS)
    runs = {key: values.pop(key) for key in (*AGENT_RUN_KEYS, *AGENT_SHARED_KEYS)}
    kind = values.pop("type") or name
    if kind not in AGENT_TYPES:
        if kind != name:
            raise ConfigError(f"{where}.type: expected one of {', '.join(AGENT_TYPES)}, got {kind!r}")
        raise ConfigError(f"{where}: {name!r} is not an agent type, so the entry needs type: ({'|'.join(AGENT_TYPES)})")
    command = values.pop("command") or DEFAULT_COMMANDS.get(kind)
    if not command:
        raise ConfigError(f"{where}.command: required for a command agent")
    try:
        argv = tuple(shlex.split(command) if isinstance(command, str) else command)
    except ValueError as exc:  # unbalanced quotes
        raise ConfigError(f"{where}.command: cannot split it: {exc}") from None
    if not argv or not argv[0].strip():
        raise ConfigError(f"{where}.command: names no program; give the program to run and its arguments")
    if found := prompt_as_code(argv):
        raise ConfigError(f"{where}.command: {found.problem}")
    if kind != "command" and (values["rate_limit_exit_code"] or values["rate_limit_pattern"]):
        raise ConfigError(
            f"{where}: rate_limit_exit_code and rate_limit_pattern are for command agents; {kind} reports its limits itself"
        )
    if (checks := values.pop("verify")) is not None:
        values["verify"] = commands(checks)
    env = {str(k): v for k, v in values.pop("env").items()}
    for key, value in env.items():
        _variable(key, value, f"{where}.env")
    return AgentConfig(name=name, type=kind, command=argv, env={k: str(v) for k, v in env.items()}, **values), runs


def _variable(key: str, value: Any, where: str) -> None:
    """Refuse an env entry no process can be given: execve takes NAME=VALUE strings ending in NUL."""
    why = "it is empty" if not key else 'it contains "="' if "=" in key else "it contains NUL" if "\0" in key else ""
    if why:
        import json  # only to show the name, escapes and all, in one line

        raise ConfigError(
            f"{where}: {json.dumps(key, ensure_ascii=False)} is not a variable name ({why});"
            ' name each variable with letters, digits and _, e.g. MY_FLAG: "1"'
        )
    if type(value) not in (str, int, float):
        raise ConfigError(f"{where}.{key}: expected a string or number (quote it), got {value!r}")
    if "\0" in str(value):
        raise ConfigError(f"{where}.{key}: the value contains NUL, which no environment variable can hold; remove it")


def commands(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def read_yaml(path: Path, error: type[Exception] = ConfigError, missing_ok: bool = False) -> Any:
    """The YAML data in `path`, or `error` with one line that says what is wrong and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return None
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        # safe_load's rules, with libyaml's speed when present: every command loads this file
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{path}: {where}invalid YAML: {problem}") from None


def load(path: Path, *, required: bool = False) -> Config:
    """Read and validate `path`; a missing optional file gives the defaults."""
    label = str(path)
    if required and not path.exists():
        raise ConfigError(f"{label}: no such configuration file")
    data = read_yaml(path, missing_ok=True)
    if data is not None and type(data) is not dict:
        raise ConfigError(f"{label}: expected a mapping, got {data!r}")
    return parse(data or {}, label, path.resolve().parent, path)


def _postgres(queue: dict[str, Any], label: str, root: Path, mode: str, agents: dict[str, dict[str, Any]]) -> Any:
    """The PostgreSQL backend's settings when the queue is a URL ($ORCHESTRATE_DATABASE first);
    the queue's `database` then names the file this project's head locks."""
    import os

    own = {k: queue.pop(k) for k in ("head_name", "lease_seconds", "max_interruptions")}
    database = os.environ.get("ORCHESTRATE_DATABASE") or queue["database"]
    if not database.startswith(("postgresql://", "postgres://")):
        queue["database"] = database
        return None
    from orchestrate import postgres  # only now: it needs the optional psycopg

    if own["lease_seconds"] < 5:
        raise ConfigError(f"{label}: task_queue.lease_seconds: at least 5 (the head renews leases every second)")
    if mode != "worktree":
        raise ConfigError(
            f"{label}: workspace: a PostgreSQL queue needs workspace: worktree, so that each task's work"
            " travels on its branch between machines"
        )
    queue["database"] = str(root / ".orchestrate" / "postgres.lock")
    return postgres.settings_from(database, own, agents)


def parse(data: dict[str, Any], label: str, root: Path, path: Path) -> Config:
    """Build a Config from already-loaded YAML data."""
    known = ("agents", *SECTIONS, *WORKSPACE_KEYS, "hooks", HOOKS_TIMEOUT[0])
    for key in data:
        if key not in known:
            raise ConfigError(f"{label}: {key}: unknown key (known: {', '.join(known)})")
    queue, context, performance, dashboard = (_values(data.get(s), f"{label}: {s}", SECTIONS[s]) for s in SECTIONS)
    if not dashboard["token"] and not is_loopback(dashboard["host"]):
        raise ConfigError(
            f"{label}: dashboard.token: required when dashboard.host is {dashboard['host']!r}, which is not"
            " loopback: anyone who can reach the port could cancel tasks"
        )
    top = _values({k: v for k, v in data.items() if k in WORKSPACE_KEYS}, label, WORKSPACE_KEYS, ": ")
    workspace = WorkspaceConfig(
        top["workspace"], tuple(top["workspace_files"]), top["setup"], commands(top["verify"]),
        top["verify_timeout_seconds"], top["require_changes"], top["merge"], top["remote"],
    )  # fmt: skip
    agents = data.get("agents", {"claude": {}})
    if agents and type(agents) is not dict:
        raise ConfigError(
            f"{label}: agents: expected a mapping of agent names to settings, got {agents!r};"
            " write each agent as a key, e.g. agents: {claude: {}}"
        )
    if not agents:
        raise ConfigError(f"{label}: agents: no agents configured; add at least one (e.g. claude: {{}})")
    entries = {str(name): _agent(str(name), spec, f"{label}: agents.{name}") for name, spec in agents.items()}
    hooks = _values(data.get("hooks"), f"{label}: hooks", {e: ("commands?", None) for e in HOOK_EVENTS})
    hooks_timeout = _values(
        {k: v for k, v in data.items() if k == HOOKS_TIMEOUT[0]}, label, dict([HOOKS_TIMEOUT]), ": "
    )
    max_subtasks = queue.pop("max_subtasks")
    shared = {n: {k: run[k] for k in AGENT_SHARED_KEYS} for n, (_, run) in entries.items()}
    postgres = _postgres(queue, label, root, workspace.mode, shared)
    runs = RunSettings(
        queue.pop("idle_timeout_seconds"),
        queue.pop("max_cost_usd"),
        {n: run for n, (_, run) in entries.items()},
        performance["max_memory_mb"],
    )
    return Config(
        path=path,
        root=root,
        agents=tuple(agent for agent, _ in entries.values()),
        task_queue=TaskQueueConfig(**queue | {"database": root / queue["database"]}),
        context=ContextConfig(root / context.pop("directory")),
        features={
            "workspace": workspace,
            "dashboard": DashboardConfig(**dashboard),
            "context": SharedContext(**context),
            "runs": runs,
            "plans": max_subtasks,
            **({"postgres": postgres} if postgres else {}),
            "hooks": HookSettings({e: commands(c) for e, c in hooks.items() if c}, hooks_timeout[HOOKS_TIMEOUT[0]]),
        },
    )


class WorkspaceConfig(NamedTuple):
    """The workspace feature's settings: the top-level keys of where and how each task runs."""

    mode: str = "shared"  # or "worktree": each task on its own branch, in its own checkout
    files: tuple[str, ...] = ()  # copied into each worktree (untracked files such as .env)
    setup: str | None = None  # a shell command run in the worktree before each attempt
    verify: tuple[str, ...] = ()  # shell commands that must all exit 0 for a task to complete
    verify_timeout_seconds: float = 600
    require_changes: bool = False
    merge: str = "manual"  # or "auto": a task that completes is merged into the current branch
    remote: str = "origin"  # a PostgreSQL queue's: the git remote task branches are pushed to and fetched from


class DashboardConfig(NamedTuple):
    """The dashboard's settings, its section of the file."""

    port: int | None = None  # set: the head serves the dashboard itself
    host: str = "127.0.0.1"
    token: str | None = None


class RunSettings(NamedTuple):
    """The runs feature's settings (orchestrate/runs.py), which the watchdog and the spending cap read too."""

    idle_timeout_seconds: float = 900.0  # task_queue's: the default for every agent; 0: none
    max_cost_usd: float | None = None  # task_queue's: the spending that holds claiming
    agents: Mapping[str, Mapping[str, Any]] = {}  # by agent name: idle_timeout_seconds, resume, max_cost_usd
    max_memory_mb: int | None = 4096  # performance's: what one agent's processes may hold, for the watchdog

    def idle_timeout(self, agent: str) -> float:
        own = self.agents.get(agent, {}).get("idle_timeout_seconds")
        return self.idle_timeout_seconds if own is None else own

    def resumes(self, agent: str) -> bool:
        return bool(self.agents.get(agent, {}).get("resume", True))

    def budget(self, agent: str) -> float | None:
        return self.agents.get(agent, {}).get("max_cost_usd")


class HookSettings(NamedTuple):
    """The hooks feature's settings (orchestrate/hooks.py): `hooks:` and `hooks_timeout_seconds`."""

    commands: Mapping[str, tuple[str, ...]] = {}  # by event: the shell commands it runs, in order
    timeout_seconds: float = 30.0


class SharedContext(NamedTuple):
    """The context feature's settings (the section's directory is the core's)."""

    update_on_completion: bool = True
    inline_max_kb: int = 32  # a larger context file is named in the prompt, not copied into it
    prompt_max_kb: int = 128  # all the context copied into one prompt


def agent_names(cfg: Config) -> set[str]:
    """Every value a task's preferred agent can match: entry names and adapter types."""
    return {a.name for a in cfg.agents} | {a.type for a in cfg.agents}


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host in ("127.0.0.1", "localhost", "::1"):
        return True
    import ipaddress  # only for a host that is not the default

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def with_slots(cfg: Config, spec: str) -> Config:
    """Replace the agents by `--agents claude:2,codex:1`: these agents, with this many slots each."""
    agents = []
    for part in spec.split(","):
        name, _, count = part.strip().partition(":")
        if not count.isdigit() or int(count) < 1:
            raise UsageError(f"--agents: expected NAME:COUNT with COUNT 1 or more, got {part.strip()!r}")
        agent = next((a for a in cfg.agents if a.name == name), None)
        if agent is None and name not in DEFAULT_COMMANDS:
            known = ", ".join(sorted({a.name for a in cfg.agents} | set(DEFAULT_COMMANDS)))
            raise UsageError(f"--agents: no agent {name!r} is configured (known: {known})")
        agent = agent or AgentConfig(name, name, tuple(shlex.split(DEFAULT_COMMANDS[name])))
        agents.append(agent._replace(max_instances=int(count)))
    return cfg._replace(agents=tuple(agents))
