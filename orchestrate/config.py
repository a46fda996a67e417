"""Load config.yaml into frozen dataclasses, validating every key on the way in."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from orchestrate.errors import ConfigError, UsageError

AGENT_TYPES = ("claude", "codex", "gemini", "command")
DEFAULT_COMMANDS = {
    "claude": "claude --dangerously-skip-permissions",
    "codex": "codex --ask-for-approval never --sandbox danger-full-access exec",
    "gemini": "gemini --approval-mode yolo --skip-trust",
}


@dataclass(frozen=True)
class AgentConfig:
    name: str
    type: str
    command: tuple[str, ...]
    max_instances: int = 1
    timeout_seconds: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskQueueConfig:
    database: Path
    timeout_minutes: float = 30
    max_retries: int = 3
    retry_delay_seconds: float = 60
    kill_grace_seconds: float = 30


@dataclass(frozen=True)
class ContextConfig:
    directory: Path
    update_on_completion: bool = True


@dataclass(frozen=True)
class PerformanceConfig:
    max_memory_mb: int | None = 4096


@dataclass(frozen=True)
class Config:
    path: Path
    root: Path  # the project directory: relative paths in the file are resolved against it
    agents: tuple[AgentConfig, ...]
    task_queue: TaskQueueConfig
    context: ContextConfig
    performance: PerformanceConfig

    @property
    def runtime_dir(self) -> Path:
        return self.root / ".orchestrate"

    def with_database(self, database: Path) -> Config:
        return replace(self, task_queue=replace(self.task_queue, database=database))

    def with_slots(self, spec: str) -> Config:
        """Replace the agents by `--agents claude:2,codex:1`: these agents, with this many slots each."""
        agents = []
        for part in spec.split(","):
            name, _, count = part.strip().partition(":")
            if not count.isdigit() or int(count) < 1:
                raise UsageError(f"--agents: expected NAME:COUNT with COUNT 1 or more, got {part.strip()!r}")
            agent = next((a for a in self.agents if a.name == name), None)
            if agent is None and name not in DEFAULT_COMMANDS:
                known = ", ".join(sorted({a.name for a in self.agents} | set(DEFAULT_COMMANDS)))
                raise UsageError(f"--agents: no agent {name!r} is configured (known: {known})")
            agent = agent or AgentConfig(name, name, tuple(shlex.split(DEFAULT_COMMANDS[name])))
            agents.append(replace(agent, max_instances=int(count)))
        return replace(self, agents=tuple(agents))

    def agent_names(self) -> set[str]:
        """Every value a task's preferred agent can match: entry names and adapter types."""
        return {a.name for a in self.agents} | {a.type for a in self.agents}


Check = Callable[[Any, str], Any]


def _fail(where: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{where}: expected {expected}, got {value!r}")


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise _fail(where, "a positive integer", value)


def _non_negative_int(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _fail(where, "a whole number, 0 or more", value)


def _number(minimum: float, strict: bool) -> Check:
    def check(value: Any, where: str) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and (value > minimum if strict else value >= minimum):
            return float(value)
        raise _fail(where, "a positive number" if strict else "a number, 0 or more", value)

    return check


def _optional(check: Check) -> Check:
    return lambda value, where: None if value is None else check(value, where)


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    raise _fail(where, "true or false", value)


def _text(value: Any, where: str) -> str:
    if isinstance(value, str) and value.strip():
        return value
    raise _fail(where, "a non-empty string", value)


def _command(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    try:
        argv = tuple(shlex.split(_text(value, where)))
    except ValueError as exc:  # unbalanced quotes
        raise ConfigError(f"{where}: cannot split the command: {exc}") from None
    return argv


def _env(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(where, "a mapping of variable names to values", value)
    env = {}
    for key, val in value.items():
        if not isinstance(val, (str, int, float)) or isinstance(val, bool):
            raise _fail(f"{where}.{key}", "a string or number (quote it)", val)
        env[str(key)] = str(val)
    return env


def _mapping(data: Any, where: str) -> dict[str, Any]:
    if data is None:
        return {}
    if isinstance(data, dict):
        return data
    raise _fail(where, "a mapping", data)


def _fields(data: Any, where: str, spec: dict[str, tuple[Check, Any]]) -> dict[str, Any]:
    """Check `data` against `spec` (name: (check, default)), naming the key path on error."""
    data = _mapping(data, where)
    for key in data:
        if key not in spec:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(spec)})")
    out = {}
    for key, (check, default) in spec.items():
        out[key] = check(data[key], f"{where}.{key}") if key in data else default
    return out


AGENT_FIELDS: dict[str, tuple[Check, Any]] = {
    "type": (_text, None),
    "command": (_command, None),
    "max_instances": (_positive_int, 1),
    "timeout_seconds": (_optional(_number(0, strict=True)), None),
    "env": (_env, {}),
}


def _agent(name: str, data: Any, where: str) -> AgentConfig:
    values = _fields(data, where, AGENT_FIELDS)
    explicit = values.pop("type")
    kind = explicit or name
    if kind not in AGENT_TYPES:
        if explicit:
            raise _fail(f"{where}.type", f"one of {', '.join(AGENT_TYPES)}", explicit)
        raise ConfigError(
            f"{where}: {name!r} is not an agent type, so the entry needs"
            f" type: (one of {', '.join(AGENT_TYPES)})"
        )
    if values["command"] is None:
        if kind == "command":
            raise ConfigError(f"{where}.command: required for a command agent")
        values["command"] = tuple(shlex.split(DEFAULT_COMMANDS[kind]))
    return AgentConfig(name=name, type=kind, **values)


def _agents(data: Any, where: str) -> tuple[AgentConfig, ...]:
    entries = _mapping(data, where) if data is not None else {"claude": {}}
    if not entries:
        raise ConfigError(f"{where}: no agents configured; add at least one (e.g. claude: {{}})")
    return tuple(_agent(str(name), spec, f"{where}.{name}") for name, spec in entries.items())


def _path(root: Path) -> Check:
    return lambda value, where: root / _text(value, where)


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
    return parse(_mapping(data, label), label, path.resolve().parent, path)


def parse(data: dict[str, Any], label: str, root: Path, path: Path) -> Config:
    """Build a Config from already-loaded YAML data."""
    sections = {"agents", "task_queue", "context", "performance"}
    for key in data:
        if key not in sections:
            raise ConfigError(f"{label}: {key}: unknown section (known: {', '.join(sorted(sections))})")
    queue = _fields(
        data.get("task_queue"),
        f"{label}: task_queue",
        {
            "database": (_path(root), root / "tasks.db"),
            "timeout_minutes": (_number(0, strict=True), 30.0),
            "max_retries": (_non_negative_int, 3),
            "retry_delay_seconds": (_number(0, strict=False), 60.0),
            "kill_grace_seconds": (_number(0, strict=False), 30.0),
        },
    )
    context = _fields(
        data.get("context"),
        f"{label}: context",
        {"directory": (_path(root), root / "context"), "update_on_completion": (_bool, True)},
    )
    performance = _fields(
        data.get("performance"),
        f"{label}: performance",
        {"max_memory_mb": (_optional(_positive_int), 4096)},
    )
    return Config(
        path=path,
        root=root,
        agents=_agents(data.get("agents"), f"{label}: agents"),
        task_queue=TaskQueueConfig(**queue),
        context=ContextConfig(**context),
        performance=PerformanceConfig(**performance),
    )
