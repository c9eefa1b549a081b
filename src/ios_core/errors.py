"""The error contract of every command: a user's mistake is one line and exit status 2; a bug is a traceback.

A *user error* is anything wrong with what the user passed -- a path, a file's content, a config
value -- and is raised as a `UserError` (or a subclass) whose message names the thing and says why.
Hydra's and OmegaConf's own config errors, and an `OSError` on a path (missing, unwritable, a
directory, a full disk), are user errors too. Every ``python -m ios_core.…`` command runs its main
function through `run_command`, the one place where such errors become::

    error: <what> <which file/key/value> <why>

on stderr and exit status 2. Anything else is a bug in our code and keeps its traceback (exit 1).
``IOS_CORE_DEBUG=1`` shows the traceback of a user error too.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from hydra.errors import HydraException
from omegaconf.errors import MissingMandatoryValue, ValidationError

DEBUG_VARIABLE = "IOS_CORE_DEBUG"


class UserError(Exception):
    """Something the user passed is wrong; the message names it (file, key or value) and says why."""


FOREIGN_USER_ERRORS: tuple[type[BaseException], ...] = (HydraException, MissingMandatoryValue, ValidationError,
                                                        OSError)
"""Errors raised by the libraries beneath us that are the user's to fix (a misspelt override, a value of the wrong
type, a missing mandatory value, a path that cannot be read or written)."""


def warn(message: str) -> None:
    """Say on stderr, in one line, that something went wrong and the run goes on (a cache skipped or unwritten)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def json_error(error: json.JSONDecodeError) -> str:
    """Why a file's text is not JSON, in a few words: a file cut short is the usual cause."""
    return f"not JSON, torn or truncated? ({error.msg} at line {error.lineno}, column {error.colno})"


_DETAIL = ("full_key:", "object_type=", "reference_type=", "Config search path", "Set the environment variable",
           "Set TORCHDYNAMO_VERBOSE=1")
"""Where Hydra's and OmegaConf's messages turn from what is wrong to where in their own machinery it was found, and
PyTorch's compiler's to how to log more of it."""


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line, with the cause Hydra wraps around it ("Error merging override x: ...")."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    lines = []
    for line in str(error).splitlines():
        if line.strip().startswith(_DETAIL):
            break
        if line.strip():
            lines.append(line.strip())
    text = "; ".join(lines).replace(":; ", ": ") or type(error).__name__
    cause = error.__cause__
    if isinstance(error, HydraException) and cause is not None and str(cause).strip():
        text = f"{text.rstrip('.')}: {one_line(cause)}"
    return text


@contextmanager
def reported() -> Iterator[None]:
    """Turn a user error raised inside into one line on stderr and exit status 2 (see the module docstring).

    A Hydra task function reports its own errors with this: Hydra writes a line of its own ("Error executing
    job...") for any exception that leaves the task.
    """
    try:
        yield
    except (UserError, *FOREIGN_USER_ERRORS) as error:
        if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            raise
        print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
        sys.exit(2)


def run_command(main: Callable[[], int | None]) -> NoReturn:
    """Run a command's ``main`` and exit with its status; a user error exits 2 with one line (see the module).

    Hydra is told to raise rather than print its own report (``HYDRA_FULL_ERROR``), so that its config errors
    reach this one boundary like ours do.
    """
    os.environ["HYDRA_FULL_ERROR"] = "1"
    with reported():
        status = main()
    sys.exit(status or 0)
