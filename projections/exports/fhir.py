"""An episode's verified history as one FHIR R4 (4.0.1) Bundle.

Built from the episode's own entries in version order (``service.history``),
not from the views, so what leaves the program is what the chain covers.
Every id is a uuid5 of the episode id, the resource kind and the entry
version, and the bundle serializes canonically, so the same history always
gives the same bytes. Codes and URLs are in ``codes`` and docs/fhir.md.

Internal to the exports: a bundle leaves the program only through
``api.export_fhir``, which records its disclosure.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid5

from iop_episodes.domain.canonical import canonical_decimal, canonical_time
from iop_episodes.domain.screening import unexpected_positives
from projections.exports import codes as c

if TYPE_CHECKING:
    from collections.abc import Sequence

    from iop_episodes.domain.events import EpisodeEvent

FHIR_NAMESPACE = UUID("9a4e2c71-5b3d-5f08-b6e1-0d7c3a9f4e25")
"""uuid5 namespace of every exported resource id."""

Resource = dict[str, Any]


def build_bundle(
    episode_id: UUID,
    history: Sequence[EpisodeEvent],
    *,
    transaction: bool = False,
    patient_system: str = c.CLIENT_REF_SYSTEM,
) -> Resource:
    """The history as a Bundle (``collection``, or ``transaction`` with conditional updates)."""
    builder = _Builder(episode_id, history, patient_system)
    resources = builder.resources()
    last = history[-1]
    bundle: Resource = {
        "resourceType": "Bundle",
        "id": builder.rid("Bundle", last.originator_version),
        "meta": _meta(last.timestamp),
        "identifier": {
            "system": c.BUNDLE_SYSTEM,
            "value": f"{episode_id}/{last.originator_version}",
        },
        "type": "transaction" if transaction else "collection",
        "timestamp": canonical_time(last.timestamp),
        "entry": [
            _entry(resource, patient_system, transaction=transaction) for resource in resources
        ],
    }
    return bundle


def _entry(resource: Resource, patient_system: str, *, transaction: bool) -> Resource:
    entry: Resource = {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}
    if transaction:
        kind = resource["resourceType"]
        if kind == "Patient":
            value = resource["identifier"][0]["value"]
            url = f"Patient?identifier={patient_system}|{value}"
        else:
            url = f"{kind}/{resource['id']}"
        entry["request"] = {"method": "PUT", "url": url}
    return entry


def _meta(updated: datetime) -> Resource:
    return {"lastUpdated": canonical_time(updated), "security": list(c.SECURITY_LABELS)}


def _ref(resource_id: str, display: str | None = None) -> Resource:
    found: Resource = {"reference": f"urn:uuid:{resource_id}"}
    if display is not None:
        found["display"] = display
    return found


def _staff(actor: dict[str, str]) -> Resource:
    return {"identifier": {"system": c.STAFF_SYSTEM, "value": actor["id"]}, "display": actor["id"]}


def _hours(value: str) -> Resource:
    return {"value": float(value), "unit": "h/wk", "system": c.UCUM, "code": "h/wk"}


@dataclass
class _Revision:
    version: int
    at: datetime
    weekly_hours: str
    level: str
    reason: str | None = None


@dataclass
class _Builder:
    episode_id: UUID
    history: Sequence[EpisodeEvent]
    patient_system: str
    targets: dict[int, list[str]] = field(default_factory=dict)
    medications: list[str] = field(default_factory=list)

    def rid(self, kind: str, version: int = 0) -> str:
        return str(uuid5(FHIR_NAMESPACE, f"{self.episode_id}:{kind}:{version}"))

    @property
    def patient(self) -> str:
        return self.rid("Patient")

    @property
    def episode_of_care(self) -> str:
        return self.rid("EpisodeOfCare")

    def base(self, kind: str, version: int, event: EpisodeEvent) -> Resource:
        resource_id = self.rid(kind, version)
        if kind not in {"Provenance", "DocumentReference"}:  # what an entry made, for Provenance
            self.targets.setdefault(version, []).append(resource_id)
        return {
            "resourceType": kind.split("-", maxsplit=1)[0],
            "id": resource_id,
            "meta": _meta(event.timestamp),
        }

    # ---- the walk ------------------------------------------------------------

    def resources(self) -> list[Resource]:
        corrections = self._corrections()
        out: list[Resource] = []
        for event in self.history:
            version, name = event.originator_version, event.type_name()
            self.targets.setdefault(version, [])
            voided, amended = corrections.get(version, (False, None))
            payload = amended if amended is not None else event.payload
            if name == "PlanCreated":
                self.medications = sorted(event.payload["medications"])
            if name == "SessionAttended":
                out.append(self.encounter(event, payload, voided=voided))
            elif name == "MedicationDispensed":
                out.extend(self.dose(event, payload, voided=voided))
            elif name == "ScreenResulted":
                out.extend(self.screen(event, payload, voided=voided, amended=amended is not None))
        out[:0] = [self.patient_resource(), self.episode_resource(), *self.care_plans()]
        out.append(self.notice())
        out.extend(self.provenance(event) for event in self.history)
        return out

    def _corrections(self) -> dict[int, tuple[bool, dict[str, Any] | None]]:
        found: dict[int, tuple[bool, dict[str, Any] | None]] = {}
        for event in self.history:
            if event.type_name() != "EntryCorrected":
                continue
            target = int(event.payload["target_version"])
            if event.payload["action"] == "void":
                found[target] = (True, found.get(target, (False, None))[1])
            else:
                found[target] = (False, dict(event.payload["amended"]))
        return found

    # ---- who and the episode ----------------------------------------------------

    def patient_resource(self) -> Resource:
        assessed = self.history[0]
        resource = self.base("Patient", 1, assessed)
        resource["id"] = self.patient
        self.targets[1] = [self.patient]
        resource.update(
            identifier=[{"system": self.patient_system, "value": assessed.payload["client_ref"]}],
            birthDate=assessed.payload["birth_date"],
        )
        return resource

    def episode_resource(self) -> Resource:
        assessed = self.history[0]
        plan = self._first("PlanCreated")
        discharge = self._first("Discharged")
        resource: Resource = {
            "resourceType": "EpisodeOfCare",
            "id": self.episode_of_care,
            "meta": _meta(self.history[-1].timestamp),
            "identifier": [{"system": c.ENTRY_SYSTEM, "value": str(self.episode_id)}],
            "status": "finished" if discharge else "active" if plan else "planned",
            "statusHistory": self._status_history(assessed, plan, discharge),
            "type": [c.concept(c.EPISODE_OF_CARE_TYPE, "da", "Drug and alcohol rehabilitation")],
            "patient": _ref(self.patient),
            "period": {"start": canonical_time(assessed.occurred_at)},
        }
        if discharge is not None:
            resource["period"]["end"] = canonical_time(discharge.occurred_at)
            reason = int(discharge.payload["reason"])
            resource["extension"] = [
                {
                    "url": f"{c.EXTENSION}/teds-reason-for-discharge",
                    "valueCoding": c.coding(c.TEDS_REASON, str(reason), c.TEDS_REASONS[reason]),
                }
            ]
        levels = self._levels(discharge)
        if levels:
            resource["extension"] = [*levels, *resource.get("extension", [])]
        for version in (1, *(e.originator_version for e in (plan, discharge) if e)):
            self.targets.setdefault(version, []).append(self.episode_of_care)
        return resource

    def _status_history(
        self, assessed: EpisodeEvent, plan: EpisodeEvent | None, discharge: EpisodeEvent | None
    ) -> list[Resource]:
        """Every status the entries put the episode in, the current one last and open."""
        steps: list[tuple[str, datetime]] = [("planned", assessed.occurred_at)]
        if plan is not None:
            steps.append(("active", plan.occurred_at))
        if discharge is not None:
            steps.append(("finished", discharge.occurred_at))
        history = []
        for index, (status, start) in enumerate(steps):
            period = {"start": canonical_time(start)}
            if index + 1 < len(steps):
                period["end"] = canonical_time(steps[index + 1][1])
            history.append({"status": status, "period": period})
        return history

    def _levels(self, discharge: EpisodeEvent | None) -> list[Resource]:
        revisions = self._revisions()
        periods = []
        for index, revision in enumerate(revisions):
            if index and revision.level == revisions[index - 1].level:
                continue
            periods.append(revision)
        out = []
        for index, revision in enumerate(periods):
            period = {"start": canonical_time(revision.at)}
            end = periods[index + 1].at if index + 1 < len(periods) else None
            end = end or (discharge.occurred_at if discharge else None)
            if end is not None:
                period["end"] = canonical_time(end)
            level = revision.level
            out.append(
                {
                    "url": f"{c.EXTENSION}/level-of-care",
                    "extension": [
                        {
                            "url": "level",
                            "valueCoding": c.coding(c.ASAM_LEVEL, level, c.ASAM_LEVELS[level]),
                        },
                        {"url": "period", "valuePeriod": period},
                    ],
                }
            )
        return out

    def _first(self, name: str) -> EpisodeEvent | None:
        return next((e for e in self.history if e.type_name() == name), None)

    # ---- the plan and its revisions ------------------------------------------------

    def _revisions(self) -> list[_Revision]:
        revisions = []
        for event in self.history:
            if event.type_name() == "PlanCreated":
                hours = event.payload["weekly_hours"]
                revisions.append(
                    _Revision(event.originator_version, event.occurred_at, hours, "2.1")
                )
            elif event.type_name() == "StepDown":
                payload = event.payload
                revisions.append(
                    _Revision(
                        event.originator_version,
                        event.occurred_at,
                        payload["to_weekly_hours"],
                        payload["to_level"],
                        payload["reason"],
                    )
                )
        return revisions

    def care_plans(self) -> list[Resource]:
        revisions = self._revisions()
        discharge = self._first("Discharged")
        plan = self._first("PlanCreated")
        by_version = {e.originator_version: e for e in self.history}
        out = []
        for index, revision in enumerate(revisions):
            event = by_version[revision.version]
            latest = index + 1 == len(revisions)
            resource = self.base("CarePlan", revision.version, event)
            status = ("completed" if discharge else "active") if latest else "revoked"
            period = {"start": canonical_time(revision.at)}
            end = (
                revisions[index + 1].at
                if not latest
                else (discharge.occurred_at if discharge else None)
            )
            if end is not None:
                period["end"] = canonical_time(end)
            resource.update(
                identifier=[
                    {"system": c.ENTRY_SYSTEM, "value": f"{self.episode_id}/{revision.version}"}
                ],
                status=status,
                intent="plan",
                title=f"IOP treatment plan, revision {index + 1}",
                description=(
                    f"{canonical_decimal_text(revision.weekly_hours)} treatment hours a week "
                    f"at ASAM level {revision.level}"
                ),
                subject=_ref(self.patient),
                period=period,
                created=canonical_time(revision.at),
                extension=[
                    {
                        "url": f"{c.EXTENSION}/weekly-hours",
                        "valueQuantity": _hours(revision.weekly_hours),
                    },
                    {
                        "url": f"{c.EXTENSION}/level-of-care",
                        "valueCoding": c.coding(
                            c.ASAM_LEVEL, revision.level, c.ASAM_LEVELS[revision.level]
                        ),
                    },
                ],
            )
            if index:
                resource["replaces"] = [_ref(self.rid("CarePlan", revisions[index - 1].version))]
            if revision.reason:
                resource["note"] = [{"text": revision.reason}]
            activity_status = (
                "stopped" if status == "revoked" else "completed" if discharge else "in-progress"
            )
            resource["activity"] = self._activities(plan, activity_status, first=index == 0)
            out.append(resource)
        return out

    def _activities(self, plan: EpisodeEvent | None, status: str, *, first: bool) -> list[Resource]:
        if plan is None:
            return []
        activities = []
        if first:
            for modality, hours in sorted(plan.payload["modality_hours"].items()):
                activities.append(
                    {
                        "detail": {
                            "code": c.concept(c.MODALITY, modality, c.label(modality)),
                            "status": status,
                            "quantity": _hours(hours),
                        }
                    }
                )
        for medication in sorted(plan.payload["medications"]):
            code, display = c.MEDICATIONS[medication]
            activities.append(
                {
                    "detail": {
                        "kind": "MedicationRequest",
                        "status": status,
                        "productCodeableConcept": c.concept(c.RXNORM, code, display),
                    }
                }
            )
        return activities

    # ---- care entries ------------------------------------------------------------------

    def encounter(self, event: EpisodeEvent, payload: dict[str, Any], *, voided: bool) -> Resource:
        resource = self.base("Encounter", event.originator_version, event)
        start = event.occurred_at
        minutes = int(payload["minutes"])
        modality = payload["modality"]
        setting = payload.get("setting", "on_site")
        resource.update(
            status="entered-in-error" if voided else "finished",
            extension=[
                {
                    "url": f"{c.EXTENSION}/session-setting",
                    "valueCoding": c.coding(c.SESSION_SETTING, setting, c.SETTINGS[setting]),
                }
            ],
            type=[c.concept(c.MODALITY, modality, c.label(modality))],
            subject=_ref(self.patient),
            episodeOfCare=[_ref(self.episode_of_care)],
            period={
                "start": canonical_time(start),
                "end": canonical_time(start + timedelta(minutes=minutes)),
            },
            length={"value": minutes, "unit": "min", "system": c.UCUM, "code": "min"},
        )
        resource["class"] = c.coding(c.V3_ACT_CODE, "AMB", "ambulatory")
        return resource

    def dose(self, event: EpisodeEvent, payload: dict[str, Any], *, voided: bool) -> list[Resource]:
        version = event.originator_version
        medication = payload["medication"]
        code, display = c.MEDICATIONS[medication]
        route_code, route_display = c.ROUTES[payload["route"]]
        amount, unit = payload["amount"], payload["unit"]
        strength = payload["strength_mg"]
        administration = self.base("MedicationAdministration", version, event)
        administration.update(
            status="entered-in-error" if voided else "completed",
            medicationCodeableConcept=c.concept(c.RXNORM, code, display),
            subject=_ref(self.patient),
            context=_ref(self.episode_of_care),
            effectiveDateTime=canonical_time(event.occurred_at),
            performer=[{"actor": _staff(event.actor)}],
            note=[{"text": f"lot {payload['lot']}"}],
            dosage={
                "text": f"{amount} {unit} of {strength} mg {payload['dose_form']}, "
                f"{payload['route']}",
                "route": c.concept(c.SNOMED, route_code, route_display),
                "dose": {"value": float(amount), "unit": unit},
            },
        )
        out = [administration]
        take_home = int(payload.get("take_home_doses", 0))
        if take_home:
            dispense = self.base("MedicationDispense", version, event)
            supplied = float(amount) * take_home
            dispense.update(
                status="entered-in-error" if voided else "completed",
                medicationCodeableConcept=c.concept(c.RXNORM, code, display),
                subject=_ref(self.patient),
                context=_ref(self.episode_of_care),
                performer=[{"actor": _staff(event.actor)}],
                quantity={"value": supplied, "unit": unit},
                daysSupply={"value": take_home, "unit": "d", "system": c.UCUM, "code": "d"},
                whenHandedOver=canonical_time(event.occurred_at),
                dosageInstruction=[
                    {"text": f"{amount} {unit} of {strength} mg daily, taken at home"}
                ],
            )
            out.append(dispense)
        return out

    def screen(
        self, event: EpisodeEvent, payload: dict[str, Any], *, voided: bool, amended: bool
    ) -> list[Resource]:
        results: dict[str, str] = payload["results"]
        unexpected = set(unexpected_positives(results, self.medications))
        status = "entered-in-error" if voided else "amended" if amended else "final"
        out = []
        for substance in sorted(results):
            result = results[substance]
            resource = self.base(f"Observation-{substance}", event.originator_version, event)
            loinc, display = c.ANALYTES[substance]
            resource.update(
                status=status,
                category=[c.concept(c.OBSERVATION_CATEGORY, "laboratory", "Laboratory")],
                code=c.concept(c.LOINC, loinc, display),
                subject=_ref(self.patient),
                effectiveDateTime=canonical_time(event.occurred_at),
                issued=canonical_time(event.timestamp),
                performer=[_staff(event.actor)],
                note=[{"text": f"{payload['panel']} urine drug screen"}],
            )
            if result == "invalid":
                resource["dataAbsentReason"] = c.concept(c.DATA_ABSENT_REASON, "error", "Error")
            else:
                code, value_display = c.RESULT_VALUES[result]
                resource["valueCodeableConcept"] = c.concept(c.SNOMED, code, value_display)
                interpretation = [
                    c.concept(
                        c.V3_INTERPRETATION,
                        "POS" if result == "positive" else "NEG",
                        "Positive" if result == "positive" else "Negative",
                    )
                ]
                if result == "positive":
                    meaning = (
                        "unexpected-positive" if substance in unexpected else "expected-positive"
                    )
                    interpretation.append(
                        c.concept(c.SCREEN_INTERPRETATION, meaning, c.SCREEN_MEANINGS[meaning])
                    )
                resource["interpretation"] = interpretation
            out.append(resource)
        return out

    # ---- the notice and provenance ----------------------------------------------------------

    def notice(self) -> Resource:
        last = self.history[-1]
        resource = self.base("DocumentReference", 0, last)
        resource.update(
            status="current",
            type=c.concept(
                c.DOCUMENT_TYPE,
                "part2-redisclosure-notice",
                c.DOCUMENT_TYPES["part2-redisclosure-notice"],
            ),
            subject=_ref(self.patient),
            date=canonical_time(last.timestamp),
            description=c.PART2_NOTICE,
            content=[
                {
                    "attachment": {
                        "contentType": "text/plain; charset=utf-8",
                        "language": "en",
                        "title": "42 CFR 2.32 notice accompanying disclosure",
                        "data": base64.b64encode(c.PART2_NOTICE.encode("utf-8")).decode("ascii"),
                    }
                }
            ],
        )
        return resource

    def provenance(self, event: EpisodeEvent) -> Resource:
        version, name = event.originator_version, event.type_name()
        resource = self.base("Provenance", version, event)
        entity: list[Resource] = [
            {
                "role": "source",
                "what": {
                    "identifier": {
                        "system": c.ENTRY_SYSTEM,
                        "value": f"{self.episode_id}/{version}",
                    },
                    "display": f"{name} version {version}",
                },
            }
        ]
        targets = self.targets.get(version) or [self.episode_of_care]
        operation = ("CREATE", "create")
        if name == "EntryCorrected":
            corrected = int(event.payload["target_version"])
            targets = self.targets.get(corrected) or [self.episode_of_care]
            void = event.payload["action"] == "void"
            operation = ("NULLIFY", "nullify") if void else ("UPDATE", "revise")
            entity.append({"role": "revision", "what": _ref(self.rid("Provenance", corrected))})
        resource.update(
            target=[_ref(target) for target in targets],
            occurredDateTime=canonical_time(event.occurred_at),
            recorded=canonical_time(event.timestamp),
            activity=c.concept(c.V3_DATA_OPERATION, operation[0], operation[1]),
            agent=[
                {
                    "type": c.concept(c.PROVENANCE_AGENT_TYPE, "author", "Author"),
                    "role": [
                        c.concept(c.STAFF_ROLE, event.actor["role"], c.label(event.actor["role"]))
                    ],
                    "who": _staff(event.actor),
                }
            ],
            entity=entity,
        )
        return resource


def canonical_decimal_text(value: str) -> str:
    return canonical_decimal(Decimal(value))
