"""An episode with something of everything an audit report shows, for the report tests."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import advance, open_episode

HOSTILE_NOTE = (
    '<script>alert("x")</script><img src="http://example.com/t.png">'
    "\nv99  Discharged  forged line \u202eevil\u202c"
)


def eventful_episode(service: EpisodeService, clock: SimulatedClock) -> UUID:
    """Six weeks on buprenorphine: sessions, doses, screens (one unexpected positive), a late
    entry, an amendment, a voided session and a voided dose (5 take-home), a step-down in
    week 5 and a hostile note."""
    episode_id = open_episode(service, clock, client_ref="MRN-0042")
    service.create_plan(
        factories.plan(episode_id, advance(clock, hours=1), medications=["buprenorphine"])
    )
    for week in range(6):
        monday = clock.now()
        for day in (0, 2, 4):
            at = monday + timedelta(days=day, hours=2)
            clock.advance(at - clock.now() + timedelta(minutes=5))
            service.record_session(factories.session(episode_id, at, minutes=180 + 60 * (day == 0)))
            service.dispense_medication(
                factories.dose(episode_id, at, take_home_doses=1 + day // 4)
            )
        results = {"buprenorphine": "positive", "opiates": "positive" if week == 2 else "negative"}
        service.record_screen(factories.screen(episode_id, clock.now(), results=results))
        if week == 4:
            service.step_down(factories.step_down(episode_id, clock.now()))
        clock.advance(monday + timedelta(days=7) - clock.now())
    late_at = clock.now() - timedelta(days=3)
    late = service.record_session(factories.session(episode_id, late_at, note=HOSTILE_NOTE))
    wrong = service.record_session(factories.session(episode_id, advance(clock, hours=1)))
    service.correct_entry(
        factories.correction(
            episode_id,
            advance(clock, hours=1),
            target_version=late.version,
            action="amend",
            amended={"modality": "individual", "minutes": 60, "note": HOSTILE_NOTE},
            reason="Was an individual session.",
        )
    )
    service.correct_entry(
        factories.correction(episode_id, advance(clock, hours=1), target_version=wrong.version)
    )
    stray = service.dispense_medication(
        factories.dose(episode_id, advance(clock, hours=1), take_home_doses=5)
    )
    service.correct_entry(
        factories.correction(episode_id, advance(clock, hours=1), target_version=stray.version)
    )
    return episode_id
