"""Bad input is refused where it is given, in one line that says what is wrong and what to do:
the config file, `init`'s directory and `add --context`; nothing already queued is lost."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import orchestrate

from orchestrate import inline_code


def one_line(result: subprocess.CompletedProcess[str], code: int, says: str) -> str:
    """Assert `result` failed with `code` and one line on stderr that contains `says`; return the line."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    return lines[0]


def descriptions() -> list[str]:
    return [t["description"] for t in json.loads(orchestrate("tasks", "--json").stdout)]


def refused_and_nothing_lost(project: Path, config: str, says: str) -> str:
    """A task queued before the bad config is written is still there once the config is fixed."""
    assert orchestrate("add", "queued before").returncode == 0
    (project / "config.yaml").write_text(config)
    line = one_line(orchestrate("status"), 2, says)
    one_line(orchestrate("add", "not added"), 2, says)
    (project / "config.yaml").unlink()
    assert descriptions() == ["queued before"]
    return line


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ('{"A=B": x}', 'config.yaml: agents.claude.env: "A=B" is not a variable name (it contains "=")'),
        ('{"": x}', 'config.yaml: agents.claude.env: "" is not a variable name (it is empty)'),
        ('{"A\\0B": x}', 'config.yaml: agents.claude.env: "A\\u0000B" is not a variable name (it contains NUL)'),
        ('{A: "x\\0y"}', "config.yaml: agents.claude.env.A: the value contains NUL"),
    ],
    ids=["equals", "empty", "nul-in-name", "nul-in-value"],
)
def test_an_env_entry_no_process_can_hold_is_refused_at_load(project: Path, env: str, says: str) -> None:
    """These failed only when an agent was started; now the file is refused when it is read."""
    line = refused_and_nothing_lost(project, f"agents:\n  claude:\n    env: {env}\n", says)
    assert "\0" not in line


def test_env_numbers_are_still_strings_and_other_values_still_refused(project: Path) -> None:
    (project / "config.yaml").write_text("agents:\n  claude:\n    env: {A: 1, B: 2.5}\n")
    assert orchestrate("status").returncode == 0
    (project / "config.yaml").write_text("agents:\n  claude:\n    env: {A: [1]}\n")
    one_line(orchestrate("status"), 2, "agents.claude.env.A: expected a string or number (quote it)")


@pytest.mark.parametrize("agents", ["[claude]", "claude", "[{claude: {}}]"])
def test_agents_that_are_not_a_mapping_say_what_shape_they_need(project: Path, agents: str) -> None:
    """A list or a bare name read as "no agents configured", which sent users looking for the wrong fault."""
    line = refused_and_nothing_lost(project, f"agents: {agents}\n", "config.yaml: agents: expected a mapping")
    assert "agent names to settings" in line and "agents: {claude: {}}" in line


def test_agents_empty_still_says_none_are_configured(project: Path) -> None:
    (project / "config.yaml").write_text("agents: {}\n")
    one_line(orchestrate("status"), 2, "config.yaml: agents: no agents configured")


def test_a_context_directory_is_named_a_directory_not_missing(project: Path) -> None:
    (project / "notes").mkdir()
    line = one_line(orchestrate("add", "x", "--context", "notes"), 2, "context file notes is a directory")
    assert "does not exist" not in line and "--context" in line and "take files" in line
    (project / "tasks.yaml").write_text("- description: y\n  context_files: [notes]\n")
    one_line(orchestrate("add", "--file", "tasks.yaml"), 2, "task 1: context file notes is a directory")
    assert descriptions() == []
    one_line(orchestrate("add", "x", "--context", "gone.md"), 2, "context file gone.md does not exist")


SAFE = ["sh", "-c", 'mytool "$1"', "sh", "{prompt}"]


@pytest.mark.parametrize(
    ("command", "where"),
    [
        (["sh", "-c", "echo {prompt}"], ("sh", "-c")),
        ("bash -lc 'x {prompt}'", ("bash", "-lc")),
        (["/bin/bash", "-e", "-o", "pipefail", "-c", "run {prompt} now"], ("/bin/bash", "-c")),
        (["dash", "-ec", "{prompt}"], ("dash", "-ec")),
        (["zsh", "-c", "{prompt}"], ("zsh", "-c")),
        (["ksh", "-c", "{prompt}"], ("ksh", "-c")),
        (["mksh", "-c", "{prompt}"], ("mksh", "-c")),
        (["ash", "-c", "{prompt}"], ("ash", "-c")),
        (["fish", "-c", "echo {prompt}"], ("fish", "-c")),
        (["fish", "--command=echo {prompt}"], ("fish", "--command")),
        (["busybox", "sh", "-c", "echo {prompt}"], ("sh", "-c")),
        (["bash", "-c", "--", "echo {prompt}"], ("bash", "-c")),
        (["env", "A=1", "sh", "-c", "echo {prompt}"], ("sh", "-c")),
        (["/usr/bin/env", "bash", "-c", "echo {prompt}"], ("bash", "-c")),
        (["env", "-i", "-u", "HOME", "sh", "-c", "{prompt}"], ("sh", "-c")),
        (["nice", "-n", "5", "sh", "-c", "{prompt}"], ("sh", "-c")),
        (["nice", "-5", "sh", "-c", "{prompt}"], ("sh", "-c")),
        (["timeout", "5", "sh", "-c", "{prompt}"], ("sh", "-c")),
        (["timeout", "-s", "KILL", "--foreground", "5m", "nohup", "bash", "-c", "{prompt}"], ("bash", "-c")),
        (["sudo", "-u", "agent", "env", "X=1", "bash", "-c", "{prompt}"], ("bash", "-c")),
        (["python3", "-c", "print('{prompt}')"], ("python3", "-c")),
        (["python", "-u", "-W", "ignore", "-c", "run('''{prompt}''')"], ("python", "-c")),
        (["python3.12", "-Ic", "{prompt}"], ("python3.12", "-Ic")),
        (["python3", "-cprint('{prompt}')"], ("python3", "-c")),
        (["node", "-e", "run(`{prompt}`)"], ("node", "-e")),
        (["node", "--eval", "run(`{prompt}`)"], ("node", "--eval")),
        (["node", "--eval=run(`{prompt}`)"], ("node", "--eval")),
        (["node", "-p", "'{prompt}'"], ("node", "-p")),
        (["node", "-r", "dotenv/config", "-pe", "'{prompt}'"], ("node", "-pe")),
        (["perl", "-e", "print q({prompt})"], ("perl", "-e")),
        (["perl", "-E", "say q({prompt})"], ("perl", "-E")),
        (["perl", "-lne", "print q({prompt})"], ("perl", "-lne")),
        (["perl", "-I", "lib", "-Mstrict", "-e", "{prompt}"], ("perl", "-e")),
        (["ruby", "-e", "puts %q({prompt})"], ("ruby", "-e")),
        (["ruby", "-r", "json", "-ne", "{prompt}"], ("ruby", "-ne")),
    ],
)
def test_prompt_inside_inline_code_is_found(command: str | list[str], where: tuple[str, str]) -> None:
    argv = shlex.split(command) if isinstance(command, str) else command
    found = inline_code.prompt_as_code(argv)
    assert found is not None and (found.program, found.option) == where
    assert "{prompt}" in found.code


@pytest.mark.parametrize(
    "command",
    [
        SAFE,
        ["bash", "-lc", 'mytool "$@"', "bash", "--task", "{prompt}"],
        ["sh", "-c", "mytool", "{prompt}"],  # $0: data, never run
        ["my-agent", "--task", "{prompt}"],
        ["my-agent", "-c", "{prompt}"],  # not a shell: its -c is its own
        ["timeout", "5", "my-agent", "-e", "{prompt}"],
        ["sh", "run-agent.sh", "{prompt}"],  # a script file, not -c
        ["bash", "-e", "run-agent.sh", "-c", "{prompt}"],
        ["python3", "-c", "import sys; print(sys.argv[1])", "{prompt}"],
        ["python3", "-m", "agent", "-c", "{prompt}"],  # the module's own -c
        ["python3", "agent.py", "-c", "{prompt}"],
        ["node", "-e", "console.log(process.argv[1])", "{prompt}"],
        ["node", "agent.js", "--eval", "{prompt}"],
        ["perl", "-e", "print $ARGV[0]", "{prompt}"],
        ["ruby", "-e", "puts ARGV[0]", "{prompt}"],
        ["env", "sh", "-c", 'exec mytool "$1"', "sh", "{prompt}"],
        ["sh", "-c", "echo no prompt here"],
    ],
)
def test_prompt_as_an_argument_after_the_code_is_allowed(command: list[str]) -> None:
    assert inline_code.prompt_as_code(command) is None


@pytest.mark.parametrize(
    "command",
    ['["sh", "-c", "echo {prompt}"]', "\"bash -lc 'x {prompt}'\"", "\"env A=1 timeout 5 sh -ec 'x {prompt}'\""],
)
def test_a_command_that_runs_the_prompt_as_shell_code_is_refused_at_load(project: Path, command: str) -> None:
    config = f"agents:\n  t: {{type: command, command: {command}}}\n"
    line = refused_and_nothing_lost(project, config, "config.yaml: agents.t.command: {prompt} is inside the script")
    assert "positional parameter" in line and json.dumps(SAFE) in line


def test_a_command_that_runs_the_prompt_as_python_is_refused_with_the_python_way(project: Path) -> None:
    command = json.dumps(["python3", "-c", "print('{prompt}')"])
    config = f"agents:\n  t: {{type: command, command: {command}}}\n"
    line = refused_and_nothing_lost(
        project, config, "agents.t.command: {prompt} is inside the code that python3 runs with -c"
    )
    assert "sys.argv[1]" in line


def test_the_safe_form_gets_the_prompt_as_data(project: Path) -> None:
    """The form the message suggests runs, and task text that looks like shell stays text."""
    command = json.dumps(["sh", "-c", 'printf %s "$1" > got.txt', "sh", "{prompt}"])
    (project / "config.yaml").write_text(f"agents:\n  t: {{type: command, command: {command}}}\n")
    assert orchestrate("add", "say $(touch pwned) `touch pwned2`").returncode == 0
    ran = orchestrate("run", timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert "say $(touch pwned) `touch pwned2`" in (project / "got.txt").read_text()
    assert not (project / "pwned").exists() and not (project / "pwned2").exists()


def test_init_with_a_file_named_context_says_so_and_writes_nothing(project: Path) -> None:
    assert orchestrate("add", "queued before").returncode == 0
    (project / "context").write_text("my notes\n")
    line = one_line(orchestrate("init"), 1, "context is a file")
    assert "rename or move it" in line
    assert not (project / "config.yaml").exists()  # refused before anything was written
    assert (project / "context").read_text() == "my notes\n"
    assert descriptions() == ["queued before"]


def unwritable_directory(project: Path) -> Path:
    """A directory this process cannot create files in: read-only for a user, sysfs for root."""
    if os.geteuid() != 0:
        project.chmod(0o555)
        return project
    try:
        Path("/sys/orchestrate-probe").touch()
    except OSError:
        return Path("/sys")
    pytest.skip("running as root, and /sys is writable here: no directory refuses root")


def test_init_in_a_directory_it_cannot_write_is_one_line(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where = unwritable_directory(project)
    monkeypatch.chdir(where)
    try:
        line = one_line(orchestrate("init"), 1, "cannot write config.yaml")
    finally:
        project.chmod(0o755)
    assert "directory you can write" in line


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


OWN = ["tasks.db", "tasks.db-wal", "tasks.db-shm", ".orchestrate/head.log", ".orchestrate/logs/task_001.log"]


def test_init_in_a_git_work_tree_ignores_orchestrates_own_files_once(project: Path) -> None:
    git("init", "-q")
    (project / ".gitignore").write_text("node_modules")  # no newline at the end: kept, and a line of its own
    first = orchestrate("init")
    assert first.returncode == 0, first.stderr
    assert "updated  .gitignore (ignores tasks.db*, .orchestrate/)" in first.stdout
    ignore = (project / ".gitignore").read_text()
    assert ignore.startswith("node_modules\n") and ignore.splitlines()[-2:] == ["tasks.db*", ".orchestrate/"]
    assert orchestrate("add", "a task").returncode == 0
    assert (project / "tasks.db").exists()
    shown = {line[3:] for line in git("status", "--porcelain", "--untracked-files=all").splitlines()}
    assert shown == {".gitignore", "config.yaml", "context/project_overview.md", "context/current_state.md"}
    assert git("check-ignore", *OWN).split() == OWN  # the head's files too, and the WAL while in use
    second = orchestrate("init")
    assert second.returncode == 0 and "kept     .gitignore" in second.stdout
    assert (project / ".gitignore").read_text() == ignore


def test_init_outside_git_writes_no_gitignore(project: Path) -> None:
    result = orchestrate("init")
    assert result.returncode == 0 and ".gitignore" not in result.stdout
    assert not (project / ".gitignore").exists()


def test_init_in_a_project_below_the_repository_root_ignores_from_the_project(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git("init", "-q")
    (project / "sub").mkdir()
    monkeypatch.chdir(project / "sub")
    assert orchestrate("init").returncode == 0
    assert (project / "sub" / ".gitignore").read_text().splitlines()[-2:] == ["tasks.db*", ".orchestrate/"]
    assert not (project / ".gitignore").exists()
