"""Which roles may record which entries.

Only clinical staff record care, only a nurse or physician dispenses, the
scheduler may only step a client down, and an auditor records nothing but
disclosures under the audit-and-evaluation exception (42 CFR 2.53).
"""

from __future__ import annotations

from iop_episodes.domain.catalog import Role

_CLINICIANS = frozenset({Role.COUNSELOR, Role.THERAPIST, Role.PHYSICIAN})
_PRESCRIBERS_AND_NURSES = frozenset({Role.NURSE, Role.PHYSICIAN})
_LEADS = frozenset({Role.COUNSELOR, Role.PHYSICIAN, Role.PROGRAM_DIRECTOR})

ALLOWED_ROLES: dict[str, frozenset[Role]] = {
    "Assessed": _CLINICIANS,
    "PlanCreated": _LEADS,
    "SessionAttended": _CLINICIANS,
    "MedicationDispensed": _PRESCRIBERS_AND_NURSES,
    "ScreenResulted": _PRESCRIBERS_AND_NURSES | {Role.COUNSELOR},
    "StepDown": _LEADS | {Role.SCHEDULER},
    "Recertified": frozenset({Role.PHYSICIAN}),
    "Discharged": _LEADS,
    "AftercareScheduled": _LEADS | {Role.THERAPIST},
    "EntryCorrected": _CLINICIANS | _PRESCRIBERS_AND_NURSES | {Role.PROGRAM_DIRECTOR},
    "ConsentRecorded": _LEADS,
    "ConsentRevoked": _LEADS,
    "Disclosed": frozenset({Role.PHYSICIAN, Role.PROGRAM_DIRECTOR, Role.AUDITOR}),
}

DISCLOSURE_ROLES: dict[str, frozenset[Role]] = {
    "consent": frozenset({Role.PHYSICIAN, Role.PROGRAM_DIRECTOR}),
    "medical-emergency": frozenset({Role.PHYSICIAN, Role.PROGRAM_DIRECTOR}),
    "research": frozenset({Role.PROGRAM_DIRECTOR}),
    "audit-and-evaluation": frozenset({Role.AUDITOR, Role.PROGRAM_DIRECTOR}),
    "court-order": frozenset({Role.PROGRAM_DIRECTOR}),
}
"""Who may disclose on each basis: a consent in force, or one of Part 2's exceptions."""


def may_record(role: Role, event_type: str) -> bool:
    return role in ALLOWED_ROLES[event_type]
