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

import os
import sys
from collections.abc import Callable
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


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line: Hydra's and OmegaConf's span several, and a path error names its file."""
    if isinstance(error, OSError) and error.filename is not None and not isinstance(error, UserError):
        return f"{error.filename}: {error.strerror or error}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__


def run_command(main: Callable[[], int | None]) -> NoReturn:
    """Run a command's ``main`` and exit with its status; a user error exits 2 with one line (see the module).

    Hydra is told to raise rather than print its own report (``HYDRA_FULL_ERROR``), so that its config errors
    reach this one boundary like ours do.
    """
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        status = main()
    except (UserError, *FOREIGN_USER_ERRORS) as error:
        if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            raise
        print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
        sys.exit(2)
    sys.exit(status or 0)
