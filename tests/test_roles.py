"""For every command and every role: allowed pairs store, every other pair is refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.integrity import verify_store
from iop_episodes.domain import errors
from iop_episodes.domain.permissions import ALLOWED_ROLES
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, stored_count
from projections import audit
from projections.runner import ViewRunner

ROLES = ["counselor", "therapist", "nurse", "physician", "program_director", "scheduler", "auditor"]
README = Path(__file__).parent.parent / "README.md"
ENTRY_OF = {
    "assess": "Assessed",
    "create_plan": "PlanCreated",
    "record_session": "SessionAttended",
    "dispense_medication": "MedicationDispensed",
    "record_screen": "ScreenResulted",
    "step_down": "StepDown",
    "discharge": "Discharged",
    "schedule_aftercare": "AftercareScheduled",
    "correct_entry": "EntryCorrected",
    "record_consent": "ConsentRecorded",
    "revoke_consent": "ConsentRevoked",
}


def readme_roles() -> dict[str, set[str]]:
    """The README's "Who may record what" table: entry type -> roles (the specification)."""
    section = README.read_text().split("### Who may record what", 1)[1].split("\n\n", 2)[1]
    table: dict[str, set[str]] = {}
    for line in section.splitlines()[2:]:
        entries, roles = (cell.strip() for cell in line.strip("|").split("|"))
        if entries.startswith("Disclosed"):
            continue  # exports: tests/test_disclosures.py checks those rows
        for entry in entries.split(", "):
            table[entry] = set(roles.split(", "))
    return table


MAY = {method: readme_roles()[entry] for method, entry in ENTRY_OF.items()}


def test_the_domain_grants_what_the_readme_says() -> None:
    """Every entry type's roles in the domain are the README's, and every type is listed."""
    granted = {entry: {str(role) for role in roles} for entry, roles in ALLOWED_ROLES.items()}
    listed = readme_roles()
    assert {entry: granted[entry] for entry in listed} == listed
    assert set(granted) - set(listed) <= {"Disclosed"}


def command_for(method: str, service: EpisodeService, clock: SimulatedClock) -> dict[str, Any]:
    """A command that the right role could record on a fresh episode."""
    now = clock.now()
    if method == "assess":
        return factories.assessment(now)
    if method == "create_plan":
        episode = service.assess(factories.assessment(now)).episode_id
        return factories.plan(episode, now)
    episode = active_episode(service, clock)
    now = clock.now()
    if method == "correct_entry":
        service.record_session(factories.session(episode, now))
        return factories.correction(episode, now)
    if method == "revoke_consent":
        service.record_consent(factories.consent(episode, now))
        return factories.revocation(episode, now)
    builders: dict[str, Callable[[UUID, Any], dict[str, Any]]] = {
        "record_session": factories.session,
        "dispense_medication": factories.dose,
        "record_screen": factories.screen,
        "step_down": factories.step_down,
        "discharge": factories.discharge,
        "schedule_aftercare": factories.aftercare,
        "record_consent": factories.consent,
    }
    return builders[method](episode, now)


@pytest.mark.parametrize("method", sorted(MAY))
def test_every_role_against_every_command(service, clock, method):
    """Allowed roles store one entry; the others raise PermissionDenied and store nothing."""
    for role in ROLES:
        clock.advance(timedelta(days=8))
        command = {
            **command_for(method, service, clock),
            "actor": {"id": f"x.{role}", "role": role},
        }
        before = stored_count(service)
        if role in MAY[method]:
            getattr(service, method)(command)
            assert stored_count(service) == before + 1, (method, role)
        else:
            with pytest.raises(errors.PermissionDenied) as raised:
                getattr(service, method)(command)
            assert raised.value.field == "actor.role"
            assert f"role {role}" in str(raised.value)
            assert stored_count(service) == before, (method, role)


def test_the_auditor_reads_and_verifies(service, clock):
    """An auditor's tools read histories and verify chains without recording anything."""
    episode_id = active_episode(service, clock)
    before = stored_count(service)
    runner = ViewRunner(service)
    runner.catch_up()
    assert len(audit.history(runner.views, str(episode_id))) == 2
    assert service.episode(episode_id, version=1).status == "assessed"
    assert verify_store(service) == []
    assert audit.verify(service, runner.views) == []
    assert stored_count(service) == before
