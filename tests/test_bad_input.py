"""Malformed commands get an error naming the field, and nothing is stored."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.domain import errors
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, stored_count
from tests.conftest import START, postgres_available, postgres_schema

texts = {
    "control": st.text(
        alphabet=st.characters(min_codepoint=0, max_codepoint=31).filter(
            lambda c: c not in "\t\n\r"
        ),
        min_size=1,
        max_size=5,
    ),
    "too long": st.just("x" * 5000),
}
BAD: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "record_session": {
        "minutes": st.sampled_from([0, -5, 100_000, "abc", None, 1.5, [], "60 minutes"]),
        "modality": st.sampled_from(["tai-chi", "", 7, None, "GROUP"]),
        "occurred_at": st.sampled_from(["yesterday", "2026-03-02T10:00:00", 17, None]),
        "topics": st.sampled_from([["astrology"], "relapse_prevention", [1]]),
        "note": st.one_of(*texts.values()),
        "episode_id": st.sampled_from(["not-a-uuid", 42, ""]),
        "setting": st.sampled_from(["moon", 1]),
    },
    "dispense_medication": {
        "amount": st.sampled_from([0, -1, "a lot", 10**9, "0.001"]),
        "medication": st.sampled_from(["fentanyl", "oxycodone", "", "METHADONE"]),
        "unit": st.sampled_from(["kg", "", "pill"]),
        "take_home_doses": st.sampled_from([-1, 99, "two"]),
        "strength_mg": st.sampled_from([0, -8, "strong", 10**7]),
        "lot": st.one_of(st.just("LOT 1; DROP TABLE x"), *texts.values()),
    },
    "create_plan": {
        "weekly_hours": st.sampled_from(["25", "0", "abc", "9.999", -9, "8", 200]),
        "days_per_week": st.sampled_from([0, 8, "three"]),
        "medications": st.sampled_from([["heroin"], "methadone"]),
        "certifying_physician_id": st.sampled_from(["", "dr fox", "x" * 80]),
    },
    "assess": {
        "birth_date": st.sampled_from(["2090-01-01", "2021-01-01", "1800-01-01", "01/02/1990"]),
        "client_ref": st.sampled_from(["'; DROP TABLE stored_events; --", "", "x" * 65, "MRN\x00"]),
        "payer": st.sampled_from(["cash", "", None]),
        "entry_pathway": st.sampled_from(["walk-in", 3]),
        "primary_substances": st.sampled_from([[], ["chocolate"], "alcohol"]),
        "asam": st.sampled_from([{**factories.ASAM, "biomedical": 5}, {"biomedical": 1}, "low"]),
    },
}
ROLE_AND_TIME = {
    "actor": st.sampled_from(
        [
            {"id": "c.adams", "role": "janitor"},
            {"id": "", "role": "counselor"},
            {"id": "c adams", "role": "counselor"},
            {"role": "counselor"},
            "c.adams",
        ]
    ),
    "occurred_at": st.sampled_from(["future", "naive"]),
}


def valid(method: str, service: EpisodeService, clock: SimulatedClock) -> dict[str, Any]:
    clock.advance(timedelta(hours=1))
    if method == "assess":
        return factories.assessment(clock.now())
    if method == "create_plan":
        return factories.plan(
            service.assess(factories.assessment(clock.now())).episode_id, clock.now()
        )
    episode = active_episode(service, clock)
    builder = factories.session if method == "record_session" else factories.dose
    return builder(episode, clock.now())


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[EpisodeService, SimulatedClock]]]:
    """One store per backend for the whole module: nothing should ever be stored."""
    urls = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path_factory.mktemp('bad') / 'b.db'}"}
    with contextlib.ExitStack() as stack:
        if postgres_available():
            urls["postgres"] = stack.enter_context(postgres_schema("bad"))
        elif os.environ.get("IOP_REQUIRE_POSTGRES") == "1":
            pytest.fail("IOP_REQUIRE_POSTGRES=1 but no PostgreSQL at 127.0.0.1:5432")
        made = {}
        for name, url in urls.items():
            clock = SimulatedClock(START)
            made[name] = (EpisodeService(url, clock=clock), clock)
            stack.callback(made[name][0].close)
        yield made


def named(error: Exception, field: str) -> bool:
    """Whether the error names exactly ``field`` as the place of the problem."""
    if isinstance(error, ValidationError):
        return any(e["loc"] and str(e["loc"][0]) == field for e in error.errors())
    return getattr(error, "field", None) == field


def test_malformed_commands_are_refused_naming_the_field(stores):
    """Wrong types, missing fields, bad times, out-of-band hours, absurd doses, unknown codes."""
    tried = {"cases": 0}

    @settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        refused_without_storing(stores, data)
        tried["cases"] += 1

    check()
    print(f"bad-input cases tried: {tried['cases']} malformed commands")
    assert tried["cases"] == 300


def refused_without_storing(stores: dict[str, Any], data: st.DataObject) -> None:
    backend = data.draw(st.sampled_from(sorted(stores)), label="backend")
    service, clock = stores[backend]
    method = data.draw(st.sampled_from(sorted(BAD)), label="command")
    field = data.draw(
        st.sampled_from(sorted({*BAD[method], *ROLE_AND_TIME, "extra", "missing"})), label="field"
    )
    command = valid(method, service, clock)
    if field == "extra":
        command["unexpected"] = data.draw(st.integers())
        expected = "unexpected"
    elif field == "missing":
        expected = data.draw(
            st.sampled_from(
                sorted(
                    k
                    for k in command
                    if k not in {"episode_id", "command_id"}
                    and k
                    in {
                        "actor",
                        "occurred_at",
                        "modality",
                        "minutes",
                        "medication",
                        "weekly_hours",
                        "client_ref",
                        "asam",
                        "lot",
                        "days_per_week",
                    }
                )
            )
        )
        del command[expected]
    elif field == "occurred_at" and field not in BAD[method]:
        kind = data.draw(ROLE_AND_TIME["occurred_at"])
        command["occurred_at"] = (
            (clock.now() + timedelta(hours=2))
            if kind == "future"
            else clock.now().replace(tzinfo=None)
        )
        expected = "occurred_at"
    else:
        pool = BAD[method][field] if field in BAD[method] else ROLE_AND_TIME[field]
        command[field] = data.draw(pool, label="value")
        if field == "weekly_hours":
            command["modality_hours"] = {}  # else the breakdown's sum is the first error
        expected = field
    before = stored_count(service)
    with pytest.raises((ValidationError, errors.EpisodeRuleError)) as raised:
        getattr(service, method)(command)
    assert named(raised.value, expected), (expected, raised.value)
    assert stored_count(service) == before


SQLISH = st.sampled_from(
    [
        "'; DROP TABLE stored_events; --",
        "Robert'); DELETE FROM iop_audit WHERE ('1'='1",
        "1 OR 1=1; UPDATE stored_events SET state = NULL",
        '" UNION SELECT * FROM tracking --',
    ]
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=SQLISH, suffix=st.text(max_size=20).filter(lambda t: t.isprintable()))
def test_text_that_looks_like_sql_is_stored_verbatim_and_harmless(stores, text, suffix):
    """Free text is data: stored exactly as given, and the store still verifies."""
    service, clock = stores["sqlite"]
    episode = active_episode(service, clock)
    note = text + suffix
    receipt = service.record_session(factories.session(episode, clock.now(), note=note))
    stored = list(service.history(episode))[receipt.version - 1]
    assert stored.payload["note"] == note
    assert service.episode(episode).version == receipt.version
