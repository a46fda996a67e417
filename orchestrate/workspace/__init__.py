"""Where a task runs and what it changed there: git, worktrees, checks and merging, as extensions."""
