"""The configuration loader: defaults, the seed's shape, validation errors and the global options."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import orchestrate

from orchestrate import configfile, runs, workspace
from orchestrate.core import config
from orchestrate.core.errors import ConfigError

REPO = Path(__file__).parent.parent

SEED = """\
agents:
  claude:
    command: "claude --dangerously-skip-permissions"
    max_instances: 2
  codex:
    command: "codex --ask-for-approval never --sandbox danger-full-access exec"
    max_instances: 3

task_queue:
  database: "tasks.db"
  timeout_minutes: 30
  max_retries: 3

context:
  directory: "./context"
  update_on_completion: true
"""


def load_text(text: str, name: str = "c.yaml") -> config.Config:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return configfile.load(path)


@pytest.mark.parametrize("text", [None, "", "# only a comment\n"])
def test_missing_or_empty_file_gives_the_defaults(project: Path, text: str | None) -> None:
    if text is not None:
        Path("config.yaml").write_text(text)
    cfg = configfile.load(Path("config.yaml"))
    root = project.resolve()
    assert cfg.root == root
    assert [(a.name, a.type, a.max_instances) for a in cfg.agents] == [("claude", "claude", 1)]
    assert cfg.agents[0].command == ("claude", "--dangerously-skip-permissions")
    assert cfg.task_queue == config.TaskQueueConfig(
        database=root / "tasks.db", timeout_minutes=30, max_retries=3, retry_delay_seconds=60, kill_grace_seconds=30
    )
    assert cfg.context == config.ContextConfig(directory=root / "context")
    assert runs.settings(cfg).max_memory_mb == 4096
    assert workspace.settings(cfg) == workspace.WorkspaceConfig(
        mode="shared", verify=(), require_changes=False, merge="manual"
    )


def test_workspace_keys_load() -> None:
    cfg = load_text(
        "workspace: worktree\nworkspace_files: [.env]\nsetup: pip install -e .\nverify: pytest -q\n"
        "require_changes: true\nmerge: auto\nagents:\n  codex:\n    verify: [make lint, make test]\n"
    )
    assert workspace.settings(cfg) == workspace.WorkspaceConfig(
        mode="worktree", files=(".env",), setup="pip install -e .", verify=("pytest -q",), require_changes=True,
        merge="auto",
    )  # fmt: skip
    assert cfg.agents[0].verify == ("make lint", "make test")


def test_the_seed_shape_loads(project: Path) -> None:
    cfg = load_text(SEED)
    root = project.resolve()
    claude, codex = cfg.agents
    assert (claude.name, claude.type, claude.max_instances) == ("claude", "claude", 2)
    assert claude.command == ("claude", "--dangerously-skip-permissions")
    assert (codex.name, codex.type, codex.max_instances) == ("codex", "codex", 3)
    assert codex.command == ("codex", "--ask-for-approval", "never", "--sandbox", "danger-full-access", "exec")
    assert cfg.task_queue.database == root / "tasks.db"
    assert (cfg.task_queue.timeout_minutes, cfg.task_queue.max_retries) == (30, 3)
    assert cfg.context == config.ContextConfig(directory=root / "context")


def test_commands_are_shell_split_and_lists_kept_as_given() -> None:
    cfg = load_text(
        "agents:\n"
        "  quoted: {type: command, command: \"my-agent --name 'two words' {prompt}\"}\n"
        '  listed: {type: command, command: ["my agent", "--flag=a b"]}\n'
    )
    assert cfg.agents[0].command == ("my-agent", "--name", "two words", "{prompt}")
    assert cfg.agents[1].command == ("my agent", "--flag=a b")


def test_freely_named_entries_and_env() -> None:
    cfg = load_text("agents:\n  fast:\n    type: claude\n    env: {A: 1, B: 2.5, C: text}\n")
    (fast,) = cfg.agents
    assert (fast.name, fast.type) == ("fast", "claude")
    assert fast.command == ("claude", "--dangerously-skip-permissions")
    assert dict(fast.env) == {"A": "1", "B": "2.5", "C": "text"}
    assert configfile.agent_names(cfg) == {"fast", "claude"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("agents:\n  helper: {}\n", "c.yaml: agents.helper: 'helper' is not an agent type"),
        ("agents:\n  x: {type: robot}\n", "c.yaml: agents.x.type: expected one of claude, codex"),
        ("agents:\n  x: {type: command}\n", "c.yaml: agents.x.command: required for a command agent"),
        (
            "agents:\n  claude: {env: {FLAG: true}}\n",
            "c.yaml: agents.claude.env.FLAG: expected a string or number (quote it), got True",
        ),
    ],
    ids=["untyped-name", "bad-type", "command-without-command", "bool-env"],
)
def test_invalid_agent_entries(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(text)
    assert str(err.value).startswith(message)


def test_relative_paths_resolve_against_the_config_directory(project: Path) -> None:
    cfg = load_text("task_queue: {database: q/queue.db}\ncontext: {directory: ./ctx}\n", name="sub/dir/c.yaml")
    base = (project / "sub" / "dir").resolve()
    assert cfg.root == base
    assert cfg.task_queue.database == base / "q" / "queue.db"
    assert cfg.context.directory == base / "ctx"


def assert_one_line_error(result, rc: int = 2) -> str:  # type: ignore[no-untyped-def]
    assert result.returncode == rc, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


ERROR_IDS = "three zero bool unknown-key unknown-section bad-yaml list no-agents workspace verify merge agent-verify"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "agents:\n  claude:\n    max_instances: three\n",
            "orchestrate: c.yaml: agents.claude.max_instances: expected a whole number from 1 to 100, got 'three'",
        ),
        (
            "agents:\n  claude:\n    max_instances: 0\n",
            "orchestrate: c.yaml: agents.claude.max_instances: expected a whole number from 1 to 100, got 0",
        ),
        (
            "task_queue:\n  timeout_minutes: true\n",
            "orchestrate: c.yaml: task_queue.timeout_minutes: expected a positive number, at most 1e+09, got True",
        ),
        ("task_queue:\n  max_size: 1000\n", "orchestrate: c.yaml: task_queue.max_size: unknown key"),
        ("orchestrator:\n  mode: local\n", "orchestrate: c.yaml: orchestrator: unknown key"),
        ("agents:\n  claude: {max_instances: 2\n", "orchestrate: c.yaml: line 3: invalid YAML"),
        ("- claude\n- codex\n", "orchestrate: c.yaml: expected a mapping, got ['claude', 'codex']"),
        ("agents: {}\n", "orchestrate: c.yaml: agents: no agents configured"),
        ("workspace: branches\n", "orchestrate: c.yaml: workspace: expected shared or worktree, got 'branches'"),
        ("verify: [pytest, 3]\n", "orchestrate: c.yaml: verify: expected a shell command, or a list of them"),
        ("merge: yes\n", "orchestrate: c.yaml: merge: expected manual or auto, got True"),
        (
            "agents:\n  claude:\n    verify: {a: 1}\n",
            "orchestrate: c.yaml: agents.claude.verify: expected a shell command, or a list of them",
        ),
    ],
    ids=ERROR_IDS.split(),
)
def test_config_errors_are_one_line_with_the_key_path(text: str, message: str) -> None:
    Path("c.yaml").write_text(text)
    line = assert_one_line_error(orchestrate("--config", "c.yaml", "status"))
    assert line == message if "three" in text else line.startswith(message), line


def test_a_config_that_is_not_utf8_is_a_one_line_error() -> None:
    Path("c.yaml").write_bytes(b"agents:\n  caf\xe9: {}\n")
    assert "c.yaml" in assert_one_line_error(orchestrate("--config", "c.yaml", "status"))


def test_an_explicit_missing_config_is_an_error() -> None:
    line = assert_one_line_error(orchestrate("--config", "nope.yaml", "status"))
    assert line == "orchestrate: nope.yaml: no such configuration file"


def test_orchestrate_config_env_var_is_honoured() -> None:
    Path("other.yaml").write_text("task_queue:\n  database: other.db\n")
    result = orchestrate("add", "x", env={"ORCHESTRATE_CONFIG": "other.yaml"})
    assert (result.returncode, result.stdout) == (0, "task_001\n")
    assert Path("other.db").exists()
    assert not Path("tasks.db").exists()


def test_db_option_overrides_the_configured_database() -> None:
    Path("config.yaml").write_text("task_queue:\n  database: configured.db\n")
    result = orchestrate("--db", "alt.db", "add", "x")
    assert (result.returncode, result.stdout) == (0, "task_001\n")
    assert Path("alt.db").exists()
    assert not Path("configured.db").exists()
    assert '"pending": 1' in orchestrate("--db", "alt.db", "status", "--json").stdout
    assert '"pending": 0' in orchestrate("status", "--json").stdout


def test_init_writes_a_config_that_loads(project: Path) -> None:
    result = orchestrate("init")
    assert result.returncode == 0, result.stderr
    assert "wrote    config.yaml" in result.stdout
    template = REPO / "orchestrate" / "templates" / "config.yaml"
    assert Path("config.yaml").read_text() == template.read_text()
    cfg = configfile.load(Path("config.yaml"), required=True)
    assert {a.name: a.type for a in cfg.agents} == {"claude": "claude", "codex": "codex", "gemini": "gemini"}
    assert cfg.task_queue.database == project.resolve() / "tasks.db"
    assert workspace.settings(cfg) == workspace.WorkspaceConfig()  # every option shown with its default
    assert Path("context/project_overview.md").is_file()
    assert Path("context/agent_outputs").is_dir()


def test_the_repo_example_config_is_the_template() -> None:
    example = (REPO / "config.yaml").read_text()
    assert example == (REPO / "orchestrate" / "templates" / "config.yaml").read_text()
    assert {a.name for a in configfile.load(REPO / "config.yaml").agents} == {"claude", "codex", "gemini"}


def test_init_never_overwrites() -> None:
    Path("config.yaml").write_text("# my own settings\nagents:\n  claude: {max_instances: 4}\n")
    result = orchestrate("init")
    assert result.returncode == 0, result.stderr
    assert "kept     config.yaml (already there)" in result.stdout
    assert Path("config.yaml").read_text() == "# my own settings\nagents:\n  claude: {max_instances: 4}\n"
