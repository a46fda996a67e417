"""The built-in agent adapters by type, as pre-commit's languages table: `command` is the core's own."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import Any

TYPES = ("claude", "codex", "gemini", "command")


def adapters(types: set[str]) -> Mapping[str, Any]:
    """The adapter modules for `types`: imported only for the agents a configuration uses."""
    found = {t: import_module(f"orchestrate.agents.{t}") for t in types if t != "command"}
    return found | {"command": import_module("orchestrate.core.command")}
