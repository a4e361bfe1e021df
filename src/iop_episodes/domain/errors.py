"""The one hierarchy of errors the domain raises.

Every rule violation is an ``EpisodeRuleError`` subclass whose message names
the rule and the values that broke it. Nothing is stored when one is raised.

    EpisodeError
    ├── EpisodeRuleError              a command broke a clinical or record rule
    │   ├── PermissionDenied          the actor's role may not issue this command
    │   ├── OccurredInFuture          occurred_at is later than now + clock skew
    │   ├── OccurredBeforeStart       occurred_at precedes the entry it builds on
    │   ├── DetoxRequired             severe withdrawal and no completed detox
    │   ├── DetoxDateInvalid          detox completed after the plan start or in the future
    │   ├── HoursOutOfBand            weekly hours outside the level's band
    │   ├── CertificationRequired     Medicare plan without certifying physician
    │   ├── CertificationInvalid      certified hours under 9, a date out of order, not Medicare
    │   ├── PlanRequired              care recorded before a plan exists
    │   ├── PlanAlreadyCreated        a second plan for one episode
    │   ├── MedicationNotInPlan       a dispensed medication the plan lacks
    │   ├── InvalidDose               a dose form, unit, amount or take-home rule
    │   ├── TakeHomeLimitExceeded     more take-home supply than the policy allows that day
    │   ├── SessionTooLong            a session longer than the program's maximum
    │   ├── DayOverbooked             over 24 hours attended in one local day
    │   ├── StepDownNotLower          a step-down that does not lower the hours
    │   ├── StepDownAlreadyThisWeek   a second step-down in one ISO week
    │   ├── TaperOutOfOrder           a late step-down not above a later recorded one
    │   ├── EpisodeDischarged         care recorded after discharge
    │   ├── AlreadyDischarged         a second discharge
    │   ├── DischargeBeforeCare       a discharge dated before care already recorded
    │   ├── CorrectionInvalid         a correction's target or content is wrong
    │   ├── IdempotencyKeyReused      one command_id used for two different commands
    │   ├── ConsentInvalid            a revocation's target is not a consent in force
    │   └── DisclosureRefused         an export without a basis in force (nothing leaves)
    │       ├── NoConsentInForce      no consent for that recipient and purpose
    │       ├── ConsentExpired        the only matching consent has expired
    │       ├── ConsentWithdrawn      the only matching consent was revoked
    │       └── ConsentOutOfScope     the consent does not cover the kinds of record
    ├── EpisodeNotFound               no episode with that id
    ├── EpisodeAlreadyExists          an assessment for an existing episode id
    ├── Conflict                      concurrent writers kept winning the race
    └── StoreKeyError                 IOP_CIPHER_KEY cannot read the store
"""

from __future__ import annotations


class EpisodeError(Exception):
    """Base of every error iop-episodes raises on purpose."""


class EpisodeRuleError(EpisodeError):
    """A command broke a rule; ``rule`` is a stable identifier of that rule."""

    rule = "episode-rule"
    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"[{self.rule}] {message}")
        if field is not None:
            self.field = field


class PermissionDenied(EpisodeRuleError):
    rule = "role-may-not-issue-command"
    field = "actor.role"


class OccurredInFuture(EpisodeRuleError):
    rule = "occurred-at-not-in-future"
    field = "occurred_at"


class OccurredBeforeStart(EpisodeRuleError):
    rule = "occurred-at-after-start"
    field = "occurred_at"


class DetoxRequired(EpisodeRuleError):
    rule = "severe-withdrawal-needs-detox"
    field = "detox_completed_on"


class HoursOutOfBand(EpisodeRuleError):
    rule = "weekly-hours-in-level-band"
    field = "weekly_hours"


class CertificationRequired(EpisodeRuleError):
    rule = "medicare-plan-needs-certifying-physician"
    field = "certifying_physician_id"


class DetoxDateInvalid(EpisodeRuleError):
    rule = "detox-completed-before-plan"
    field = "detox_completed_on"


class CertificationInvalid(EpisodeRuleError):
    rule = "medicare-certification-valid"
    field = "certified_weekly_hours"


class TakeHomeLimitExceeded(EpisodeRuleError):
    rule = "take-home-within-policy"
    field = "take_home_doses"


class SessionTooLong(EpisodeRuleError):
    rule = "session-within-maximum"
    field = "minutes"


class DayOverbooked(EpisodeRuleError):
    rule = "at-most-24-hours-a-local-day"
    field = "minutes"


class TaperOutOfOrder(EpisodeRuleError):
    rule = "taper-keeps-decreasing"
    field = "to_weekly_hours"


class DischargeBeforeCare(EpisodeRuleError):
    rule = "discharge-after-recorded-care"
    field = "occurred_at"


class PlanRequired(EpisodeRuleError):
    rule = "care-needs-active-plan"


class PlanAlreadyCreated(EpisodeRuleError):
    rule = "one-plan-per-episode"


class MedicationNotInPlan(EpisodeRuleError):
    rule = "medication-in-plan"
    field = "medication"


class InvalidDose(EpisodeRuleError):
    rule = "dose-positive-known-units"


class StepDownNotLower(EpisodeRuleError):
    rule = "step-down-lowers-hours"
    field = "to_weekly_hours"


class StepDownAlreadyThisWeek(EpisodeRuleError):
    rule = "one-step-down-per-iso-week"
    field = "occurred_at"


class EpisodeDischarged(EpisodeRuleError):
    rule = "nothing-after-discharge-but-aftercare-and-corrections"


class AlreadyDischarged(EpisodeRuleError):
    rule = "discharge-once"


class CorrectionInvalid(EpisodeRuleError):
    rule = "correction-targets-correctable-entry"


class IdempotencyKeyReused(EpisodeRuleError):
    rule = "command-id-names-one-command"
    field = "command_id"


class EpisodeNotFound(EpisodeError):
    """No episode is stored under the given id."""


class EpisodeAlreadyExists(EpisodeError):
    """An assessment tried to create an episode id that is taken."""


class Conflict(EpisodeError):
    """Other writers changed the episode on every one of the bounded retries."""


class AgeOutOfRange(EpisodeRuleError):
    rule = "client-age-in-range"
    field = "birth_date"


class ScreenNotOnPanel(EpisodeRuleError):
    rule = "screen-results-on-panel"
    field = "results"


class StoreKeyError(EpisodeError):
    """The configured key (or its absence) cannot read the stored events."""


class ConsentInvalid(EpisodeRuleError):
    rule = "revocation-targets-consent-in-force"
    field = "consent_version"


class DisclosureRefused(EpisodeRuleError):
    """An export has no basis in force; nothing is exported and nothing recorded."""

    rule = "disclosure-needs-basis"
    field = "basis"


class NoConsentInForce(DisclosureRefused):
    rule = "disclosure-needs-consent-in-force"
    field = "consent"


class ConsentExpired(DisclosureRefused):
    rule = "consent-not-expired"
    field = "expires_on"


class ConsentWithdrawn(DisclosureRefused):
    rule = "consent-not-revoked"
    field = "consent"


class ConsentOutOfScope(DisclosureRefused):
    rule = "disclosure-within-consent-scope"
    field = "scope"


class EntryIntegrityError(EpisodeError):
    """A stored entry read to build an episode does not verify: nothing is decided on it.

    Its link does not follow from the entry and the link before it, or (with
    an integrity key) its seal is missing or does not hold. ``episode_id`` and
    ``version`` name the entry.
    """

    def __init__(self, message: str, *, episode_id: object, version: int) -> None:
        super().__init__(message)
        self.episode_id = episode_id
        self.version = version
