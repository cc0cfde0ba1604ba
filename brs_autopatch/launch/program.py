"""The program brs-run is asked to start: its path, and what Python will make of it.

``resolve`` finds the command as ``execvp`` would (exit 127 / 126 with a hint when it
cannot be run); the rest looks at the command without running any of it: which Python
interpreter it is or names on its ``#!`` line (a child from another environment starts
unpatched, so the launcher says so), and which script that Python will run (its
directory is on the program's import path, where a ``BRS_CUSTOM_METHOD`` module may be).
"""

from __future__ import annotations

import os
import sys

from .options import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, PROG

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


class NotRunnable(Exception):
    """The program cannot be started; ``code`` is the exit status to use."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def hint(command: str) -> str:
    if command.endswith(".py"):
        return f"; did you mean `{PROG} python {command}`?"
    return ""


def _executable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def resolve(command: str, path_variable: str | None) -> str:
    """The file to execute for ``command``, searched on the child's PATH like a shell does.

    Raises NotRunnable: 127 when there is no such program, 126 when there is one but it
    cannot be executed (a directory, or no execute permission).
    """
    if not command:
        raise NotRunnable(EXIT_NOT_FOUND, "'': command not found")
    if os.sep in command:
        if not os.path.exists(command):
            raise NotRunnable(EXIT_NOT_FOUND, f"{command}: no such file or directory")
        if os.path.isdir(command):
            raise NotRunnable(EXIT_NOT_EXECUTABLE, f"{command}: is a directory")
        if not os.access(command, os.X_OK):
            raise NotRunnable(EXIT_NOT_EXECUTABLE, f"{command}: permission denied{hint(command)}")
        return command
    directories = (os.defpath if path_variable is None else path_variable).split(os.pathsep)
    not_executable: str | None = None
    for directory in directories:
        candidate = os.path.join(directory, command)  # "" is the current directory, as in sh
        if _executable_file(candidate):
            return candidate
        if not_executable is None and os.path.exists(candidate):
            not_executable = candidate
    if not_executable is not None:
        raise NotRunnable(
            EXIT_NOT_EXECUTABLE, f"{not_executable}: permission denied{hint(command)}"
        )
    message = f"{command}: command not found"
    if os.path.isfile(command):  # `brs-run app.py` with app.py here but not on PATH
        message += hint(command) or f"; did you mean `{PROG} ./{command}`?"
    raise NotRunnable(EXIT_NOT_FOUND, message)


def _interpreter_of(program: str, path_variable: str | None) -> str | None:
    """The Python that ``program`` is, or names on its ``#!`` line; None if not Python."""
    if os.path.basename(program).startswith("python"):
        return program
    try:
        with open(program, "rb") as handle:
            first = handle.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!") or b"python" not in first:
        return None
    words = first[2:].decode("utf-8", "replace").split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env":  # #!/usr/bin/env [-S] python3
        names = [word for word in words[1:] if not word.startswith("-")]
        if not names:
            return None
        try:
            return resolve(names[0], path_variable)
        except NotRunnable:
            return None
    return words[0]


def interpreter_warning(program: str, command: str, path_variable: str | None) -> str | None:
    """A warning when ``program`` runs a Python of another environment than brs-run's.

    The bootstrap would skip such an interpreter (quietly, by design: it may lack
    brs_autopatch): say so once, here, for the program the user named.
    """
    interpreter = _interpreter_of(program, path_variable)
    if interpreter is None:
        return None
    ours = os.path.realpath(os.path.dirname(sys.executable))
    if os.path.realpath(os.path.dirname(os.path.abspath(interpreter))) == ours:
        return None
    return (
        f"{PROG}: warning: {command} runs {interpreter}, not a Python of this environment "
        f"({sys.executable}): it will start unpatched. Install brs_autopatch there and use "
        "that environment's brs-run, or run this environment's python"
    )


def program_path(command: Sequence[str], path_variable: str | None) -> list[str]:
    """Where the program will look for modules beyond brs-run's own sys.path.

    The current directory (``python -c``, ``-m``) and, for ``python [options] app.py``,
    the script's directory: Python puts one of them first on the program's sys.path.
    """
    path = [os.getcwd()]
    script = script_of(command, path_variable)
    if script is not None and os.path.isfile(script):
        path.insert(0, os.path.dirname(os.path.realpath(script)))
    return path


def script_of(command: Sequence[str], path_variable: str | None) -> str | None:
    """The script a command runs with Python: ``python [options] app.py``, or a ``#!``
    script naming python (found on PATH like the program). None for ``-c``/``-m``/stdin."""
    if not command:
        return None
    if not os.path.basename(command[0]).startswith("python"):
        try:
            found = resolve(command[0], path_variable)
        except NotRunnable:
            return None
        return found if _interpreter_of(found, path_variable) is not None else None
    args = iter(command[1:])
    for arg in args:
        if arg == "-" or not arg.startswith("-"):
            return None if arg == "-" else arg
        if arg.startswith("--"):
            if arg == "--check-hash-based-pycs":
                next(args, None)
            elif arg == "--":
                return next(args, None)
            continue
        # Short options, maybe bundled (-uB, -Wignore): -c/-m end the options, -W/-X take
        # the rest of the word or the next argument.
        for index, letter in enumerate(arg[1:], start=1):
            if letter in "cm":
                return None
            if letter in "WX":
                if index == len(arg) - 1:
                    next(args, None)
                break
    return None
