"""The tamper matrix: every change the README's guarantee table names, on each backend, key or not.

Each case changes a store with raw SQL, as someone with write access to the
database would, then asserts what the table promises: the findings of a
verification (episode, version, kind), and whether the episode's history is
still served. Where the README says a change is not detected (no integrity
key, and a change the store alone cannot tell from an honest one), the case
asserts exactly that, so the table cannot claim more than is true.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import errors
from iop_episodes.domain.canonical import (
    canonical_json,
    next_link,
    split_sealed,
    stored_form,
)
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import advance
from projections.audit import verify_all
from projections.runner import ViewRunner
from tests import tamper
from tests.conftest import START

KEY = base64.b64encode(bytes(range(32))).decode()
SESSIONS_TOPIC = "iop_episodes.domain.events:SessionAttended"


@dataclass
class Scenario:
    """A store holding three snapshotted episodes, views caught up."""

    url: str
    key: str | None
    clock: SimulatedClock
    meds: UUID  # plan with buprenorphine; 18 sessions; snapshot at 20
    discharged: UUID  # 17 sessions, discharged at version 20; snapshot at 20
    outpatient: UUID  # 9 hours, stepped down to 6 at version 20; snapshot at 20

    def service(self, *, key: str | bool | None = True) -> EpisodeService:
        """A fresh service (cold cache) on the store, with the scenario's key unless told."""
        chosen = self.key if key is True else (key or None)
        return EpisodeService(self.url, clock=self.clock, integrity_key=chosen)

    def findings(self) -> set[tuple[UUID, int, str]]:
        with self.service() as service:
            result = verify_all(service, ViewRunner(service).views)
        return {(f.episode_id, f.version, f.problem) for f in result.findings}

    def history_served(self, episode_id: UUID) -> bool:
        """Whether the episode still loads without an EntryIntegrityError (or is simply gone)."""
        with self.service() as service:
            try:
                list(service.history(episode_id))
                service.episode(episode_id)
            except errors.EpisodeNotFound:
                return True  # nothing is served as valid: the store holds no such episode
            except errors.EntryIntegrityError:
                return False
        return True


def build(url: str, key: str | None) -> Scenario:
    clock = SimulatedClock(START)
    with EpisodeService(url, clock=clock, integrity_key=key) as service:
        meds = _planned(service, clock, sessions=18)
        discharged = _planned(service, clock, sessions=17)
        service.discharge(factories.discharge(discharged, advance(clock, hours=1)))
        outpatient = _planned(service, clock, sessions=17, weekly_hours=9, modality_hours={})
        service.step_down(
            factories.step_down(outpatient, advance(clock, hours=1), to_weekly_hours=6)
        )
        ViewRunner(service).catch_up()
        for episode_id in (meds, discharged, outpatient):
            assert service.episode(episode_id).version == 20
    advance(clock, days=8)  # a later ISO week: another step-down is not refused for the week
    return Scenario(url, key, clock, meds, discharged, outpatient)


def _planned(
    service: EpisodeService, clock: SimulatedClock, *, sessions: int, **plan: object
) -> UUID:
    episode_id = service.assess(factories.assessment(clock.now())).episode_id
    service.create_plan(factories.plan(episode_id, advance(clock, minutes=30), **plan))
    for _ in range(sessions):
        # Three hours apart: a 3-hour session each, at most 24 hours in a local day.
        service.record_session(factories.session(episode_id, advance(clock, hours=3)))
    return episode_id


@pytest.fixture(params=[None, KEY], ids=["no-key", "key"])
def scenario(durable_url: str, request: pytest.FixtureRequest) -> Scenario:
    return build(durable_url, request.param)


# ---- changes an attacker makes -------------------------------------------------------


def change_a_byte(s: Scenario) -> None:
    tamper.replace_text(s.url, s.meds, 3, '"minutes":180', '"minutes":181')


def delete_an_entry(s: Scenario) -> None:
    tamper.delete(s.url, s.meds, 5)


def forge_with_a_correct_link(s: Scenario) -> None:
    """Append a version 21 whose link is computed exactly as docs/hash-chain.md says."""
    *_, (version, _, last) = tamper.event_rows(s.url, s.meds)
    link, seal, canonical = split_sealed(last)
    entry = json.loads(canonical)
    entry["version"] = version + 1
    entry["payload"]["minutes"] = 240
    forged = canonical_json(entry)
    tamper.append(
        s.url,
        s.meds,
        version + 1,
        SESSIONS_TOPIC,
        stored_form(next_link(link, forged), forged, seal),
    )


def reorder(s: Scenario) -> None:
    tamper.swap(s.url, s.meds, 3, 4)


def truncate(s: Scenario) -> None:
    tamper.delete(s.url, s.meds, 20)
    tamper.delete(s.url, s.meds, 19)


def rechain(s: Scenario) -> None:
    """Change version 3, recompute every later link, drop the snapshot, rebuild the views."""
    rows = tamper.event_rows(s.url, s.meds)
    previous = ""
    for version, _, state in rows:
        link, seal, canonical = split_sealed(state)
        if version == 3:
            canonical = canonical.replace(b'"minutes":180', b'"minutes":240')
        if version >= 3:
            link = next_link(previous, canonical)
            tamper.set_state(s.url, s.meds, version, stored_form(link, canonical, seal))
        previous = link
    tamper.delete_snapshots(s.url, s.meds)
    with s.service(key=False) as service:  # the attacker has the code, not the key
        ViewRunner(service).rebuild()


def truncate_consistently(s: Scenario) -> None:
    """Delete the last entries, their snapshot, and rebuild the views to match."""
    truncate(s)
    tamper.delete_snapshots(s.url, s.meds)
    with s.service(key=False) as service:
        ViewRunner(service).rebuild()


def delete_an_episode_consistently(s: Scenario) -> None:
    """Delete every entry and snapshot of one episode, and rebuild the views to match."""
    for version in range(20, 0, -1):
        tamper.delete(s.url, s.meds, version)
    tamper.delete_snapshots(s.url, s.meds)
    with s.service(key=False) as service:
        ViewRunner(service).rebuild()


def retopic_module(s: Scenario) -> None:
    tamper.retopic(s.url, s.meds, 3, "iop_episodes.domain.evil:SessionAttended")


def snapshot_methadone(s: Scenario) -> None:
    tamper.edit_snapshot(
        s.url, s.meds, b'"medications":["buprenorphine"]', b'"medications":["methadone"]'
    )


def snapshot_not_discharged(s: Scenario) -> None:
    _, state = tamper.snapshot_state(s.url, s.discharged)
    start = state.index(b'"discharged_at":{')
    end = state.index(b"}", start) + 1
    tamper.edit_snapshot(s.url, s.discharged, state[start:end], b'"discharged_at":null')


def snapshot_more_hours(s: Scenario) -> None:
    tamper.edit_snapshot(
        s.url,
        s.outpatient,
        b'"weekly_hours":{"_type_":"decimal_str","_data_":"6"}',
        b'"weekly_hours":{"_type_":"decimal_str","_data_":"16"}',
    )


VIEW_EDITS: dict[str, tuple[str, str]] = {
    # table: (a column changed, which rows)
    "iop_episodes": ("status = 'active'", ""),
    "iop_entries": ("minutes = minutes + 60", "version = 3"),
    "iop_activity": ("minutes = minutes + 60", ""),
    "iop_step_downs": ("to_hours = '12'", ""),
    "iop_audit": ("actor_id = 'someone.else'", "version = 20"),
}
VIEW_EPISODE = {  # which episode's rows each table edit touches
    "iop_episodes": "discharged",
    "iop_entries": "meds",
    "iop_activity": "meds",
    "iop_step_downs": "outpatient",
    "iop_audit": "discharged",  # version 20 is its Discharged entry
}


def view_change(table: str) -> Callable[[Scenario], None]:
    def change(s: Scenario) -> None:
        assignment, where = VIEW_EDITS[table]
        tamper.edit_view(s.url, table, assignment, getattr(s, VIEW_EPISODE[table]), where)

    return change


def view_delete(table: str) -> Callable[[Scenario], None]:
    def delete(s: Scenario) -> None:
        tamper.delete_view_row(s.url, table, getattr(s, VIEW_EPISODE[table]), VIEW_EDITS[table][1])

    return delete


def tracking_past_head(s: Scenario) -> None:
    tamper.set_tracking(s.url, 60 + 10)


def tracking_back(s: Scenario) -> None:
    tamper.set_tracking(s.url, 60 - 3)


# ---- what the table promises ---------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What verification names (episode attribute, version, kind) and whether it is served."""

    found: frozenset[tuple[str, int, str]]
    served: bool = True


def found(*items: tuple[str, int, str], served: bool = True) -> Outcome:
    return Outcome(frozenset(items), served)


NOT_DETECTED = found()  # the README says so: without a key the store alone cannot tell

MATRIX: dict[str, tuple[Callable[[Scenario], None], Outcome, Outcome]] = {
    # kind: (change, without a key, with a key)
    "event: a changed byte": (
        change_a_byte,
        found(("meds", 3, "chain-mismatch"), served=False),
        found(("meds", 3, "chain-mismatch"), served=False),
    ),
    "event: a deleted entry": (
        delete_an_entry,
        found(("meds", 5, "version-gap"), ("meds", 6, "chain-mismatch"), served=False),
        found(("meds", 5, "version-gap"), ("meds", 6, "chain-mismatch"), served=False),
    ),
    "event: a forged entry with a correct link": (
        forge_with_a_correct_link,
        NOT_DETECTED,
        found(("meds", 21, "seal-mismatch"), served=False),
    ),
    "event: two entries reordered": (
        reorder,
        found(("meds", 3, "chain-mismatch"), ("meds", 4, "chain-mismatch"), served=False),
        found(("meds", 3, "chain-mismatch"), ("meds", 4, "chain-mismatch"), served=False),
    ),
    "event: the last entries truncated": (
        truncate,
        found(("meds", 20, "snapshot-mismatch"), ("meds", 19, "projection-mismatch")),
        found(("meds", 20, "snapshot-mismatch"), ("meds", 19, "projection-mismatch")),
    ),
    "event: the last entries truncated, snapshot and views made to match": (
        truncate_consistently,
        NOT_DETECTED,
        NOT_DETECTED,
    ),
    "event: a whole episode deleted, snapshot and views made to match": (
        delete_an_episode_consistently,
        NOT_DETECTED,
        NOT_DETECTED,
    ),
    "event: a whole chain rewritten consistently": (
        rechain,
        NOT_DETECTED,
        found(*((("meds", v, "seal-mismatch")) for v in range(3, 21)), served=False),
    ),
    "event: only the module of a topic changed": (
        retopic_module,
        found(("meds", 3, "topic-mismatch"), served=False),
        found(("meds", 3, "topic-mismatch"), served=False),
    ),
    "snapshot: medications set to methadone": (
        snapshot_methadone,
        found(("meds", 20, "snapshot-mismatch")),
        found(("meds", 20, "snapshot-mismatch")),
    ),
    "snapshot: discharged_at cleared": (
        snapshot_not_discharged,
        found(("discharged", 20, "snapshot-mismatch")),
        found(("discharged", 20, "snapshot-mismatch")),
    ),
    "snapshot: weekly_hours raised": (
        snapshot_more_hours,
        found(("outpatient", 20, "snapshot-mismatch")),
        found(("outpatient", 20, "snapshot-mismatch")),
    ),
    "tracking: moved past the head": (
        tracking_past_head,
        found(("store", 70, "tracking-mismatch")),
        found(("store", 70, "tracking-mismatch")),
    ),
}
VIEW_VERSIONS = {"iop_episodes": 20, "iop_entries": 3, "iop_activity": 0, "iop_step_downs": 20}
for _table in tamper.VIEW_TABLES:
    _version = VIEW_VERSIONS.get(_table, 20)
    _where = (VIEW_EPISODE[_table], _version, "projection-mismatch")
    MATRIX[f"view {_table}: a column changed"] = (view_change(_table), found(_where), found(_where))
    MATRIX[f"view {_table}: a row deleted"] = (view_delete(_table), found(_where), found(_where))


def resolve(s: Scenario, outcome: Outcome) -> set[tuple[UUID, int, str]]:
    return {
        (UUID(int=0) if name == "store" else getattr(s, name), version, kind)
        for name, version, kind in outcome.found
    }


@pytest.mark.parametrize("kind", list(MATRIX))
def test_every_change_has_the_outcome_the_guarantee_table_promises(scenario: Scenario, kind: str):
    """Verification names each change by episode and version; what fails to verify is not served."""
    change, without_key, with_key = MATRIX[kind]
    promised = with_key if scenario.key else without_key
    assert scenario.findings() == set()
    change(scenario)
    findings = scenario.findings()
    if not promised.found:
        assert findings == set()
    else:
        assert resolve(scenario, promised) <= findings
        assert {episode for episode, _, _ in findings} <= {
            episode for episode, _, _ in resolve(scenario, promised)
        }
    assert scenario.history_served(scenario.meds) == promised.served


def test_tracking_moved_back_is_found_as_view_rows_the_entries_up_to_it_do_not_make(
    scenario: Scenario,
):
    """Views ahead of their tracked position differ from a rebuild up to it, named by episode."""
    tracking_back(scenario)
    findings = scenario.findings()
    assert findings
    assert all(problem == "projection-mismatch" for _, _, problem in findings)
    assert {episode for episode, _, _ in findings} == {scenario.outpatient}


CAUGHT_ONLY_BY_CHECKPOINTS = [kind for kind, (_, _, keyed) in MATRIX.items() if not keyed.found]
"""The changes the store cannot tell from honest history even with a key (the README says so).

Signed checkpoints kept in a witness catch them: the witness column of the
guarantee table parametrizes its tests over these kinds.
"""


# ---- a changed snapshot never changes a decision ----------------------------------------------


REFUSED: dict[
    str,
    tuple[
        Callable[[Scenario], None],
        Callable[[Scenario, EpisodeService], object],
        type[errors.EpisodeRuleError],
    ],
] = {
    "methadone": (
        snapshot_methadone,
        lambda s, service: service.dispense_medication(
            factories.dose(s.meds, s.clock.now(), medication="methadone")
        ),
        errors.MedicationNotInPlan,
    ),
    "discharged": (
        snapshot_not_discharged,
        lambda s, service: service.record_session(factories.session(s.discharged, s.clock.now())),
        errors.EpisodeDischarged,
    ),
    "weekly hours": (
        snapshot_more_hours,
        lambda s, service: service.step_down(
            factories.step_down(s.outpatient, s.clock.now(), to_weekly_hours=15)
        ),
        errors.StepDownNotLower,
    ),
}


@pytest.mark.parametrize("edit", list(REFUSED))
def test_an_edited_snapshot_never_changes_a_decision(scenario: Scenario, edit: str):
    """The command refused before the snapshot edit is refused after it, the episode replayed."""
    change, command, refusal = REFUSED[edit]
    with scenario.service() as service, pytest.raises(refusal):
        command(scenario, service)
    change(scenario)
    with scenario.service() as service, pytest.raises(refusal):
        command(scenario, service)


def test_a_snapshot_whose_digest_was_recomputed_is_caught_by_the_seal_or_by_a_replay(
    scenario: Scenario,
):
    """Without a key the load trusts it and verify's replay finds it; with a key it is ignored."""
    tamper.edit_snapshot_and_digest(
        scenario.url,
        scenario.meds,
        b'"medications":["buprenorphine"]',
        b'"medications":["methadone"]',
    )
    with scenario.service() as service:
        served = service.episode(scenario.meds).medications
    assert list(served) == (["buprenorphine"] if scenario.key else ["methadone"])
    assert scenario.findings() == {(scenario.meds, 20, "snapshot-mismatch")}
