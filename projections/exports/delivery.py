"""An export's file: written whole, readable by its owner only, and only once it is disclosed."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from iop_episodes.application import problems


@contextmanager
def staged(out: str) -> Iterator[Callable[[bytes], None]]:
    """A hidden file beside ``out``; ``deliver(data)`` fills it and moves it to ``out``.

    The file is made before the export, so an ``--out`` that cannot be
    written fails (exit 2) before anything is disclosed; an export that is
    refused or fails inside the block leaves no file at all.
    """
    path = Path(out)
    try:  # mkstemp makes the file 0600: clinical records, for their owner only
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as error:
        raise problems.UsageProblem(f"--out {out}: {error.strerror}") from None
    os.close(handle)

    def deliver(data: bytes) -> None:
        Path(temporary).write_bytes(data)
        Path(temporary).replace(path)

    try:
        yield deliver
    finally:
        Path(temporary).unlink(missing_ok=True)  # gone once delivered; never left behind
