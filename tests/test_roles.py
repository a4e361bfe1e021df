"""For every command and every role: allowed pairs store, every other pair is refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.integrity import verify_store
from iop_episodes.domain import errors
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, stored_count
from projections import audit
from projections.runner import ViewRunner

ROLES = ["counselor", "therapist", "nurse", "physician", "program_director", "scheduler", "auditor"]
# The specification, written out: who may record what.
MAY = {
    "assess": {"counselor", "therapist", "physician"},
    "create_plan": {"counselor", "physician", "program_director"},
    "record_session": {"counselor", "therapist", "physician"},
    "dispense_medication": {"nurse", "physician"},
    "record_screen": {"nurse", "physician", "counselor"},
    "step_down": {"counselor", "physician", "program_director", "scheduler"},
    "discharge": {"counselor", "physician", "program_director"},
    "schedule_aftercare": {"counselor", "therapist", "physician", "program_director"},
    "correct_entry": {"counselor", "therapist", "nurse", "physician", "program_director"},
    "record_consent": {"counselor", "physician", "program_director"},
    "revoke_consent": {"counselor", "physician", "program_director"},
}


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
