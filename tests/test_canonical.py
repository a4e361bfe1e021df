"""The canonical forms the hash chain covers, against their plain definitions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from iop_episodes.domain.canonical import canonical_json, canonical_time

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(json_values)
def test_canonical_json_is_sorted_compact_ascii_json(value):
    """The fast encoder writes exactly what the documented json.dumps call writes."""
    reference = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert canonical_json(value) == reference.encode("ascii")


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
