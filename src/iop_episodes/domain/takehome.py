"""Take-home medication limits as versioned policy data.

A policy says, per medication, how many days' supply may go home by the
client's day of treatment: the local days since the plan started (the plan's
own day is day 0), in the program's timezone. One take-home dose is one
day's supply. The federal default follows 42 CFR 8.12(i) as revised in 2024
for methadone; a program loads a stricter state schedule from JSON
(``TakeHomePolicy.model_validate_json``) without code.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from iop_episodes.domain.catalog import Medication
from iop_episodes.domain.payloads import PolicyRef
from iop_episodes.domain.values import Model, Note, Reference


class TakeHomeTier(Model):
    """From this day of treatment on (until the next tier), at most this many days' supply."""

    from_day: Annotated[int, Field(ge=0)]
    max_take_home_days_supply: Annotated[int, Field(ge=0)]


class TakeHomePolicy(Model):
    policy_id: Reference
    version: Annotated[int, Field(ge=1)]
    description: Note = ""
    medications: dict[Medication, tuple[TakeHomeTier, ...]]

    @field_validator("medications")
    @classmethod
    def _tiers_start_at_day_zero_and_rise(
        cls, medications: dict[Medication, tuple[TakeHomeTier, ...]]
    ) -> dict[Medication, tuple[TakeHomeTier, ...]]:
        for medication, tiers in medications.items():
            days = [tier.from_day for tier in tiers]
            if not days or days[0] != 0 or days != sorted(set(days)):
                msg = (
                    f"{medication}: tiers must start at from_day 0 and rise "
                    f"strictly, got from_day {days}"
                )
                raise ValueError(msg)
        return medications

    @property
    def ref(self) -> PolicyRef:
        return PolicyRef(id=self.policy_id, version=self.version)

    def covers(self, medication: str) -> bool:
        return Medication(medication) in self.medications

    def limit(self, medication: str, day_of_treatment: int) -> int | None:
        """The most days' supply that may go home on that day; None if the policy is silent."""
        tiers = self.medications.get(Medication(medication))
        if tiers is None:
            return None
        allowed = [t.max_take_home_days_supply for t in tiers if t.from_day <= day_of_treatment]
        return allowed[-1] if allowed else 0


FEDERAL_TAKE_HOME_POLICY = TakeHomePolicy(
    policy_id="federal-42cfr8.12i",
    version=2024,
    description=(
        "42 CFR 8.12(i) as revised in 2024: methadone up to 7 days' supply in days "
        "0-14 of treatment, 14 from day 15, 28 from day 31. Buprenorphine has had no "
        "time-in-treatment limit since the 2012 rule (77 FR 72752); the catalog's "
        "28-day ceiling applies from day 0."
    ),
    medications={
        Medication.METHADONE: (
            TakeHomeTier(from_day=0, max_take_home_days_supply=7),
            TakeHomeTier(from_day=15, max_take_home_days_supply=14),
            TakeHomeTier(from_day=31, max_take_home_days_supply=28),
        ),
        Medication.BUPRENORPHINE: (TakeHomeTier(from_day=0, max_take_home_days_supply=28),),
    },
)
