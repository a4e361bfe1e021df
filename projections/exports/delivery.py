"""An export's output: written whole, readable by its owner only, and only once it is disclosed.

Every ``--out`` is checked and its hidden stand-in made before the export
is disclosed, so an ``--out`` that cannot be written (a directory given for
a file, a file for a directory, a missing or unwritable folder, the store
itself or another SQLite database) is a usage error (exit 2) and nothing is
recorded; an export that is refused or fails leaves no output at all.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from iop_episodes.application import problems

SQLITE_HEADER = b"SQLite format 3\x00"
STORE_COMPANIONS = ("", "-wal", "-shm", "-journal")
"""The store's file and those SQLite keeps beside it."""


def store_files(store_url: str) -> set[Path]:
    """The files of a SQLite store (none for other backends), resolved."""
    parts = urlsplit(store_url)
    database = unquote(parts.path)[1:]
    if parts.scheme != "sqlite" or not database or database == ":memory:":
        return set()
    file = Path(database).resolve()
    return {file.with_name(file.name + suffix) for suffix in STORE_COMPANIONS}


def _refuse(out: str, why: str) -> problems.UsageProblem:
    return problems.UsageProblem(f"--out {out}: {why}")


def _check_file(out: str, store_url: str) -> Path:
    """``out`` as a file the export may replace, or the usage error that says why not."""
    path = Path(out)
    if path.is_dir():
        raise _refuse(out, "is a directory; give a file")
    if path.resolve() in store_files(store_url):
        raise _refuse(out, "is the store's own file; give another file")
    if path.is_file():
        with path.open("rb") as existing:
            if existing.read(len(SQLITE_HEADER)) == SQLITE_HEADER:
                raise _refuse(out, "is a SQLite database; it is not overwritten")
    return path


@contextmanager
def staged(
    out: str, store_url: str, *, dash_is_stdout: bool = False
) -> Iterator[Callable[[bytes], None]]:
    """A hidden file beside ``out``; ``deliver(data)`` fills it and moves it to ``out``.

    With ``dash_is_stdout``, ``-`` is stdout, written only by ``deliver``.
    """
    if out == "-" and dash_is_stdout:
        yield _to_stdout
        return
    path = _check_file(out, store_url)
    try:  # mkstemp makes the file 0600: clinical records, for their owner only
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as error:
        raise _refuse(out, error.strerror or "cannot be written") from None
    os.close(handle)

    def deliver(data: bytes) -> None:
        Path(temporary).write_bytes(data)
        Path(temporary).replace(path)

    try:
        yield deliver
    finally:
        Path(temporary).unlink(missing_ok=True)  # gone once delivered; never left behind


def _to_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


@contextmanager
def staged_folder(out: str) -> Iterator[Callable[[Mapping[str, bytes]], None]]:
    """A hidden folder beside (or in) the folder ``out``; ``deliver(files)`` moves them there.

    A new folder is renamed into place whole; into an existing one each file
    is moved. ``out`` that is a file, or a folder that cannot be made or
    written, is refused before anything is disclosed.
    """
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise _refuse(out, "is a file; give a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        beside = target if target.is_dir() else target.parent
        temporary = Path(tempfile.mkdtemp(dir=beside, prefix=f".{target.name}.", suffix=".tmp"))
    except OSError as error:
        raise _refuse(out, error.strerror or "cannot be written") from None

    def deliver(files: Mapping[str, bytes]) -> None:
        for name, data in files.items():
            (temporary / name).write_bytes(data)
        if temporary.parent != target:
            temporary.replace(target)
            return
        for name in files:
            (temporary / name).replace(target / name)

    try:
        yield deliver
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
