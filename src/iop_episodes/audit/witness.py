"""The witness: checkpoints kept outside the store, append-only.

A witness is a path (``--witness PATH`` or ``IOP_WITNESS``). A directory
(an existing one, or a path ending in ``/``) gets one file per checkpoint,
``checkpoint-<size, 12 digits>-<time>.json``, written whole and renamed
into place; any other path is a file that gets one JSON line per
checkpoint. Either way each line is a checkpoint's canonical JSON
(docs/proofs.md). Appends are flushed to disk before they return.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Attestable(Protocol):
    @property
    def size(self) -> int: ...

    @property
    def time(self) -> str: ...

    def line(self) -> str: ...


class WitnessMissing(ValueError):
    """A witness to check against that is not there."""


@dataclass(frozen=True)
class WitnessLine:
    where: str  # "<path>:<line number>" or a file's path
    text: str


@dataclass(frozen=True)
class Witness:
    path: Path

    @classmethod
    def at(cls, text: str) -> Witness:
        path = Path(text)
        if text.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @property
    def is_directory(self) -> bool:
        return self.path.is_dir()

    def append(self, checkpoint: Attestable) -> None:
        line = checkpoint.line() + "\n"
        if self.is_directory:
            name = f"checkpoint-{checkpoint.size:012d}-{checkpoint.time}.json"
            partial = self.path / f".{name}.partial"
            _write_synced(partial, line, "w")
            partial.replace(self.path / name)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _write_synced(self.path, line, "a")

    def lines(self) -> Iterator[WitnessLine]:
        """Every checkpoint line the witness holds, in the order it was kept."""
        if self.is_directory:
            for file in sorted(self.path.glob("checkpoint-*.json")):
                text = file.read_text(encoding="utf-8", errors="replace")
                yield WitnessLine(str(file), text.strip())
            return
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            for number, text in enumerate(handle, start=1):
                if text.strip():
                    yield WitnessLine(f"{self.path}:{number}", text.strip())


def _write_synced(path: Path, text: str, mode: str) -> None:
    with path.open(mode, encoding="ascii") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
