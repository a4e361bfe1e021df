"""What the projector needs from a store: one transaction's reads and writes."""

from __future__ import annotations

from typing import Protocol

from projections.rows import AuditRow, EntryRow, EpisodeRow, StepDownRow


class ViewTransaction(Protocol):
    """Reads see the writes made earlier in the same transaction."""

    def episode(self, episode_id: str) -> EpisodeRow | None: ...

    def save_episode(self, row: EpisodeRow) -> None: ...

    def entry(self, episode_id: str, version: int) -> EntryRow | None: ...

    def save_entry(self, row: EntryRow) -> None: ...

    def add_activity(
        self, episode_id: str, week: str, item: str, count: int, minutes: int
    ) -> None: ...

    def add_step_down(self, row: StepDownRow) -> None: ...

    def add_audit(self, row: AuditRow) -> None: ...
