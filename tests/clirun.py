"""Running ``iop`` as a user does: a subprocess, optionally as an unprivileged reader."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

from iop_episodes.application.service import EpisodeService

NOBODY = 65534


def iop(
    *args: str,
    env: Mapping[str, str] | None = None,
    as_reader: bool = False,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m iop_episodes.entrypoints.cli ARGS``; ``as_reader`` drops root first.

    A root process ignores file permissions, so a read-only file means
    nothing to it; run as root, the reader is user ``nobody`` instead.
    """
    command = [sys.executable, "-m", "iop_episodes.entrypoints.cli", *args]
    if as_reader and os.geteuid() == 0:
        command = [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            *command,
        ]
    inherited = {k: v for k, v in os.environ.items() if k not in {"IOP_CIPHER_KEY", "IOP_STORE"}}
    full_env = inherited | dict(env or {})
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=timeout, env=full_env
    )
    assert "No module named 'iop_episodes'" not in done.stderr, (
        "the read-only tests run iop as user nobody, who cannot read this checkout: "
        "make it and its parent folders readable by others (chmod o+rX), as .ci/run does"
    )
    return done


def make_demo(path: Path, *extra: str) -> str:
    """A small demo store at ``path``; its URL."""
    url = f"sqlite:///{path}"
    done = iop("demo", "--store", url, "--clients", "8", "--weeks", "6", *extra)
    assert done.returncode == 0, done.stderr
    return url


def first_episode(url: str) -> UUID:
    with EpisodeService(url, read_only=True) as service:
        return UUID(str(service.recorder.select_notifications(1, 1)[0].originator_id))


def files_under(directory: Path) -> dict[str, bytes]:
    """Every file below ``directory`` with its bytes: to prove nothing changed."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@contextmanager
def public_directory() -> Iterator[Path]:
    """A directory the unprivileged reader can enter (pytest's tmp_path is root-only)."""
    directory = Path(tempfile.mkdtemp(prefix="iop-reader-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        for path in [directory, *directory.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(directory)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The failure's single stderr line, checked to be one line without a traceback."""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith("iop: error: "), lines[0]
    return lines[0]
