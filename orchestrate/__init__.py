"""Run a backlog of coding tasks through coding-agent CLIs in parallel."""

__version__ = "0.1.0"
