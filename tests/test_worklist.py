"""``iop worklist``: per client what needs attention, from the read side."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import IDEMPOTENCY_SCOPE, EpisodeService
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, advance
from projections.worklist import Worklist
from tests.cli import iop
from tests.conftest import START


def test_the_worklist_names_each_kind_of_attention(sqlite_url):
    """Screen overdue, unexpected positive, discharge without aftercare and recertification."""
    clock = SimulatedClock(START)
    with EpisodeService(sqlite_url, clock=clock, timezone="America/New_York") as service:
        quiet = active_episode(service, clock)  # screened weekly: nothing to do
        unscreened = active_episode(service, clock)
        positive = active_episode(service, clock)
        leaving = active_episode(service, clock)
        medicare = service.assess(
            factories.assessment(clock.now(), payer="medicare", client_ref="MRN-M")
        ).episode_id
        service.create_plan(
            factories.plan(medicare, advance(clock, hours=1), certifying_physician_id="dr.fox")
        )
        for week in range(2):
            at = START + timedelta(weeks=week, days=2)
            clock.set(at + timedelta(hours=1))
            for episode_id in (quiet, positive, leaving, medicare):
                service.record_screen(factories.screen(episode_id, at))
        clock.set(START + timedelta(weeks=2, hours=3))
        service.record_screen(
            factories.screen(positive, clock.now(), results={"cocaine": "positive"})
        )
        service.discharge(factories.discharge(leaving, clock.now()))
    as_of = datetime(2026, 4, 20, 12, tzinfo=UTC)  # 49 days after certification
    done = iop("worklist", "--store", sqlite_url, "--as-of", "2026-03-16T20:00Z", "--json")
    worklist = Worklist.model_validate_json(done.stdout)
    kinds = {c.episode_id: [a.kind for a in c.attention] for c in worklist.clients}
    assert str(quiet) not in kinds
    assert kinds[str(unscreened)] == ["screen-overdue"]
    assert kinds[str(positive)] == ["unexpected-positive-this-week"]
    assert kinds[str(leaving)] == ["discharged-without-aftercare"]
    assert str(medicare) not in kinds
    later = iop("worklist", "--store", sqlite_url, "--as-of", as_of.isoformat(), "--json")
    items = {c["episode_id"]: c["attention"] for c in json.loads(later.stdout)["clients"]}
    recert = [a for a in items[str(medicare)] if a["kind"].startswith("recertification")]
    assert recert == [
        {
            "kind": "recertification-due",
            "detail": "recertify by 2026-05-01 (last certified 2026-03-02)",
            "due_on": "2026-05-01",
        }
    ]
    text = iop("worklist", "--store", sqlite_url, "--as-of", as_of.isoformat()).stdout
    assert text.startswith("worklist as of 2026-04-20T12:00:00+00:00: ")
    assert f"{medicare}  recertification-due" in text


def test_the_worklist_needs_a_zone_on_its_time(sqlite_url):
    """A naive --as-of is a usage error (exit 2)."""
    done = iop("worklist", "--store", sqlite_url, "--as-of", "2026-03-16T20:00", expect=2)
    assert "needs a timezone" in done.stderr


def test_a_command_id_names_one_command_per_episode(sqlite_url):
    """Idempotency is per episode: the same key on another episode records there too."""
    clock = SimulatedClock(START)
    with EpisodeService(sqlite_url, clock=clock) as service:
        first, second = active_episode(service, clock), active_episode(service, clock)
        at = advance(clock, hours=1)
        one = service.record_session(factories.session(first, at, command_id="sess-1"))
        again = service.record_session(factories.session(first, at, command_id="sess-1"))
        other = service.record_session(factories.session(second, at, command_id="sess-1"))
    assert IDEMPOTENCY_SCOPE == "episode"
    assert (one.replayed, again.replayed, other.replayed) == (False, True, False)
    assert (again.version, other.episode_id) == (one.version, second)
