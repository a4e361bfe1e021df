"""FHIR R4 export: the scenario episode field by field, validation, determinism."""

from __future__ import annotations

import base64
from collections import Counter
from typing import Any

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.entrypoints.demo import ProgramSimulation, demo_clock
from iop_episodes.testing import factories
from projections import exports
from projections.candidates import ScheduleCandidates
from projections.exports import codes, export_fhir, export_fhir_many, fhir, serialize
from projections.exports.api import episode_histories
from tests.exports_scenario import PHYSICIAN, START, scenario
from tests.fhir_r4 import validate

LABELS = [
    ("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R"),
    ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "42CFRPart2"),
    ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "NORDSCLCD"),
]


@pytest.fixture
def scenario_store() -> tuple[EpisodeService, Any]:
    clock = SimulatedClock(START)
    service = EpisodeService("memory://", clock=clock, timezone="America/New_York")
    return service, scenario(service, clock)


def fhir_bundle(service: EpisodeService, episode: Any, **options: Any) -> dict[str, Any]:
    """The episode's bundle from the internal builder, no disclosure recorded."""
    return fhir.build_bundle(episode, list(service.history(episode)), **options)


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def only(bundle: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = resources(bundle, kind)
    return found


def code_of(concept: dict[str, Any]) -> tuple[str, str]:
    coding = concept["coding"][0]
    return coding["system"], coding["code"]


def ref(resource: dict[str, Any]) -> str:
    return f"urn:uuid:{resource['id']}"


def test_scenario_exports_the_resources_the_readme_lists(scenario_store):
    """One Patient, EpisodeOfCare, DocumentReference; 2 CarePlans, 2 Encounters, 11 Provenance."""
    service, episode = scenario_store
    bundle = fhir_bundle(service, episode)
    assert bundle["type"] == "collection"
    counts = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
    assert counts == {
        "Patient": 1,
        "EpisodeOfCare": 1,
        "CarePlan": 2,
        "Encounter": 2,
        "MedicationAdministration": 1,
        "MedicationDispense": 1,
        "Observation": 3,
        "DocumentReference": 1,
        "Provenance": 11,
    }
    assert all(e["fullUrl"] == ref(e["resource"]) for e in bundle["entry"])


def test_every_resource_and_the_bundle_carry_the_part2_labels(scenario_store):
    """Restricted, 42 CFR Part 2 and no redisclosure on every resource and on the bundle."""
    service, episode = scenario_store
    bundle = fhir_bundle(service, episode)
    for resource in [bundle, *(e["resource"] for e in bundle["entry"])]:
        labels = [(label["system"], label["code"]) for label in resource["meta"]["security"]]
        assert labels == LABELS, resource["resourceType"]


def test_patient_holds_only_the_client_reference_and_birth_date(scenario_store):
    """The identifier's system is configurable; nothing else about the client leaves."""
    service, episode = scenario_store
    patient = only(fhir_bundle(service, episode, patient_system="urn:oid:2.999.1"), "Patient")
    assert patient["identifier"] == [{"system": "urn:oid:2.999.1", "value": "MRN-7001"}]
    assert patient["birthDate"] == "1988-06-01"
    assert set(patient) == {"resourceType", "id", "meta", "identifier", "birthDate"}


def test_episode_of_care_status_history_type_and_levels(scenario_store):
    """Planned at assessment, active from the plan, finished at discharge; 2.1 then 1."""
    service, episode = scenario_store
    care = only(fhir_bundle(service, episode), "EpisodeOfCare")
    assert care["status"] == "finished"
    assert [(s["status"], s["period"]["start"]) for s in care["statusHistory"]] == [
        ("planned", "2026-03-02T15:00:00.000000Z"),
        ("active", "2026-03-02T16:00:00.000000Z"),
        ("finished", "2026-04-27T15:00:00.000000Z"),
    ]
    assert code_of(care["type"][0]) == (codes.EPISODE_OF_CARE_TYPE, "da")
    assert care["period"] == {
        "start": "2026-03-02T15:00:00.000000Z",
        "end": "2026-04-27T15:00:00.000000Z",
    }
    levels = [x for x in care["extension"] if x["url"].endswith("/level-of-care")]
    assert [
        (x["extension"][0]["valueCoding"]["code"], x["extension"][1]["valuePeriod"]) for x in levels
    ] == [
        ("2.1", {"start": "2026-03-02T16:00:00.000000Z", "end": "2026-04-06T15:00:00.000000Z"}),
        ("1", {"start": "2026-04-06T15:00:00.000000Z", "end": "2026-04-27T15:00:00.000000Z"}),
    ]
    reason = next(x for x in care["extension"] if x["url"].endswith("/teds-reason-for-discharge"))
    assert reason["valueCoding"]["code"] == "1"


def test_care_plan_revised_by_the_step_down_keeps_its_history(scenario_store):
    """The plan (9 h, by modality, buprenorphine) is revoked and replaced by the 6 h revision."""
    service, episode = scenario_store
    first, second = resources(fhir_bundle(service, episode), "CarePlan")
    assert (first["status"], second["status"]) == ("revoked", "completed")
    assert second["replaces"] == [{"reference": ref(first)}]
    hours = [p["extension"][0]["valueQuantity"]["value"] for p in (first, second)]
    assert hours == [9, 6]
    assert [p["extension"][1]["valueCoding"]["code"] for p in (first, second)] == ["2.1", "1"]
    modalities = {
        code_of(a["detail"]["code"])[1]: a["detail"]["quantity"]["value"]
        for a in first["activity"]
        if "code" in a["detail"]
    }
    assert modalities == {"group": 7, "individual": 1, "family": 1}
    products = [a["detail"]["productCodeableConcept"] for a in second["activity"]]
    assert [code_of(p) for p in products] == [(codes.RXNORM, "1819")]
    assert first["period"]["end"] == second["period"]["start"] == "2026-04-06T15:00:00.000000Z"


def test_sessions_are_encounters_voided_in_error_and_amended(scenario_store):
    """The voided group session is entered-in-error; the amended one shows 45 minutes."""
    service, episode = scenario_store
    voided, amended = resources(fhir_bundle(service, episode), "Encounter")
    assert voided["status"] == "entered-in-error"
    assert code_of(voided["type"][0]) == (codes.MODALITY, "group")
    assert voided["length"] == {"value": 180, "unit": "min", "system": codes.UCUM, "code": "min"}
    assert amended["status"] == "finished"
    assert amended["length"]["value"] == 45
    assert amended["period"] == {
        "start": "2026-03-03T02:00:00.000000Z",
        "end": "2026-03-03T02:45:00.000000Z",
    }
    for encounter in (voided, amended):
        assert (encounter["class"]["system"], encounter["class"]["code"]) == (
            codes.V3_ACT_CODE,
            "AMB",
        )
    settings = [e["extension"][0]["valueCoding"]["code"] for e in (voided, amended)]
    assert settings == ["on_site", "telehealth"]


def test_on_site_dose_and_take_home_supply(scenario_store):
    """2 films of 8 mg given on site; 2 days' supply (4 films) handed over to take home."""
    service, episode = scenario_store
    bundle = fhir_bundle(service, episode)
    given, supplied = only(bundle, "MedicationAdministration"), only(bundle, "MedicationDispense")
    assert given["status"] == supplied["status"] == "completed"
    assert code_of(given["medicationCodeableConcept"]) == (codes.RXNORM, "1819")
    assert given["dosage"]["dose"] == {"value": 2, "unit": "film"}
    assert code_of(given["dosage"]["route"]) == (codes.SNOMED, "37839007")
    assert supplied["quantity"] == {"value": 4, "unit": "film"}
    assert supplied["daysSupply"] == {"value": 2, "unit": "d", "system": codes.UCUM, "code": "d"}
    assert supplied["whenHandedOver"] == "2026-03-02T23:00:00.000000Z"


def test_screen_analytes_are_loinc_observations_with_expected_and_unexpected_positives(
    scenario_store,
):
    """Buprenorphine positive is expected (prescribed), cocaine positive is not."""
    service, episode = scenario_store
    observations = {
        code_of(o["code"])[1]: o for o in resources(fhir_bundle(service, episode), "Observation")
    }
    assert set(observations) == {"3414-0", "19359-9", "19295-5"}
    buprenorphine, cocaine, opiates = (observations[c] for c in ("3414-0", "19359-9", "19295-5"))
    assert all(o["status"] == "final" for o in observations.values())
    assert code_of(buprenorphine["valueCodeableConcept"]) == (codes.SNOMED, "10828004")
    assert code_of(opiates["valueCodeableConcept"]) == (codes.SNOMED, "260385009")
    assert [code_of(i) for i in buprenorphine["interpretation"]] == [
        (codes.V3_INTERPRETATION, "POS"),
        (codes.SCREEN_INTERPRETATION, "expected-positive"),
    ]
    assert [code_of(i) for i in cocaine["interpretation"]] == [
        (codes.V3_INTERPRETATION, "POS"),
        (codes.SCREEN_INTERPRETATION, "unexpected-positive"),
    ]
    assert [code_of(i) for i in opiates["interpretation"]] == [(codes.V3_INTERPRETATION, "NEG")]


def test_provenance_for_every_entry_with_who_when_and_what_it_revises(scenario_store):
    """Eleven Provenance; the void nullifies and the amendment revises the original's."""
    service, episode = scenario_store
    bundle = fhir_bundle(service, episode)
    provenance = resources(bundle, "Provenance")
    entries = [p["entity"][0]["what"]["identifier"]["value"] for p in provenance]
    assert entries == [f"{episode}/{version}" for version in range(1, 12)]
    first = provenance[0]
    assert first["agent"][0]["who"]["identifier"]["value"] == "c.adams"
    assert code_of(first["agent"][0]["role"][0]) == (codes.STAFF_ROLE, "counselor")
    assert first["recorded"] == "2026-03-02T15:00:00.000000Z"
    void, amend = provenance[6], provenance[7]
    encounters = resources(bundle, "Encounter")
    assert code_of(void["activity"]) == (codes.V3_DATA_OPERATION, "NULLIFY")
    assert void["target"] == [{"reference": ref(encounters[0])}]
    assert void["entity"][1] == {"role": "revision", "what": {"reference": ref(provenance[2])}}
    assert code_of(amend["activity"]) == (codes.V3_DATA_OPERATION, "UPDATE")
    assert amend["target"] == [{"reference": ref(encounters[1])}]
    assert amend["entity"][1]["what"] == {"reference": ref(provenance[3])}


def test_the_part2_notice_travels_with_the_bundle(scenario_store):
    """A DocumentReference carries the 42 CFR 2.32 notice as text and as its attachment."""
    service, episode = scenario_store
    notice = only(fhir_bundle(service, episode), "DocumentReference")
    assert notice["description"] == codes.PART2_NOTICE
    assert notice["description"].startswith("This record which has been disclosed to you")
    data = notice["content"][0]["attachment"]["data"]
    assert base64.b64decode(data).decode("utf-8") == codes.PART2_NOTICE


def test_transaction_bundles_put_every_resource_and_the_patient_conditionally(scenario_store):
    """--transaction: PUT Type/id, and PUT Patient?identifier=system|value."""
    service, episode = scenario_store
    bundle = fhir_bundle(service, episode, transaction=True)
    assert bundle["type"] == "transaction"
    requests = [e["request"] for e in bundle["entry"]]
    assert requests[0] == {
        "method": "PUT",
        "url": f"Patient?identifier={codes.CLIENT_REF_SYSTEM}|MRN-7001",
    }
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"][1:]]
    urls = [(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"][1:]]
    assert [r["url"] for r in requests[1:]] == [f"{k}/{i}" for k, i in urls]
    assert all(r["method"] == "PUT" for r in requests)
    assert "Patient" not in kinds


def test_scenario_bundles_validate_as_fhir_r4(scenario_store):
    """fhir.resources (R4 4.0.1) accepts both bundle types and every resource in them."""
    service, episode = scenario_store
    report = validate(
        [fhir_bundle(service, episode), fhir_bundle(service, episode, transaction=True)]
    )
    assert report["fhir_version"] == "4.0.1"
    assert report["errors"] == []
    assert report["resources"]["Provenance"] == 22


def test_the_validator_rejects_what_r4_does_not_define(scenario_store):
    """A resource with an element R4 lacks is reported, so the validation can fail."""
    service, episode = scenario_store
    bundle = fhir_bundle(service, episode)
    bundle["entry"][0]["resource"]["favouriteColour"] = "blue"
    report = validate([bundle])
    assert [error["resource"].split("/")[0] for error in report["errors"]] == ["Bundle", "Patient"]


def test_every_resource_of_a_demo_store_export_validates():
    """A demo program's whole export, on an exception, validates resource by resource."""
    clock = demo_clock()
    service = EpisodeService("memory://", clock=clock)
    ProgramSimulation(
        service, clock, clients=16, weeks=10, seed=5, candidates=ScheduleCandidates(service)
    ).run()
    export = export_fhir_many(
        service,
        list(episode_histories(service)),
        recipient="State auditor",
        purpose="program audit",
        actor={"id": "au.hill", "role": "auditor"},
        exception="audit-and-evaluation",
    )
    report = validate(list(export.bundles.values()))
    assert report["bundles"] == 16
    assert report["errors"] == []
    assert {"Encounter", "Observation", "MedicationAdministration", "CarePlan"} <= set(
        report["resources"]
    )


def test_exporting_twice_gives_byte_identical_bundles(scenario_store):
    """The same history serializes to the same bytes, in this store and in a fresh one."""
    service, episode = scenario_store
    first = serialize(fhir_bundle(service, episode))
    assert serialize(fhir_bundle(service, episode)) == first
    clock = SimulatedClock(START)
    again = EpisodeService("memory://", clock=clock, timezone="America/New_York")
    assert serialize(fhir_bundle(again, scenario(again, clock))) == first
    exported = export_fhir(
        service,
        episode,
        recipient="County EHR",
        purpose="treatment",
        actor=PHYSICIAN,
        consent=True,
    )
    assert serialize(exported) == first


def test_amended_voided_and_invalid_screens(service, clock):
    """Amended screen: status amended; voided: entered-in-error; invalid: no value."""
    episode = service.assess(factories.assessment(clock.now())).episode_id
    service.create_plan(factories.plan(episode, clock.now()))
    service.record_screen(factories.screen(episode, clock.now()))
    service.record_screen(factories.screen(episode, clock.now(), results={"cocaine": "invalid"}))
    amended = {"panel": "10-panel", "results": {"buprenorphine": "positive", "opiates": "positive"}}
    service.correct_entry(
        factories.correction(
            episode, clock.now(), target_version=3, action="amend", amended=amended
        )
    )
    service.correct_entry(factories.correction(episode, clock.now(), target_version=4))
    observations = resources(fhir_bundle(service, episode), "Observation")
    shown = [(code_of(o["code"])[1], o["status"]) for o in observations]
    assert shown == [("3414-0", "amended"), ("19295-5", "amended"), ("19359-9", "entered-in-error")]
    assert [code_of(i)[1] for i in observations[1]["interpretation"]] == [
        "POS",
        "unexpected-positive",
    ]
    assert "valueCodeableConcept" not in observations[2]
    assert code_of(observations[2]["dataAbsentReason"]) == (codes.DATA_ABSENT_REASON, "error")


def test_the_package_offers_no_bundle_without_its_disclosure():
    """projections.exports names only disclosing exports and their results, no bare builder."""
    assert sorted(exports.__all__) == [
        "Export",
        "FhirExport",
        "HtmlReport",
        "ProofBundle",
        "TedsExport",
        "export_audit_report",
        "export_audit_report_html",
        "export_fhir",
        "export_fhir_many",
        "export_proof_bundle",
        "export_teds",
        "serialize",
    ]
    assert not hasattr(fhir, "fhir_bundle")
