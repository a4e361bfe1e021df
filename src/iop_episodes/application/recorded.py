"""What an entry's stored bytes say, for readers that show entries as recorded.

The read side shows each entry's times and payload as the text the chain
covers, not as upcast. The stored form knows where that text is in every
format the store holds.
"""

from __future__ import annotations

from iop_episodes.domain.canonical import entry_texts
from iop_episodes.domain.events import EpisodeEvent
from iop_episodes.infrastructure.legacy import format1_texts, is_format1


def recorded_texts(event: EpisodeEvent) -> tuple[str, str, str]:
    """``occurred_at``, payload and ``recorded_at`` exactly as the entry was stored."""
    stored = event.stored_form
    return format1_texts(stored) if is_format1(stored) else entry_texts(stored)
