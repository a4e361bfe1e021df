"""Valid commands as plain mappings; tests override the field they probe."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

COUNSELOR = {"id": "c.adams", "role": "counselor"}
THERAPIST = {"id": "t.chen", "role": "therapist"}
NURSE = {"id": "rn.diaz", "role": "nurse"}
PHYSICIAN = {"id": "dr.fox", "role": "physician"}
DIRECTOR = {"id": "pd.gray", "role": "program_director"}
SCHEDULER = {"id": "stepdown-scheduler", "role": "scheduler"}
AUDITOR = {"id": "au.hill", "role": "auditor"}

ASAM = {
    "intoxication_withdrawal": 1,
    "biomedical": 1,
    "emotional_behavioral_cognitive": 2,
    "readiness_to_change": 2,
    "relapse_potential": 2,
    "recovery_environment": 1,
}


def assessment(at: datetime, **overrides: Any) -> dict[str, Any]:
    return {
        "actor": COUNSELOR,
        "occurred_at": at,
        "client_ref": "MRN-0001",
        "birth_date": date(1988, 6, 1),
        "entry_pathway": "after_inpatient_or_residential",
        "payer": "private_insurance",
        "asam": ASAM,
        "primary_substances": ["opiates"],
        **overrides,
    }


def plan(episode_id: UUID, at: datetime, **overrides: Any) -> dict[str, Any]:
    return {
        "episode_id": episode_id,
        "actor": COUNSELOR,
        "occurred_at": at,
        "weekly_hours": 12,
        "days_per_week": 3,
        "modality_hours": {"group": 9, "individual": 1, "family": 1, "yoga": 1},
        "topics": ["relapse_prevention", "stress_management"],
        "medications": ["buprenorphine"],
        **overrides,
    }


def session(episode_id: UUID, at: datetime, **overrides: Any) -> dict[str, Any]:
    return {
        "episode_id": episode_id,
        "actor": COUNSELOR,
        "occurred_at": at,
        "modality": "group",
        "minutes": 180,
        "topics": ["relapse_prevention"],
        **overrides,
    }


def dose(episode_id: UUID, at: datetime, **overrides: Any) -> dict[str, Any]:
    return {
        "episode_id": episode_id,
        "actor": NURSE,
        "occurred_at": at,
        "medication": "buprenorphine",
        "strength_mg": 8,
        "dose_form": "film",
        "amount": 2,
        "unit": "film",
        "route": "sublingual",
        "lot": "LOT-2603-07",
        "take_home_doses": 1,
        **overrides,
    }


def screen(episode_id: UUID, at: datetime, **overrides: Any) -> dict[str, Any]:
    return {
        "episode_id": episode_id,
        "actor": NURSE,
        "occurred_at": at,
        "panel": "10-panel",
        "results": {"buprenorphine": "positive", "opiates": "negative"},
        **overrides,
    }


def step_down(episode_id: UUID, at: datetime, **overrides: Any) -> dict[str, Any]:
    return {
        "episode_id": episode_id,
        "actor": COUNSELOR,
        "occurred_at": at,
        "to_weekly_hours": 9,
        "reason": "Four weeks of full attendance and negative screens.",
        **overrides,
    }


def discharge(episode_id: UUID, at: datetime, **overrides: Any) -> dict[str, Any]:
    return {
        "episode_id": episode_id,
        "actor": COUNSELOR,
        "occurred_at": at,
        "reason": 1,
        "summary": "Completed the program.",
        **overrides,
    }


def aftercare(episode_id: UUID, at: datetime, **overrides: Any) -> dict[str, Any]:
    return {
        "episode_id": episode_id,
        "actor": COUNSELOR,
        "occurred_at": at,
        "kind": "therapist_appointment",
        "provider": "Community clinic",
        **overrides,
    }


def correction(episode_id: UUID, at: datetime, **overrides: Any) -> dict[str, Any]:
    return {
        "episode_id": episode_id,
        "actor": COUNSELOR,
        "occurred_at": at,
        "target_version": 3,
        "action": "void",
        "reason": "Charted for the wrong client.",
        **overrides,
    }


def consent(episode_id: UUID, at: datetime, **overrides: Any) -> dict[str, Any]:
    return {
        "episode_id": episode_id,
        "actor": COUNSELOR,
        "occurred_at": at,
        "recipient": "County EHR",
        "purpose": "treatment",
        "scope": [
            "admission_discharge",
            "aftercare",
            "drug_screens",
            "medications",
            "sessions",
        ],
        "expires_on": date(at.year + 1, 1, 1),
        "note": "Signed on the program's Part 2 consent form.",
        **overrides,
    }


def revocation(episode_id: UUID, at: datetime, **overrides: Any) -> dict[str, Any]:
    return {
        "episode_id": episode_id,
        "actor": COUNSELOR,
        "occurred_at": at,
        "consent_version": 3,
        "reason": "The client withdrew consent in writing.",
        **overrides,
    }


def disclosure(
    episode_id: UUID, at: datetime, *, to_version: int, **overrides: Any
) -> dict[str, Any]:
    """A disclosure of an episode's versions 1 to ``to_version`` under audit and evaluation.

    Its scope is assessment and sessions, as ``active_episode`` and a session hold.
    """
    return {
        "actor": DIRECTOR,
        "occurred_at": at,
        "command_id": f"disclosure-{episode_id}-{to_version}",
        "recipient": "State",
        "purpose": "audit",
        "basis": "exception",
        "exception": "audit-and-evaluation",
        "format": "fhir-r4-collection",
        "scope": ["admission_discharge", "sessions"],
        "records": [
            {
                "episode_id": episode_id,
                "client_ref": "MRN-0001",
                "from_version": 1,
                "to_version": to_version,
            }
        ],
        "sha256": "0" * 64,
        "size_bytes": 1,
        **overrides,
    }
