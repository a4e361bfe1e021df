"""Commands: what a caller asks for, as validated pydantic models.

A command is its event's payload plus an envelope: which episode, who asks
(``actor``), when it happened clinically (``occurred_at``) and an optional
idempotency key (``command_id``). Validation errors name the field.
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Annotated, Any, ClassVar
from uuid import UUID

from pydantic import StringConstraints

from iop_episodes.domain import payloads
from iop_episodes.domain.canonical import canonical_form
from iop_episodes.domain.catalog import Role
from iop_episodes.domain.values import Instant, Model, Reference, Timezone

CommandId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:@/-]+$"),
]


@cache
def field_names(model: type[Model]) -> tuple[str, ...]:
    """A model's field names in order (pydantic's ``model_fields`` property is slow to read)."""
    return tuple(model.model_fields)


class Actor(Model):
    """Who records an entry: a person's or a system's id, and its role."""

    id: Reference
    role: Role


class Command(Model):
    """The envelope every command carries."""

    payload_type: ClassVar[type[Model]]

    actor: Actor
    occurred_at: Instant
    command_id: CommandId | None = None

    def payload(self) -> Model:
        """The payload part, without validating again what was validated."""
        fields = {name: getattr(self, name) for name in field_names(self.payload_type)}
        return self.payload_type.model_construct(**fields)

    def as_received(self) -> dict[str, Any]:
        """The whole command in canonical JSON form; one dump serves the digest and payload.

        ``model_dump(mode="json")``, through the model's serializer directly
        (the same call, with the same defaults, less pydantic's wrapper).
        """
        form: dict[str, Any] = self.__pydantic_serializer__.to_python(self, mode="json")
        return form

    def payload_json(self, received: dict[str, Any] | None = None) -> dict[str, Any]:
        """The payload part in canonical JSON form, straight from the command."""
        form = self.as_received() if received is None else received
        return {name: form[name] for name in field_names(self.payload_type)}

    def digest(self, received: dict[str, Any] | None = None) -> str:
        """SHA-256 of the command as received, less its command_id."""
        form = dict(self.as_received() if received is None else received)
        del form["command_id"]
        form["command"] = type(self).__name__
        return hashlib.sha256(canonical_form(form)).hexdigest()


class EpisodeCommand(Command):
    episode_id: UUID


class Assess(Command, payloads.AssessmentDetails):
    """Open an episode. The service fills ``program_timezone`` from its settings."""

    payload_type = payloads.Assessed
    episode_id: UUID | None = None
    program_timezone: Timezone | None = None


class CreatePlan(EpisodeCommand, payloads.PlanCreated):
    payload_type = payloads.PlanCreated


class RecordSession(EpisodeCommand, payloads.SessionAttended):
    payload_type = payloads.SessionAttended


class DispenseMedication(EpisodeCommand, payloads.Dose):
    payload_type = payloads.Dose


class RecordScreen(EpisodeCommand, payloads.ScreenResulted):
    payload_type = payloads.ScreenResulted


class StepDownHours(EpisodeCommand, payloads.StepDownRequested):
    payload_type = payloads.StepDownRequested


class Recertify(EpisodeCommand, payloads.Recertified):
    payload_type = payloads.Recertified


class Discharge(EpisodeCommand, payloads.Discharged):
    payload_type = payloads.Discharged


class ScheduleAftercare(EpisodeCommand, payloads.AftercareScheduled):
    payload_type = payloads.AftercareScheduled


class CorrectEntry(EpisodeCommand, payloads.EntryCorrected):
    payload_type = payloads.EntryCorrected


class RecordConsent(EpisodeCommand, payloads.ConsentRecorded):
    payload_type = payloads.ConsentRecorded


class RevokeConsent(EpisodeCommand, payloads.ConsentRevoked):
    payload_type = payloads.ConsentRevoked


class RecordDisclosure(Command, payloads.Disclosed):
    """Record one export; its command_id names the disclosure (uuid5), so it is required."""

    payload_type = payloads.Disclosed
    command_id: CommandId  # required here: it names the disclosure
