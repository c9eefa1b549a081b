"""Writing the files a run produces (schedules, records, tables): whole or not at all, with the usual permissions."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ios_core.errors import UserError


def _default_mode() -> int:
    """The mode a new file gets from ``open`` under this process's umask (0644 under the usual 022)."""
    umask = os.umask(0o022)  # the umask can only be read by setting it; it is put back at once
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never a part.

    The file keeps the mode of the one it replaces (a new one gets the umask's), and the temporary file
    beside it is removed whatever goes wrong.

    Raises
    ------
    UserError
        If ``path`` is empty, a directory, under a file, unwritable, or the disk is full; the message names it.
    """
    if not str(path) or Path(path).name in ("", ".", ".."):
        raise UserError(f"cannot write {str(path)!r}: not a file path")
    path = Path(path)
    tmp: str | None = None
    try:
        mode = path.stat().st_mode & 0o777 if path.is_file() else _default_mode()
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
            tmp = file.name
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from error
    finally:
        if tmp is not None:  # whatever stopped the write, even an interrupt, leaves no debris
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path
