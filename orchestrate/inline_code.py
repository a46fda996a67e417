"""Where `{prompt}` in a command would run as code rather than travel as data: inside a shell's
-c script or an interpreter's inline code, past the wrappers (env, nice, timeout...) before it.
configfile refuses such a command at load, with the safe form to use instead."""

# No `from __future__ import annotations` here: NamedTuple compiles each string annotation into
# a ForwardRef, half the cost of the class, and every command imports this module.

from collections.abc import Iterator, Sequence
from typing import NamedTuple


class Spec(NamedTuple):
    """How a program reads its options: which take code to run, and which take another value."""

    code: str = ""  # short options whose value is code: the rest of the option, or the next argument
    valued: str = ""  # short options with another value, taken the same way
    attached: str = ""  # short options whose value, if any, is only the rest of the option
    stop: str = ""  # short options after which the arguments are another program's (python -m)
    long_code: tuple[str, ...] = ()
    long_valued: tuple[str, ...] = ()
    glued: bool = True  # code may be the rest of the option (-c'code'); node takes only the next argument
    operands: int = 0  # a wrapper's arguments before the command it runs (timeout's duration)
    example: str = '["sh", "-c", "mytool \\"$1\\"", "sh", "{prompt}"]'  # the prompt passed as data


SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "lksh", "ash", "hush", "yash", "posh", "rbash", "fish"})
SHELL = Spec(valued="oO", long_valued=("--rcfile", "--init-file"))  # with -c, the first operand is the script
PYTHON = Spec("c", "WX", stop="m", example='["python3", "-c", "import sys; mytool(sys.argv[1])", "{prompt}"]')
INTERPRETERS = {
    "python": PYTHON,
    "pypy": PYTHON,
    "node": Spec(
        "ep",
        "rC",
        long_code=("--eval", "--print"),
        long_valued=("--require", "--import", "--input-type"),
        glued=False,
        example='["node", "-e", "mytool(process.argv[1])", "{prompt}"]',
    ),
    "perl": Spec("eE", "I", "MmxFCdDVi", example='["perl", "-e", "mytool($ARGV[0])", "{prompt}"]'),
    "ruby": Spec("e", "IrCE", "0FiKTWx", example='["ruby", "-e", "mytool(ARGV[0])", "{prompt}"]'),
    "fish": Spec("cC", "dofp", long_code=("--command", "--init-command")),  # fish -c takes its script itself
}
WRAPPERS = {  # programs that run the rest of their arguments as a command
    "env": Spec("S", "uC", long_code=("--split-string",), long_valued=("--unset", "--chdir")),
    "nice": Spec(valued="n", long_valued=("--adjustment",)),
    "timeout": Spec(valued="sk", long_valued=("--signal", "--kill-after"), operands=1),
    "stdbuf": Spec(valued="ioe", long_valued=("--input", "--output", "--error")),
    "ionice": Spec(valued="cn", long_valued=("--class", "--classdata")),
    "time": Spec(valued="fo", long_valued=("--format", "--output")),
    "sudo": Spec(valued="ugCDhprtTU", long_valued=("--user", "--group", "--chdir")),
    "doas": Spec(valued="uC"),
    **dict.fromkeys(("nohup", "setsid", "busybox"), Spec()),
    **dict.fromkeys(("chrt", "taskset"), Spec(operands=1)),
}


class Inline(NamedTuple):
    """Code that a command hands a shell or an interpreter in its own arguments."""

    program: str  # as the command names it
    option: str  # the option that says the code follows (-c, -lc, --eval)
    code: str
    example: str  # a command of the same kind that passes the prompt as data

    @property
    def problem(self) -> str:
        what = "script" if _name(self.program) in SHELLS else "code"
        return (
            f"{{prompt}} is inside the {what} that {self.program} runs with {self.option}, so task text would run"
            f" as code; pass the prompt as a positional parameter after the {what} instead, e.g. {self.example}"
        )


def prompt_as_code(argv: Sequence[str]) -> Inline | None:
    """Where `{prompt}` would run as code: in a shell's -c script or an interpreter's inline code
    (python -c, node -e, perl -e, ruby -e), past wrappers such as env, nice and timeout."""
    if not any("{prompt}" in arg for arg in argv):
        return None
    return next((found for found in _inline(list(argv)) if "{prompt}" in found.code), None)


def _name(program: str) -> str:
    return program.rsplit("/", 1)[-1].rstrip("0123456789.")  # /usr/bin/python3.12 is python


def _inline(argv: list[str]) -> Iterator[Inline]:
    """Every piece of inline code in `argv`, following wrappers to the program they run."""
    while argv:
        name = _name(argv[0])
        spec = WRAPPERS.get(name) or INTERPRETERS.get(name) or (SHELL if name in SHELLS else None)
        if spec is None:
            return
        codes, script_option, rest = _options(argv[1:], spec)
        yield from (Inline(argv[0], option, code, spec.example) for option, code in codes)
        if script_option and rest:
            yield Inline(argv[0], script_option, rest[0], spec.example)
        if name not in WRAPPERS:
            return
        while rest and rest[0].partition("=")[0].isidentifier() and "=" in rest[0]:
            rest = rest[1:]  # env's and sudo's NAME=VALUE
        argv = rest[spec.operands :]


def _options(args: list[str], spec: Spec) -> tuple[list[tuple[str, str]], str, list[str]]:
    """Walk a program's options: the code they give it, a shell's option holding -c, and the operands."""
    codes: list[tuple[str, str]] = []
    script_option, i = "", 0
    while i < len(args) and len(args[i]) > 1 and args[i][0] in "-+" and args[i] != "--":
        arg, i = args[i], i + 1
        if arg.startswith("--"):
            option, eq, value = arg.partition("=")
            if option in spec.long_code + spec.long_valued and not eq and i < len(args):
                value, i = args[i], i + 1
            codes += [(option, value)] if option in spec.long_code else []
            continue
        if spec is SHELL and "c" in arg:
            script_option = arg
        for n, char in enumerate(arg[1:], start=2):  # arg[n:] is what follows `char`
            if char in spec.stop:
                return codes, "", []
            if char in spec.code + spec.valued:
                glued = n < len(arg) and (spec.glued or char not in spec.code)
                value = arg[n:] if glued else args[i] if i < len(args) else ""
                i += not glued
                codes += [(arg[:n] if glued else arg, value)] if char in spec.code else []
            if char in spec.code + spec.valued + spec.attached:
                break
    if i < len(args) and args[i] == "--":
        i += 1
    return codes, script_option, args[i:]
