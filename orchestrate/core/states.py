"""A task's states, why the head stops a run, and every transition between states.

Nothing else spells a state: the SQL, the commands and the head take them from here.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = (Status.PENDING, Status.RUNNING)  # still to be worked on
FINISHED = (Status.COMPLETED, Status.FAILED)  # a run ended it: the context journal lists these
RETRYABLE = (Status.FAILED, Status.CANCELLED)  # what `orchestrate retry` takes back


class Stop(StrEnum):
    """Why the head stopped an agent before it ended by itself."""

    TIMEOUT = "timeout"
    IDLE = "idle"  # it printed nothing for its idle timeout
    MEMORY = "memory"
    STOPPED = "stopped"  # the head is stopping: the task goes back to the queue
    CANCELLED = "cancelled"  # a person cancelled it, or its row moved on from this claim


class Event(StrEnum):
    CLAIM = "claim"  # the head hands it to an agent slot
    COMPLETE = "complete"
    RETRY_LATER = "retry_later"  # a failed attempt with retries left
    FAIL = "fail"  # a failed attempt with none left
    REQUEUE = "requeue"  # not the task's fault (stopped, rate limited, head gone): no attempt spent
    CANCEL = "cancel"
    RETRY = "retry"  # a person asks for it again, with a fresh budget


TRANSITIONS: dict[Event, tuple[tuple[Status, ...], Status]] = {  # event: (from, to)
    Event.CLAIM: ((Status.PENDING,), Status.RUNNING),
    Event.COMPLETE: ((Status.RUNNING,), Status.COMPLETED),
    Event.RETRY_LATER: ((Status.RUNNING,), Status.PENDING),
    Event.FAIL: ((Status.RUNNING,), Status.FAILED),
    Event.REQUEUE: ((Status.RUNNING,), Status.PENDING),
    Event.CANCEL: (ACTIVE, Status.CANCELLED),
    Event.RETRY: (RETRYABLE, Status.PENDING),
}


def sql_list(statuses: tuple[Status, ...]) -> str:
    """`('failed', 'cancelled')`, for a statement's IN clause: these are our constants, not input."""
    return "(" + ", ".join(f"'{s.value}'" for s in statuses) + ")"
