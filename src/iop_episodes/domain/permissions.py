"""Which roles may record which entries.

Only clinical staff record care, only a nurse or physician dispenses, the
scheduler may only step a client down, and an auditor records nothing.
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
    "Discharged": _LEADS,
    "AftercareScheduled": _LEADS | {Role.THERAPIST},
    "EntryCorrected": _CLINICIANS | _PRESCRIBERS_AND_NURSES | {Role.PROGRAM_DIRECTOR},
}


def may_record(role: Role, event_type: str) -> bool:
    return role in ALLOWED_ROLES[event_type]
