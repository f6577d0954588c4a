"""The project's error base: every mistake a user can make is a `GantlitzError` with a message and an exit code.

The CLI has one boundary (`gantlitz.cli.main`) that prints these as `Error: <message>` and exits with
`exit_code`; anything else is a bug and keeps its traceback. Concrete errors also derive from the builtin
they used to be (`ValueError`, `RuntimeError`, `FileExistsError`), so existing `except` clauses still match.
"""

from __future__ import annotations

import os

__all__ = ["GantlitzError", "UsageError", "ConfigError", "InputError", "InputNotFoundError", "OutputError", "OutputExistsError",
           "FolderLockedError"]


class GantlitzError(Exception):
    """A failure the user can act on; the message says what and where. Exit code 1 unless a subclass says."""

    exit_code: int = 1


class UsageError(GantlitzError, ValueError):
    """An impossible argument value (a negative duration, a NaN truncation, an unknown device, ...)."""

    exit_code = 2


class ConfigError(GantlitzError, ValueError):
    """Bad preset / override / dataset combination."""


class InputError(GantlitzError, ValueError):
    """An input that can not be used as given (too few subjects, a bad weight file, an unknown location)."""


class InputNotFoundError(GantlitzError, FileNotFoundError):
    """A named input file or folder that does not exist."""

    def __str__(self) -> str:  # OSError's own __str__ would show the argument tuple
        return str(self.args[0])


class OutputError(GantlitzError, OSError):
    """An output that can not be written (no permission, a file where a folder should be, ...)."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {problem}")

    def __str__(self) -> str:  # OSError's own __str__ would show the argument tuple
        return str(self.args[0])


class OutputExistsError(OutputError, FileExistsError):
    """An output exists and --overwrite was not given (or it is not ours to replace)."""


class FolderLockedError(GantlitzError, RuntimeError):
    """Another process holds the folder (a training run, a dataset being prepared)."""
