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
