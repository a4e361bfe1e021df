"""The episode log after a position, a page of decoded entries at a time.

For the read side's catch-up. The rows are read as plain tuples
(``infrastructure.rawlog``), not as the library's ``Notification`` objects,
and decoded by the service's own mapper (``decode_row``), so every stored
form (format 1, current, sealed, encrypted or compressed) is decoded and
checked by the same rules as when an episode loads. An entry whose seal or
row check fails is handed back refused, never decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

from iop_episodes.domain import errors
from iop_episodes.infrastructure.rawlog import rows_after

if TYPE_CHECKING:
    from iop_episodes.application.service import EpisodeService
    from iop_episodes.domain.events import EpisodeEvent


@dataclass(frozen=True)
class EntryPage:
    """Decoded entries from one page of the log, how many rows it read, its last position."""

    end: int
    read: int
    entries: list[EpisodeEvent]
    refused: list[errors.EntryIntegrityError]


def entries_after(service: EpisodeService, after: int, limit: int) -> EntryPage | None:
    """Up to ``limit`` entries that follow log position ``after``; None at the head."""
    rows = rows_after(service.recorder, after, limit)
    if not rows:
        return None
    decode = service.mapper.decode_row
    ids: dict[str, UUID] = {}  # a page holds many entries of each episode: one UUID each
    entries: list[EpisodeEvent] = []
    refused: list[errors.EntryIntegrityError] = []
    for episode_key, version, topic, state, _ in rows:
        episode_id = ids.get(episode_key) or ids.setdefault(episode_key, UUID(episode_key))
        try:
            entries.append(decode(episode_id, version, topic, state))
        except errors.EntryIntegrityError as error:
            refused.append(error)
    return EntryPage(rows[-1][4], len(rows), entries, refused)
