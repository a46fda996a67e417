"""What `show` (and `merge`) say of a task's branch in worktree mode: only what is true of it. A branch
with no commits of its own is not "merged into the current branch", though git finds it in HEAD."""

from __future__ import annotations

from pathlib import Path

from conftest import wait_until
from test_head import configure, ok, task
from test_workspace import WORKTREE, git, repository, run_all


def branch_line(ref: str = "task_001") -> str | None:
    """The branch line `show` prints for the task, its spacing folded; None when it prints none."""
    lines = [" ".join(line.split()) for line in ok("show", ref).splitlines() if line.strip().startswith("branch:")]
    assert len(lines) <= 1, lines
    return lines[0] if lines else None


def make_branch(task_name: str, start: str = "HEAD") -> None:
    """The task's branch and worktree, as the head makes them on its first attempt (worktrees.prepare)."""
    git("worktree", "add", "-q", "-b", f"orchestrate/{task_name}", f".orchestrate/worktrees/{task_name}", start)


def test_a_pending_task_that_never_ran_has_no_branch_yet(project: Path) -> None:
    repository(project)
    configure(project, more=WORKTREE)
    ok("add", "Create A.md")
    assert branch_line() == "branch: orchestrate/task_001 (not created yet)"
    make_branch("task_001")
    assert branch_line() == "branch: orchestrate/task_001 (no commits yet)"  # it said: merged into the current branch
    ok("add", "Create B.md")
    ok("cancel", "task_002")
    assert branch_line("task_002") is None  # it never ran and never will: no branch to speak of


def test_a_task_stopped_before_it_committed_is_pending_with_no_commits_yet(project: Path, fakes: Path) -> None:
    repository(project)
    configure(project, more=WORKTREE)
    ok("start")
    ok("add", "Work for ever [fake:hang]")
    worktree = project / ".orchestrate/worktrees/task_001"
    wait_until(lambda: task(1)["status"] == "running" and worktree.exists(), message="task_001 to run in its worktree")
    ok("stop")
    assert (task(1)["status"], task(1)["attempts"]) == ("pending", 0)  # returned unspent, its branch kept
    assert branch_line() == "branch: orchestrate/task_001 (no commits yet)"


def test_a_completed_task_that_changed_nothing_is_not_merged(project: Path, fakes: Path) -> None:
    repository(project)
    configure(project, claude=2, retries=0, more=WORKTREE)
    ok("add", "Create A.md")
    ok("add", "Say hello")
    run_all()
    assert (task(1)["status"], task(2)["status"]) == ("completed", "completed")
    assert branch_line("task_002") == "branch: orchestrate/task_002 (no commits)"
    assert "task_001: Create A.md" in ok("show", "task_001")
    assert branch_line("task_001") == "branch: orchestrate/task_001"  # its commits follow, to merge
    ok("merge", "task_001")
    assert branch_line("task_001") == "branch: orchestrate/task_001 (merged into the current branch)"
    assert branch_line("task_002") == "branch: orchestrate/task_002 (no commits)"
    nothing = ok("merge", "task_002")  # it said: merged orchestrate/task_002 into main (already merged)
    assert nothing.splitlines()[0] == "nothing to merge: orchestrate/task_002 has no commits of its own"
    assert "(already merged)" in ok("merge", "task_001")


def test_a_dependent_s_branch_starts_with_its_dependency_s_commits(project: Path, fakes: Path) -> None:
    repository(project)
    configure(project, more=WORKTREE)
    ok("add", "Create A.md")
    run_all()
    ok("add", "Create B.md", "--after", "task_001")
    make_branch("task_002", "orchestrate/task_001")
    shown = ok("show", "task_002")
    assert branch_line("task_002") == "branch: orchestrate/task_002 (no commits of its own yet)"
    assert "task_001: Create A.md" in shown  # what merging it would bring, all the same


def test_without_its_reflog_it_says_only_what_git_can_tell(project: Path) -> None:
    """The reflog says where a branch started; without it, a branch in HEAD may be merged or unused."""
    repository(project)
    configure(project, more=WORKTREE)
    ok("add", "Create A.md")
    git("-c", "core.logAllRefUpdates=false", "branch", "orchestrate/task_001")
    assert branch_line() == "branch: orchestrate/task_001 (no commits beyond the current branch)"
