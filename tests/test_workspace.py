"""Worktrees, verification, merging and cleanup: a real head on a temporary git repository."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import orchestrate, wait_until
from test_head import configure, ok, runs, started, task

WORKTREE = "workspace: worktree\n"
IGNORED = "tasks.db*\nfake_*\n.env\n.setup-ran\n"  # the queue and the fakes' records are not the project's


def git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, (args, result.stderr)
    return result.stdout


def repository(project: Path) -> None:
    """A repository with one commit, and no identity of its own: orchestrate must commit anyway."""
    git("init", "-q", "-b", "main")
    (project / ".gitignore").write_text(IGNORED)
    (project / "README.md").write_text("a project\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")


def run_all(expect: int = 0) -> None:
    result = orchestrate("run", timeout=120)
    assert result.returncode == expect, (result.stdout, result.stderr)


def two_tasks(project: Path, first: str, second: str, more: str = WORKTREE, expect: int = 0) -> None:
    """A repository, two agents, and two tasks run to the end."""
    repository(project)
    configure(project, claude=2, retries=0, more=more)
    ok("add", first)
    ok("add", second)
    run_all(expect)


def branch_file(branch: str, name: str) -> str:
    return git("show", f"orchestrate/{branch}:{name}")


def trees(project: Path) -> list[str]:
    folder = project / ".orchestrate/worktrees"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def clean_checkout() -> None:
    """The project is not left half-merged: no merge in progress, no tracked file modified."""
    assert not Path(git("rev-parse", "--git-path", "MERGE_HEAD").strip()).exists()
    assert git("status", "--porcelain", "--untracked-files=no") == ""


def test_parallel_tasks_editing_one_file_land_on_separate_branches(project: Path, fakes: Path) -> None:
    repository(project)
    (project / ".env").write_text("SECRET=1\n")
    (project / "local.cfg").write_text("mine\n")  # neither tracked nor ignored
    configure(project, claude=2, more=WORKTREE + "workspace_files: [.env, local.cfg]\nsetup: echo ok > .setup-ran\n")
    ok("add", "Create NOTES.md with alpha [fake:sleep=1]")
    ok("add", "Create NOTES.md with beta [fake:sleep=1]")
    run_all()
    first, second = (r for r in runs(fakes) if "argv" in r)
    finished = [r["time"] for r in runs(fakes) if r.get("done")]
    assert max(first["time"], second["time"]) < min(finished), "the two agents did not overlap"
    assert {first["cwd"], second["cwd"]} == {
        str(project / ".orchestrate/worktrees/task_001"),
        str(project / ".orchestrate/worktrees/task_002"),
    }
    assert "alpha" in branch_file("task_001", "NOTES.md") and "beta" in branch_file("task_002", "NOTES.md")
    assert not (project / "NOTES.md").exists()  # the project's own checkout is untouched
    assert (
        git("log", "-1", "--format=%s", "orchestrate/task_001")
        == "task_001: Create NOTES.md with alpha [fake:sleep=1]\n"
    )
    for name in ("task_001", "task_002"):  # the untracked .env was copied in, and setup ran first
        assert (project / ".orchestrate/worktrees" / name / ".env").read_text() == "SECRET=1\n"
        assert (project / ".orchestrate/worktrees" / name / ".setup-ran").read_text() == "ok\n"
        assert "local.cfg" not in git("ls-tree", "--name-only", f"orchestrate/{name}")  # copied in, never committed
    assert "- A NOTES.md" in (project / "context/agent_outputs/task_001_output.md").read_text()
    shown = ok("show", "task_001")
    assert "orchestrate/task_001" in shown and "NOTES.md | 1 +" in shown and "task_001: Create NOTES.md" in shown
    assert "worktrees 2 in" in ok("status")
    assert json.loads(ok("status", "--json"))["worktrees"]["bytes"] > 0  # measured by the head, not by status
    assert ".orchestrate" not in git("status", "--porcelain")  # it keeps itself out of the user's status


def test_a_dependent_branches_from_its_dependency(project: Path, fakes: Path) -> None:
    repository(project)
    configure(project, more=WORKTREE)
    ok("add", "Create A.md")
    ok("add", "Create B.md", "--after", "task_001")
    run_all()
    assert "A.md" in git("ls-tree", "--name-only", "orchestrate/task_002")
    assert "B.md" in git("ls-tree", "--name-only", "orchestrate/task_002")


def test_verification_fails_then_passes_on_the_retry(project: Path, fakes: Path) -> None:
    repository(project)
    check = 'test -f FIXED.txt || { echo "FIXED.txt is missing"; exit 1; }'
    configure(project, retries=1, more=WORKTREE + f"verify: '{check}'\n")
    ok("add", "Create NOTES.md [fake:heed]")
    run_all()
    done = task(1)
    assert (done["status"], done["attempts"], done["error"]) == ("completed", 2, None)
    first, second = (r["prompt"] for r in started(fakes))
    assert "FIXED.txt is missing" not in first
    assert f"verify `{check}` failed (exit 1):\nFIXED.txt is missing" in second  # the hint the agent acted on
    assert branch_file("task_001", "FIXED.txt") == "fixed after the hint\n"
    output = (project / "context/agent_outputs/task_001_output.md").read_text()
    assert f"## Checks\n\n- `{check}`: passed" in output


def test_a_task_and_an_agent_override_the_checks_in_a_shared_project(project: Path, fakes: Path) -> None:
    configure(project, retries=0, more="verify: 'true'\n")
    ok("add", "Say hello", "--verify", "echo checking; echo the tests failed >&2; exit 3")
    ok("add", "Say goodbye")
    run_all(expect=1)
    failed = task(1)
    assert failed["status"] == "failed" and failed["verify"] == ["echo checking; echo the tests failed >&2; exit 3"]
    assert failed["error"].startswith("verify `echo checking; echo the tests failed >&2; exit 3` failed (exit 3):")
    assert "the tests failed" in failed["error"] and "checking" in failed["error"]
    assert task(2)["status"] == "completed"
    log = (project / ".orchestrate/logs/task_001.log").read_text()
    assert "=== orchestrate: verify: echo checking" in log and "the tests failed" in log


def test_require_changes(project: Path, fakes: Path) -> None:
    repository(project)
    # shared mode, one agent: in a shared directory an agent's changes include those of agents beside it
    configure(project, retries=0, more="require_changes: true\n")
    ok("add", "Say hello")
    ok("add", "Create HELLO.md")
    run_all(expect=1)
    assert (task(1)["status"], task(1)["error"]) == ("failed", "no changes made")
    assert task(2)["status"] == "completed"


def test_merge_fast_forwards_and_a_conflict_aborts_cleanly(project: Path, fakes: Path) -> None:
    two_tasks(project, "Create NOTES.md with alpha", "Create NOTES.md with beta")
    merged = ok("merge", "task_001")
    assert "merged orchestrate/task_001 into main (fast-forward)" in merged
    assert "removed" in merged and trees(project) == ["task_002"]
    assert git("rev-parse", "HEAD") == git("rev-parse", "orchestrate/task_001")
    assert "alpha" in (project / "NOTES.md").read_text()
    conflict = orchestrate("merge", "task_002")
    assert conflict.returncode == 1
    assert conflict.stderr == "orchestrate: merge conflict in NOTES.md; nothing was merged\n"
    clean_checkout()
    assert "alpha" in (project / "NOTES.md").read_text()
    assert orchestrate("merge", "task_999").returncode == 1


def test_auto_merge_merges_one_at_a_time_and_fails_a_conflict(project: Path, fakes: Path) -> None:
    two_tasks(project, "Create A.md", "Create B.md", more=WORKTREE + "merge: auto\n")
    assert (project / "A.md").exists() and (project / "B.md").exists()  # both merged, one after the other
    assert trees(project) == []  # a merged task's worktree is removed; its branch stays until `clean`
    ok("add", "Create NOTES.md with alpha [fake:sleep=0.5]")
    ok("add", "Create NOTES.md with beta [fake:sleep=0.5]")
    run_all(expect=1)
    states = {task(3)["status"], task(4)["status"]}
    assert states == {"completed", "failed"}
    loser = task(3) if task(3)["status"] == "failed" else task(4)
    assert loser["error"] == "merge conflict in NOTES.md"
    clean_checkout()
    assert trees(project) == [loser["id"]]  # kept for a person to look at


def test_clean_keeps_dirty_and_running_worktrees(project: Path, fakes: Path) -> None:
    two_tasks(project, "Create A.md", "Create B.md")
    (project / ".orchestrate/worktrees/task_001/scratch.txt").write_text("not committed\n")
    assert "has uncommitted changes" not in ok("merge", "task_001")  # git's reason is quoted instead
    assert trees(project) == ["task_001", "task_002"]
    kept = ok("clean")
    assert "kept" in kept and "task_001: it has uncommitted changes" in kept
    assert trees(project) == ["task_001", "task_002"]  # task_002 is not merged: still to review
    (project / ".orchestrate/worktrees/task_001/scratch.txt").unlink()
    freed = ok("clean")
    assert "removed" in freed and "deleted branch orchestrate/task_001" in freed and "1 worktree(s) removed" in freed
    assert trees(project) == ["task_002"]
    assert "orchestrate/task_001" not in git("branch", "--list")
    ok("start")
    ok("add", "Work for ever [fake:hang]")
    wait_until(lambda: (project / ".orchestrate/worktrees/task_003").exists() and task(3)["status"] == "running")
    ok("clean")
    assert "task_003" in trees(project)  # a running task's worktree is never touched
    ok("cancel", "task_003")
    wait_until(lambda: "task_003" not in trees(project), message="the cancelled task's worktree to go")
    assert "orchestrate/task_003" in git("branch", "--list")  # its branch stays
    ok("stop")


def test_worktree_mode_outside_a_repository_is_a_configuration_error(project: Path, fakes: Path) -> None:
    configure(project, more=WORKTREE)
    ok("add", "Create A.md")
    for command in (["start"], ["run"], ["start", "--foreground"]):
        result = orchestrate(*command)
        assert result.returncode == 2, result
        assert result.stderr.startswith("orchestrate: workspace: worktree needs a git repository")
        assert len(result.stderr.splitlines()) == 1
    assert task(1)["status"] == "pending"  # nothing queued is lost
    git("init", "-q")
    result = orchestrate("run")
    assert (result.returncode, result.stderr) == (
        2,
        f"orchestrate: workspace: worktree needs a commit to branch from; {project} has none yet: commit once\n",
    )


def test_add_workspace_worktree_outside_a_repository_is_refused(project: Path) -> None:
    result = orchestrate("add", "x", "--workspace", "worktree")
    assert result.returncode == 2 and "needs a git repository" in result.stderr
    assert orchestrate("add", "x", "--workspace", "elsewhere").returncode == 2
    assert ok("add", "x", "--workspace", "shared") == "task_001\n"
    assert task(1)["workspace"] == "shared"
