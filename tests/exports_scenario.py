"""One episode with everything an export must show, built the same way every time.

Assessed (v1), plan of 9 hours with buprenorphine (v2), a group session later
voided (v3) and an individual session later amended (v4), a dose with two
take-home doses (v5), a screen with an expected positive (buprenorphine), an
unexpected one (cocaine) and a negative (v6), the void (v7), the amendment
(v8), a consent for the County EHR (v9), a step-down to 6 hours, out of IOP
(v10), and a discharge with treatment completed (v11).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import UUID

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.testing import factories

START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # Monday 10:00 in New York
STEP_DOWN_AT = datetime(2026, 4, 6, 15, 0, tzinfo=UTC)  # 35 days after the plan
DISCHARGE_AT = datetime(2026, 4, 27, 15, 0, tzinfo=UTC)  # 21 days after the step-down
PHYSICIAN = {"id": "dr.lee", "role": "physician"}


def scenario(service: EpisodeService, clock: SimulatedClock) -> UUID:
    """Record the scenario's eleven entries; the clock must stand at or before START."""
    clock.set(START)
    episode = service.assess(
        factories.assessment(
            START,
            command_id="scenario-intake",
            client_ref="MRN-7001",
            payer="medicaid",
            primary_substances=["cocaine", "opiates"],
        )
    ).episode_id
    plan_at = START + timedelta(hours=1)
    clock.set(plan_at)
    service.create_plan(
        factories.plan(
            episode,
            plan_at,
            weekly_hours=9,
            modality_hours={"group": 7, "individual": 1, "family": 1},
        )
    )
    day = plan_at + timedelta(hours=7)
    clock.set(day + timedelta(hours=4))
    service.record_session(factories.session(episode, day, minutes=180))
    service.record_session(
        factories.session(
            episode,
            day + timedelta(hours=3),
            modality="individual",
            minutes=60,
            setting="telehealth",
        )
    )
    service.dispense_medication(factories.dose(episode, day, take_home_doses=2))
    service.record_screen(
        factories.screen(
            episode,
            day,
            results={"buprenorphine": "positive", "cocaine": "positive", "opiates": "negative"},
        )
    )
    clock.set(day + timedelta(days=1))
    service.correct_entry(factories.correction(episode, clock.now(), target_version=3))
    service.correct_entry(
        factories.correction(
            episode,
            clock.now(),
            target_version=4,
            action="amend",
            reason="Session ended early.",
            amended={"modality": "individual", "minutes": 45, "setting": "telehealth"},
        )
    )
    service.record_consent(factories.consent(episode, clock.now(), expires_on=date(2027, 3, 1)))
    clock.set(STEP_DOWN_AT)
    service.step_down(factories.step_down(episode, STEP_DOWN_AT, to_weekly_hours=6))
    clock.set(DISCHARGE_AT)
    service.discharge(factories.discharge(episode, DISCHARGE_AT))
    return episode
