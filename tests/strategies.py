"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

MODALITIES = ["group", "individual", "family", "yoga", "art"]


@dataclass(frozen=True)
class Step:
    """One thing that happens in a program: which client, what, and how long after."""

    client: int
    action: str
    hours_later: int
    detail: dict[str, Any]


def steps(clients: int) -> st.SearchStrategy[Step]:
    client = st.integers(0, clients - 1)
    later = st.integers(0, 60)
    session = st.fixed_dictionaries(
        {"modality": st.sampled_from(MODALITIES), "minutes": st.integers(15, 240)}
    )
    screen = st.fixed_dictionaries(
        {
            "opiates": st.sampled_from(["negative", "negative", "positive"]),
            "buprenorphine": st.sampled_from(["negative", "positive"]),
        }
    )
    correction = st.fixed_dictionaries(
        {
            "back": st.integers(1, 6),
            "void": st.booleans(),
            "minutes": st.integers(15, 240),
        }
    )
    return st.one_of(
        st.builds(Step, client, st.just("session"), later, session),
        st.builds(Step, client, st.just("session"), later, session),
        st.builds(Step, client, st.just("dose"), later, st.just({})),
        st.builds(Step, client, st.just("screen"), later, screen),
        st.builds(Step, client, st.just("correct"), later, correction),
        st.builds(
            Step,
            client,
            st.just("step_down"),
            st.integers(0, 200),
            st.fixed_dictionaries({"to": st.sampled_from(["12", "9", "6", "3"])}),
        ),
        st.builds(
            Step,
            client,
            st.just("discharge"),
            later,
            st.fixed_dictionaries({"reason": st.integers(1, 7)}),
        ),
        st.builds(Step, client, st.just("aftercare"), later, st.just({})),
    )


def histories(clients: int = 3, max_steps: int = 40) -> st.SearchStrategy[list[Step]]:
    return st.lists(steps(clients), min_size=1, max_size=max_steps)


# ---- the step-down policy's inputs ------------------------------------------------

TIMEZONES = ["America/New_York", "America/Los_Angeles", "Europe/London", "UTC"]


@st.composite
def policy_inputs(draw: st.DrawFn) -> tuple[Any, list[Any], Any]:
    """An episode's standing, a few weeks of evidence, and an as-of moment."""
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415  (strategies stay light)
    from decimal import Decimal  # noqa: PLC0415

    from iop_episodes.domain.payloads import WeekEvidence  # noqa: PLC0415
    from iop_episodes.domain.policy import EpisodeStanding  # noqa: PLC0415
    from iop_episodes.domain.weeks import iso_week  # noqa: PLC0415

    timezone = draw(st.sampled_from(TIMEZONES))
    adolescent = draw(st.booleans())
    floor = 6 if adolescent else 9
    hours = Decimal(draw(st.integers(floor, 19)))
    level = draw(st.sampled_from(["2.1", "2.1", "1"]))
    if level == "1":
        hours = Decimal(draw(st.integers(1, floor - 1)))
    as_of = datetime(2026, 1, 5, tzinfo=UTC) + timedelta(hours=draw(st.integers(0, 24 * 400)))
    progressing = draw(st.booleans())  # half the time, a client the rule should step down
    earliest_change = 24 * 36 if progressing else 0
    last_change = as_of - timedelta(hours=draw(st.integers(earliest_change, 24 * 70)))
    ratios = ["0.9", "1", "1.1"] if progressing else ["0.5", "0.89", "0.9", "1", "1.1"]
    weeks = []
    for back in range(1, 7):
        moment = as_of - timedelta(weeks=back)
        attended = hours * Decimal(draw(st.sampled_from(ratios)))
        weeks.append(
            WeekEvidence(
                week=iso_week(moment, timezone),
                target_hours=hours,
                attended_hours=attended.quantize(Decimal("0.01")),
                negative_screens=draw(st.integers(1 if progressing else 0, 2)),
                unexpected_positive_screens=0 if progressing else draw(st.sampled_from([0, 1])),
            )
        )
    standing = EpisodeStanding(
        weekly_hours=hours,
        level=level,
        age_group="adolescent" if adolescent else "adult",
        program_timezone=timezone,
        last_change_at=last_change,
    )
    return standing, weeks, as_of


# Characters where fast JSON encoders and json.dumps(ensure_ascii=True) tend to
# differ: every control character, DEL, quote and backslash, the line and
# paragraph separators, non-ASCII in and beyond the BMP, and lone surrogates.
AWKWARD_CHARACTERS = [chr(c) for c in range(0x20)] + [
    "\x7f",
    '"',
    "\\",
    "/",
    "\u2028",
    "\u2029",
    "\u00e9",
    "\ufeff",
    "\U0001f600",
    "\ud800",
    "\udfff",
]
json_text = st.text(
    alphabet=st.sampled_from(AWKWARD_CHARACTERS) | st.characters(codec=None),
    max_size=12,
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)  # far beyond 64 bits
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4)
    ),
    max_leaves=30,
)
"""Arbitrary JSON values (finite numbers), empty containers and awkward text included."""


@dataclass(frozen=True)
class ClinicalEvent:
    """Something that happened to one client: what, on which day and hour after the plan."""

    kind: str  # "session", "screen", "dose", "step_down" or "discharge"
    day: int
    hour: int
    detail: dict[str, Any]


def clinical_histories() -> st.SearchStrategy[list[ClinicalEvent]]:
    """Care the rules accept in any recording order, in clinical order.

    Sessions fall on distinct hours (at most 90 minutes each, so no local day
    overflows); step-downs fall in distinct weeks with hours falling over time;
    a discharge, if any, comes after everything else.
    """
    slots = st.lists(st.tuples(st.integers(0, 34), st.integers(11, 22)), unique=True, max_size=14)
    return st.tuples(
        slots,
        st.lists(
            st.sampled_from(["session", "session", "screen", "dose"]), min_size=14, max_size=14
        ),
        st.lists(st.integers(30, 90), min_size=14, max_size=14),
        st.lists(st.sampled_from(["negative", "positive"]), min_size=14, max_size=14),
        st.lists(st.integers(1, 4), unique=True, max_size=3),
        st.lists(
            st.sampled_from(["11", "10.5", "10", "9.5", "9"]), unique=True, min_size=3, max_size=3
        ),
        st.booleans(),
    ).map(_history)


def _history(drawn: tuple[Any, ...]) -> list[ClinicalEvent]:
    slots, kinds, minutes, results, weeks, hours, discharged = drawn
    history = []
    for (day, hour), kind, length, result in zip(slots, kinds, minutes, results, strict=False):
        detail: dict[str, Any] = {}
        if kind == "session":
            detail = {"minutes": length}
        elif kind == "screen":
            detail = {"results": {"opiates": result, "buprenorphine": "positive"}}
        history.append(ClinicalEvent(kind, day, hour, detail))
    tapers = sorted(hours, key=float, reverse=True)
    history.extend(
        ClinicalEvent("step_down", 7 * week + 1, 10, {"to": to})
        for week, to in zip(sorted(weeks), tapers, strict=False)
    )
    if discharged:
        history.append(ClinicalEvent("discharge", 40, 12, {}))
    return sorted(history, key=lambda event: (event.day, event.hour, event.kind))


SPOOFING_CHARACTERS = (
    "\n\r\t\x00\x1b\x85\u2028\u2029\u202a\u202b\u202c\u202d\u202e"
    "\u2066\u2067\u2068\u2069\u200e\u200f\U000e0001\\=+-@"
)
"""Line breaks, controls, bidi controls, a tag character, the backslash and formula starts."""


def hostile_text() -> st.SearchStrategy[str]:
    """Free text rich in what could forge, reorder or run: any character, spoofing ones often."""
    pieces = st.one_of(st.sampled_from(SPOOFING_CHARACTERS), st.characters(), st.just("v9 "))
    return st.lists(pieces, max_size=40).map("".join)
