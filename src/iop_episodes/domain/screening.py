"""What a urine drug screen means for the client's progress."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from iop_episodes.domain.catalog import EXPECTED_WHEN_PRESCRIBED, Substance

ScreenMeaning = Literal["negative", "unexpected-positive", "inconclusive"]


def unexpected_positives(results: Mapping[str, str], prescribed: Iterable[str]) -> list[str]:
    """Positives that the client's prescribed medication does not explain."""
    on_plan = set(prescribed)
    return sorted(
        substance
        for substance, result in results.items()
        if result == "positive"
        and EXPECTED_WHEN_PRESCRIBED.get(Substance(substance)) not in on_plan
    )


def screen_meaning(results: Mapping[str, str], prescribed: Iterable[str]) -> ScreenMeaning:
    """Negative unless an unexpected positive; an invalid specimen proves nothing.

    A positive for buprenorphine or methadone in a client prescribed it is
    expected and counts as negative for relapse.
    """
    if unexpected_positives(results, prescribed):
        return "unexpected-positive"
    if any(result == "invalid" for result in results.values()):
        return "inconclusive"
    return "negative"
