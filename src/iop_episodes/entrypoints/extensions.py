"""Extensions the ``iop`` command discovers, so the write side never imports them.

The read side (the ``projections`` package) registers itself under the
``iop_episodes.entrypoints.extensions`` entry-point group; the CLI and the demo call it
through this protocol without naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, Protocol

from pydantic import BaseModel

from iop_episodes.application.service import EpisodeService
from iop_episodes.application.stepdown import CandidateSource

GROUP = "iop_episodes.extensions"


class Extension(Protocol):
    def register(self, commands: Any) -> None:
        """Add subcommands to ``iop``'s subparsers."""
        ...

    def candidates(self, service: EpisodeService) -> CandidateSource:
        """Where the step-down job finds active episodes and their recent weeks."""
        ...

    def after_demo(self, service: EpisodeService, now: datetime) -> str:
        """Text to print after the demo's summary, before its digest line."""
        ...

    def json_models(self) -> Mapping[str, type[BaseModel]]:
        """Each of its commands' ``--json`` shapes, by command name, for ``iop schema``."""
        ...


def load_extensions() -> list[Extension]:
    return [point.load()() for point in sorted(entry_points(group=GROUP), key=lambda p: p.name)]


def candidate_source(service: EpisodeService) -> CandidateSource:
    """The first installed extension's candidate source for the step-down job."""
    for extension in load_extensions():
        return extension.candidates(service)
    msg = "no read side installed: the step-down job needs the projections package"
    raise LookupError(msg)
