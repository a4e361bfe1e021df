"""The canonical forms the hash chain covers, against their plain definitions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iop_episodes.domain import commands
from iop_episodes.domain.canonical import (
    canonical_form,
    canonical_json,
    canonical_time,
    parse_json,
)
from iop_episodes.testing import factories
from tests.strategies import AWKWARD_CHARACTERS, json_values


def reference_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@given(json_values)
def test_canonical_json_is_sorted_compact_ascii_json(value):
    """The encoder writes exactly what the documented json.dumps call writes."""
    assert canonical_json(value) == reference_json(value)


@given(json_values)
def test_the_fast_canonical_form_is_byte_for_byte_json_dumps(value):
    """msgspec with its fallbacks writes json.dumps's bytes for every JSON value."""
    assert canonical_form(value) == reference_json(value)


@pytest.mark.parametrize("character", AWKWARD_CHARACTERS)
def test_the_fast_canonical_form_escapes_each_awkward_character_as_json_dumps(character):
    """Every control character, DEL, U+2028/2029, non-ASCII and lone surrogate, alone and keyed."""
    value = {character: [character, f"a{character}b"], "k": character}
    assert canonical_form(value) == reference_json(value)


@pytest.mark.parametrize(
    "value", [2**64, -(2**63) - 1, 10**30, 1e16, 1e-05, 1.5, [0.1], {"a": -2.5e-300}, [], {}]
)
def test_the_fast_canonical_form_writes_huge_integers_floats_and_empties_as_json_dumps(value):
    """Integers past 64 bits and floats in exponent form come out as json.dumps writes them."""
    assert canonical_form(value) == reference_json(value)


def test_canonical_json_refuses_what_json_cannot_hold():
    """A datetime is refused, not written in some encoder's own form."""
    with pytest.raises(TypeError):
        canonical_json({"when": datetime(2026, 1, 1, tzinfo=UTC)})


@given(json_values)
def test_parse_json_reads_back_what_json_loads_reads(value):
    """The fast decoder gives json.loads's value, types included, for every encoded value."""
    for text in (reference_json(value), json.dumps(value).encode()):
        parsed = parse_json(text)
        assert parsed == json.loads(text) or parsed != parsed  # noqa: PLR0124  (nothing NaN here)
        assert repr(parsed) == repr(json.loads(text))


@pytest.mark.parametrize(
    "text", [b'{"a":"\\ud800"}', b"[NaN]", b"[Infinity]", b"[1e400]", b'{"a":1,"a":2}']
)
def test_parse_json_accepts_what_json_loads_accepts(text):
    """Escaped lone surrogates, NaN, Infinity and out-of-range numbers parse as json.loads does."""
    assert repr(parse_json(text)) == repr(json.loads(text))


EARLIEST = datetime(1000, 1, 2)  # noqa: DTZ001  (hypothesis takes naive bounds; the offset is drawn)
LATEST = datetime(9999, 12, 30)  # noqa: DTZ001  (as above)


@given(st.datetimes(min_value=EARLIEST, max_value=LATEST), st.integers(-14 * 60, 14 * 60))
def test_canonical_time_is_utc_with_six_fraction_digits_and_z(moment, offset_minutes):
    """Any aware moment is written as its UTC time in one fixed 27-character form."""
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    text = canonical_time(aware)
    assert text == aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert len(text) == 27
    assert datetime.fromisoformat(text) == aware


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),  # noqa: DTZ001  (naive bounds: a day inside the range in UTC)
        max_value=LATEST,
        timezones=st.timezones(),
    )
)
def test_canonical_time_is_the_utc_isoformat_with_z_for_every_year_and_zone(moment):
    """Years before 1000, whole seconds, folds and IANA zones: isoformat's digits, then Z."""
    utc = moment.astimezone(UTC)
    assert canonical_time(moment) == utc.isoformat(timespec="microseconds")[:-6] + "Z"


COMMANDS = [
    (commands.Assess, lambda at: factories.assessment(at, program_timezone="America/Chicago")),
    (commands.CreatePlan, lambda at: factories.plan(UUID(int=1), at)),
    (commands.RecordSession, lambda at: factories.session(UUID(int=1), at, command_id="s-1")),
    (commands.DispenseMedication, lambda at: factories.dose(UUID(int=1), at)),
    (commands.RecordScreen, lambda at: factories.screen(UUID(int=1), at)),
    (commands.StepDownHours, lambda at: factories.step_down(UUID(int=1), at)),
    (commands.Discharge, lambda at: factories.discharge(UUID(int=1), at)),
    (commands.RecordConsent, lambda at: factories.consent(UUID(int=1), at)),
]


@pytest.mark.parametrize(
    ("command_type", "make"), COMMANDS, ids=lambda c: getattr(c, "__name__", "")
)
def test_a_command_as_received_is_its_json_model_dump(command_type, make):
    """as_received calls the serializer itself: the same form model_dump(mode="json") gives."""
    at = datetime(2026, 3, 2, 9, 30, 0, 0, tzinfo=timezone(timedelta(hours=-5)))
    command = command_type.model_validate(make(at))
    assert command.as_received() == command.model_dump(mode="json")
    assert canonical_form(command.as_received()) == reference_json(command.model_dump(mode="json"))
