"""42 CFR Part 2 disclosures: which consent is in force, and the Disclosure aggregate.

A consent is an episode entry (``ConsentRecorded``), revoked by another
(``ConsentRevoked``). An export leaves the program only on a basis in force:
a consent naming that recipient and purpose, unexpired, unrevoked and
covering every kind of record sent, or one of Part 2's exceptions. Each
export is recorded as one ``Disclosure``, whose single ``Disclosed`` entry is
chained like an episode's and never edited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from iop_episodes.domain import errors, events
from iop_episodes.domain.catalog import ExportFormat, RecordScope
from iop_episodes.domain.entries import first_entry, require_not_future
from iop_episodes.domain.permissions import DISCLOSURE_ROLES

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from iop_episodes.domain import commands, payloads

DISCLOSURE_NAMESPACE = UUID("3c1d9a52-7e0b-5f4a-8d26-1b9e4f7a0c63")
"""uuid5 namespace of disclosure ids, derived from the export's command_id."""

SCOPE_OF_ENTRY: dict[str, RecordScope] = {
    "Assessed": RecordScope.ADMISSION_DISCHARGE,
    "PlanCreated": RecordScope.ADMISSION_DISCHARGE,
    "StepDown": RecordScope.ADMISSION_DISCHARGE,
    "Discharged": RecordScope.ADMISSION_DISCHARGE,
    "ConsentRecorded": RecordScope.ADMISSION_DISCHARGE,
    "ConsentRevoked": RecordScope.ADMISSION_DISCHARGE,
    "SessionAttended": RecordScope.SESSIONS,
    "MedicationDispensed": RecordScope.MEDICATIONS,
    "ScreenResulted": RecordScope.DRUG_SCREENS,
    "AftercareScheduled": RecordScope.AFTERCARE,
}
"""The kind of record each entry is; a correction is the kind of the entry it corrects."""


def scope_of(entry_types: Iterable[str], corrected_types: Iterable[str] = ()) -> set[RecordScope]:
    """The kinds of record a set of entries holds."""
    return {
        SCOPE_OF_ENTRY[name] for name in (*entry_types, *corrected_types) if name in SCOPE_OF_ENTRY
    }


ADMISSION_DISCHARGE_ONLY = frozenset(
    {
        ExportFormat.TEDS_ADMISSIONS_CSV,
        ExportFormat.TEDS_ADMISSIONS_JSON,
        ExportFormat.TEDS_DISCHARGES_CSV,
        ExportFormat.TEDS_DISCHARGES_JSON,
    }
)
"""Formats that carry only admission and discharge data; the others carry every entry sent."""


def check_records(
    record: payloads.DisclosedRecords,
    export_format: ExportFormat,
    *,
    client_ref: str,
    history: Sequence[events.EpisodeEvent],
) -> frozenset[RecordScope]:
    """The kinds of record one episode's range holds, once the range and client are its own.

    ``history`` is the episode's entries in version order and ``client_ref``
    its client's: the accounting lists a disclosure under the client it names.
    """
    if record.client_ref != client_ref:
        raise errors.DisclosureRefused(
            f"episode {record.episode_id} is client {client_ref!r}, not {record.client_ref!r}",
            field="records",
        )
    if not 1 <= record.from_version <= record.to_version <= len(history):
        raise errors.DisclosureRefused(
            f"episode {record.episode_id} has versions 1 to {len(history)}; "
            f"cannot disclose {record.from_version} to {record.to_version}",
            field="records",
        )
    if export_format in ADMISSION_DISCHARGE_ONLY:
        return frozenset({RecordScope.ADMISSION_DISCHARGE})
    sent = history[record.from_version - 1 : record.to_version]
    corrected = [
        history[int(entry.payload["target_version"]) - 1].type_name()
        for entry in sent
        if entry.type_name() == "EntryCorrected"
    ]
    return frozenset(scope_of((entry.type_name() for entry in sent), corrected))


def require_scope(cmd: commands.RecordDisclosure, needed: Iterable[RecordScope]) -> None:
    """A disclosure's scope is exactly the kinds of record its ranges hold."""
    held = frozenset(needed)
    if cmd.scope != held:
        raise errors.DisclosureRefused(
            f"scope {', '.join(sorted(cmd.scope))} is not the kinds of record disclosed "
            f"({', '.join(sorted(held))})",
            field="scope",
        )


def normalized(text: str) -> str:
    """Recipients and purposes match whatever their case and spacing."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class ConsentTerms:
    version: int
    recipient: str
    purpose: str
    scope: frozenset[str]
    expires_on: date
    given_at: datetime

    @classmethod
    def of(cls, version: int, terms: dict[str, Any]) -> ConsentTerms:
        return cls(
            version=version,
            recipient=terms["recipient"],
            purpose=terms["purpose"],
            scope=frozenset(terms["scope"]),
            expires_on=date.fromisoformat(terms["expires_on"]),
            given_at=datetime.fromisoformat(terms["given_at"]),
        )


def consent_in_force(
    consents: Iterable[ConsentTerms],
    revoked: Iterable[int],
    *,
    recipient: str,
    purpose: str,
    needed: Iterable[str],
    on: date,
    now: datetime,
) -> int:
    """The version of the newest consent that allows this disclosure today, or a refusal.

    Among consents for the recipient and purpose, the refusal names the
    closest miss: out of scope before expired before revoked.
    """
    needed_scope = frozenset(needed)
    withdrawn = set(revoked)
    matching = [
        terms
        for terms in consents
        if normalized(terms.recipient) == normalized(recipient)
        and normalized(terms.purpose) == normalized(purpose)
        and terms.given_at <= now
    ]
    if not matching:
        raise errors.NoConsentInForce(
            f"no consent recorded for recipient {recipient!r} and purpose {purpose!r}"
        )
    refusals: list[errors.DisclosureRefused] = []
    for terms in sorted(matching, key=lambda t: -t.version):
        if terms.version in withdrawn:
            refusals.append(
                errors.ConsentWithdrawn(f"consent at version {terms.version} was revoked")
            )
        elif terms.expires_on < on:
            refusals.append(
                errors.ConsentExpired(
                    f"consent at version {terms.version} expired on {terms.expires_on} "
                    f"(today is {on})"
                )
            )
        elif not needed_scope <= terms.scope:
            missing = ", ".join(sorted(needed_scope - terms.scope))
            refusals.append(
                errors.ConsentOutOfScope(
                    f"consent at version {terms.version} does not cover {missing}"
                )
            )
        else:
            return terms.version
    order = (errors.ConsentOutOfScope, errors.ConsentExpired, errors.ConsentWithdrawn)
    raise min(refusals, key=lambda refusal: order.index(type(refusal)))


def require_discloser(actor: commands.Actor, basis: payloads.DisclosureBasis) -> None:
    """Who may disclose depends on the basis (a consent, or which exception)."""
    name = "consent" if basis.basis == "consent" else str(basis.exception)
    allowed = DISCLOSURE_ROLES[name]
    if actor.role not in allowed:
        raise errors.PermissionDenied(
            f"role {actor.role} (actor {actor.id}) may not disclose on basis "
            f"{name}; allowed roles: {', '.join(sorted(allowed))}"
        )


def disclosure_id(command_id: str) -> UUID:
    return uuid5(DISCLOSURE_NAMESPACE, command_id)


class Disclosure(Aggregate):
    """One export that left the program: created by its ``Disclosed`` entry, never changed."""

    def __init__(self) -> None:
        # The attributes every chained entry maintains (see EpisodeEvent.apply).
        self.chain: str = ""
        self.entries: list[str] = []
        self.receipts: dict[str, list[Any]] = {}

    @classmethod
    def record(cls, cmd: commands.RecordDisclosure, *, now: datetime) -> Disclosure:
        require_discloser(cmd.actor, cmd)
        require_not_future(cmd.occurred_at, now)
        identity = disclosure_id(cmd.command_id)
        return cls._create(
            events.Disclosed, id=identity, **first_entry(events.Disclosed, identity, cmd, now)
        )
