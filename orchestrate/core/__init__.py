"""The runtime: claim a task, run it through an agent in the project directory, record its result
and its output file. It imports nothing outside this folder; features plug in (extension.py)."""
