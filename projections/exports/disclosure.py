"""Every export is a disclosure: its basis is checked first, and it is recorded once.

An export names its recipient, purpose, who discloses (``actor``) and one
basis: ``consent=True`` (each episode's consent in force for that recipient
and purpose is used) or ``exception=NAME`` (42 CFR Part 2's exceptions,
``catalog.DisclosureException``). Episodes without a basis are refused with
the reason and nothing of theirs leaves; the rest leave under one
``Disclosure`` recording exactly which entries, with a digest of the bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

from pydantic import ValidationError

from iop_episodes.audit.checkpoints import covering_checkpoint
from iop_episodes.domain import errors
from iop_episodes.domain.catalog import DisclosureException, ExportFormat
from iop_episodes.domain.disclosure import scope_of
from iop_episodes.domain.payloads import DisclosureBasis

if TYPE_CHECKING:
    from iop_episodes.application.service import EpisodeService
    from iop_episodes.domain.episode import Receipt
    from iop_episodes.domain.events import EpisodeEvent

EXCEPTIONS = {
    DisclosureException.MEDICAL_EMERGENCY: "42 CFR 2.51",
    DisclosureException.RESEARCH: "42 CFR 2.52",
    DisclosureException.AUDIT_AND_EVALUATION: "42 CFR 2.53",
    DisclosureException.COURT_ORDER: "42 CFR 2.61-2.64",
}


def basis_of(*, consent: bool, exception: str | None) -> DisclosureBasis:
    """The one basis a caller names (``consent=True`` or ``exception=NAME``), validated."""
    if consent == (exception is not None):
        raise errors.DisclosureRefused(
            "name exactly one basis: consent=True or exception=NAME", field="basis"
        )
    try:
        return DisclosureBasis(basis="consent" if consent else "exception", exception=exception)
    except ValidationError as error:
        raise errors.DisclosureRefused(
            f"exception {exception!r}: {error.errors()[0]['msg']}", field="exception"
        ) from None


@dataclass(frozen=True)
class Disclosing:
    """Who discloses to whom, why and on what basis."""

    recipient: str
    purpose: str
    actor: Mapping[str, str]
    basis: DisclosureBasis
    command_id: str = field(default_factory=lambda: f"export:{uuid4()}")


@dataclass
class Selected:
    """The episodes that may leave, with their entries, and those refused."""

    histories: dict[UUID, list[EpisodeEvent]] = field(default_factory=dict)
    consents: dict[UUID, int | None] = field(default_factory=dict)
    refused: dict[UUID, errors.DisclosureRefused] = field(default_factory=dict)

    def scope(self) -> list[str]:
        return sorted(str(s) for s in _scope(self.histories.values()))

    def heads(self) -> dict[UUID, int]:
        """Each episode's last version that leaves."""
        return {key: history[-1].originator_version for key, history in self.histories.items()}


def _scope(histories: Iterable[list[EpisodeEvent]]) -> set[str]:
    found: set[str] = set()
    for history in histories:
        found |= {str(s) for s in scope_of(*_entry_types(history))}
    return found


def _entry_types(history: list[EpisodeEvent]) -> tuple[list[str], list[str]]:
    names = [event.type_name() for event in history]
    corrected = [
        names[int(event.payload["target_version"]) - 1]
        for event in history
        if event.type_name() == "EntryCorrected"
    ]
    return names, corrected


def episode_history(service: EpisodeService, episode_id: UUID) -> list[EpisodeEvent]:
    """The episode's verified entries; an unknown id or a disclosure's is ``EpisodeNotFound``."""
    history = list(service.history(episode_id))
    if not history or history[0].type_name() != "Assessed":
        raise errors.EpisodeNotFound(f"no episode {episode_id}: nothing to export")
    return history


def select(
    service: EpisodeService,
    episode_ids: Iterable[UUID],
    disclosing: Disclosing,
    *,
    histories: Callable[[UUID], list[EpisodeEvent]] | None = None,
    needed: Callable[[list[EpisodeEvent]], Iterable[str]] | None = None,
) -> Selected:
    """Load each episode's entries and find its basis; refusals are collected, not raised.

    An id that is no episode raises ``EpisodeNotFound`` before anything is recorded.
    """
    selected = Selected()
    for episode_id in episode_ids:
        history = histories(episode_id) if histories else episode_history(service, episode_id)
        consent_version = None
        if disclosing.basis.basis == "consent":
            scope = needed(history) if needed else _scope([history])
            try:
                consent_version = service.consent_for(
                    episode_id,
                    recipient=disclosing.recipient,
                    purpose=disclosing.purpose,
                    needed=scope,
                )
            except errors.DisclosureRefused as refusal:
                refusal.add_note(f"episode {episode_id}")
                selected.refused[episode_id] = refusal
                continue
        selected.histories[episode_id] = history
        selected.consents[episode_id] = consent_version
    return selected


def record(
    service: EpisodeService,
    disclosing: Disclosing,
    selected: Selected,
    *,
    export_format: ExportFormat,
    data: bytes,
    scope: Iterable[str] | None = None,
    proven_against: str | None = None,
) -> Receipt:
    """Record the one Disclosure of an export whose bytes are ``data``.

    Its checkpoint is ``proven_against`` (the root a proof bundle's entries
    are proven against) or else the latest, when it covers what leaves.
    """
    basis = disclosing.basis
    heads = selected.heads()
    records = [
        {
            "episode_id": episode_id,
            "client_ref": history[0].payload["client_ref"],
            "from_version": 1,
            "to_version": heads[episode_id],
            "consent_version": selected.consents[episode_id],
        }
        for episode_id, history in selected.histories.items()
    ]
    return service.record_disclosure(
        {
            "actor": dict(disclosing.actor),
            "occurred_at": service.clock.now(),
            "command_id": disclosing.command_id,
            "recipient": disclosing.recipient,
            "purpose": disclosing.purpose,
            "basis": basis.basis,
            "exception": None if basis.exception is None else str(basis.exception),
            "format": str(export_format),
            "scope": sorted(scope) if scope is not None else selected.scope(),
            "records": records,
            "checkpoint": proven_against or latest_checkpoint(service, heads),
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_bytes": len(data),
        }
    )


def latest_checkpoint(service: EpisodeService, heads: Mapping[UUID, int]) -> str | None:
    """The root hash of the store's latest checkpoint if it covers every disclosed entry.

    ``heads`` is each disclosed episode's last version disclosed. None when
    the store holds no checkpoint yet, or the latest does not reach those
    entries (they are not yet attested).
    """
    covering = covering_checkpoint(service, *heads, up_to=heads)
    return None if covering is None else covering.root


def actor_of(text: str) -> dict[str, str]:
    """``ID:ROLE`` as the actor mapping commands take."""
    actor_id, _, role = text.rpartition(":")
    if not actor_id or not role:
        msg = f"--as needs ID:ROLE, such as dr.lee:physician, got {text!r}"
        raise ValueError(msg)
    return {"id": actor_id, "role": role}
