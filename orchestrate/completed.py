"""completed_tasks.json, one entry per completed or failed task and one line per entry, as the
head's journal (context.Journal) keeps it: checked against the queue, rebuilt from it, or added
to, each in a worker thread and each by a new file renamed over the old.

Never written in place, although an append over the closing bracket would cost less: POSIX asks
that a read() see all of a write() or none of it, but Linux does not hold readers to that (a reader
polling the file parsed torn JSON about once in 300 in-place appends), and a reader that reads
in two calls, as Python's read() does, sees the old closing bracket with the new bytes after it
(half its reads, as the file grew). So an append copies the file in the kernel (copy_file_range,
which shares the blocks where the filesystem can) and adds its lines: no task's text is held in
memory, and a reader sees the file before or after, never part of it.
"""

from __future__ import annotations

import contextlib
import os
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TypeVar

from orchestrate.core.states import FINISHED, sql_list

OPEN, SEP, CLOSE, EMPTY = b"[\n", b",\n", b"\n]\n", b"[\n]\n"
PREFIX = b'{"id": "task_'  # how each line starts, as entry() writes it
ROWS = f"""SELECT id, description, status, agent, output_file, finished_at FROM tasks
    WHERE status IN {sql_list(FINISHED)} ORDER BY finished_at, id"""  # the columns of entry()
CHUNK = 1000  # lines a rebuild writes at once
YIELD = 100  # lines a worker thread reads before it lets the loop run (0.5 ms of work)
T = TypeVar("T")


class Stamp(NamedTuple):
    """The file as it was last written: another writer (a person, an editor) changes one of these."""

    inode: int
    size: int
    mtime_ns: int


class Held(NamedTuple):
    """What the file holds: by task id, the mark of its entry (0 for none); and the file."""

    marks: array[int]
    stamp: Stamp


def entry(id: int, description: str, status: str, agent: str | None, output_file: str | None, finished: Any) -> str:
    """A task's entry, from the columns of ROWS: json.dumps of its fields, byte for byte (as heads
    before this one wrote them), in a third of the time, which counts when checking 100,000."""
    when = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(finished)) if finished else "-"
    return (
        f'{{"id": "task_{id:03d}", "description": {_quoted(description)}, "status": {_quoted(status)},'
        f' "agent": {_quoted(agent)}, "output_file": {_quoted(output_file)}, "finished_at": "{when}"}}'
    )


def _quoted(text: str | None) -> str:
    return "null" if text is None else encode_basestring_ascii(text)


def mark(line: str | bytes) -> int:
    """What is kept of an entry, 8 bytes: enough to tell whether the file holds this one (never 0)."""
    return hash(line.encode() if isinstance(line, str) else line) or 1


def marked(marks: array[int], task_id: int) -> int:
    """The mark of the entry the file holds for `task_id`; 0 for none."""
    return marks[task_id] if task_id < len(marks) else 0


def put(marks: array[int], task_id: int, line: str | bytes) -> None:
    if task_id >= len(marks):
        marks.frombytes(bytes(marks.itemsize * (task_id + 1 - len(marks))))  # amortized: array over-allocates
    marks[task_id] = mark(line)


def holds(path: Path) -> Held | None:
    """What the file holds, if it is as written here (an entry a line, each task once); None if it
    is missing, unreadable or otherwise. Only the marks are kept: 8 bytes a task id."""
    marks, more = array("q"), False  # more: the last entry ended with a comma
    try:
        with open(path, "rb") as f:
            stamp = _stamp(os.fstat(f.fileno()))
            lines = _yielding(f)
            if next(lines, None) != OPEN:
                return None
            for line in lines:
                if line == b"]\n":
                    return Held(marks, stamp) if not more and next(lines, None) is None else None
                body = line[:-2] if line.endswith(SEP) else line[:-1]
                if (marks and not more) or not body.startswith(PREFIX) or not line.endswith(b"\n"):
                    return None  # an entry after the last, or not one of ours
                task_id = int(body[len(PREFIX) : body.index(b'"', len(PREFIX))])
                if marked(marks, task_id):
                    return None  # twice
                put(marks, task_id, body)
                more = line.endswith(SEP)
    except (OSError, ValueError):  # ValueError: an id that is not a number
        return None
    return None  # no closing bracket


def matches(marks: array[int], rows: Iterable[Sequence[Any]]) -> bool:
    """Whether the file holds the entries of `rows` (ROWS's), and no others."""
    count = 0
    for row in _yielding(rows):
        if marked(marks, row[0]) != mark(entry(*row)):
            return False
        count += 1
    return count == len(marks) - marks.count(0)


def rebuild(path: Path, rows: Iterable[Sequence[Any]]) -> Held:
    """Write the file anew from `rows` (ROWS's)."""
    marks, lead, lines = array("q"), b"", []
    with _replacing(path) as f:
        f.write(OPEN)
        for row in _yielding(rows):
            lines.append(line := entry(*row).encode())
            put(marks, row[0], line)
            if len(lines) == CHUNK:
                f.write(lead + SEP.join(lines))
                lead, lines = SEP, []
        if lines:
            f.write(lead + SEP.join(lines))
        f.write(CLOSE if lead or lines else EMPTY[len(OPEN) :])
        f.flush()
        stamp = _stamp(os.fstat(f.fileno()))
    return Held(marks, stamp)


def append(path: Path, lines: Sequence[tuple[int, str]], held: Held) -> Held | None:
    """Add `lines` (a task id and its entry, none of them in the file) at the file's end; None if
    the file is not the one last written, which then wants checking again."""
    try:
        with open(path, "rb") as src, _replacing(path) as dst:
            if _stamp(os.fstat(src.fileno())) != held.stamp:
                raise _Changed
            keep, lead = splice(held.stamp.size)
            if not copy(src.fileno(), dst.fileno(), keep):
                raise _Changed
            dst.seek(keep)
            dst.write(lead + SEP.join(e.encode() for _, e in lines) + CLOSE)
            dst.flush()
            stamp = _stamp(os.fstat(dst.fileno()))
    except (_Changed, FileNotFoundError):
        return None
    for task_id, e in lines:
        put(held.marks, task_id, e)
    return Held(held.marks, stamp)


def splice(size: int) -> tuple[int, bytes]:
    """Where an append goes in a file of `size` bytes as written here: how many bytes of it to keep
    (all but the closing bracket and the newline before it), and what comes before the new lines."""
    return (len(OPEN), b"") if size == len(EMPTY) else (size - len(CLOSE), SEP)


def copy(src: int, dst: int, n: int) -> bool:
    """The first `n` bytes of `src` into `dst`; False if `src` has fewer."""
    done = 0
    try:  # in the kernel; on a filesystem that shares blocks (XFS, btrfs) without copying them
        while done < n and (step := os.copy_file_range(src, dst, n - done, done, done)):
            done += step
    except (AttributeError, OSError):  # not Linux, or not between these files: through memory below
        pass
    while done < n and (chunk := os.pread(src, min(n - done, 1 << 20), done)):
        done += os.pwrite(dst, chunk, done)
    return done == n


def _yielding(items: Iterable[T]) -> Iterator[T]:
    """`items`, letting the head's loop have the GIL every YIELD of them: a worker thread's long
    check would otherwise hold it 5 ms at a time (sys.getswitchinterval) whenever the loop wants it."""
    for n, item in enumerate(items, 1):
        if n % YIELD == 0:
            time.sleep(0)
        yield item


class _Changed(Exception):
    pass


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[BinaryIO]:
    """A new file that replaces `path` by a rename once written (and is removed if not)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # the journal is the only writer, one write at a time
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def stamp(path: Path) -> Stamp | None:
    """The file as it is now; None if it is not there."""
    try:
        return _stamp(os.stat(path))
    except OSError:
        return None


def _stamp(st: os.stat_result) -> Stamp:
    return Stamp(st.st_ino, st.st_size, st.st_mtime_ns)
