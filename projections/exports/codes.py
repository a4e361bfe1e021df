"""The code systems, identifier systems and fixed codes the exports use.

Standard systems (HL7 terminology, LOINC, SNOMED CT, RxNorm, UCUM) where one
fits; otherwise the project's own code systems under ``BASE``, each code
listed in docs/fhir.md. These URLs are stable: hosts may key on them.
"""

from __future__ import annotations

from typing import Any

BASE = "https://iop-episodes.example/fhir"
CODE_SYSTEM = f"{BASE}/CodeSystem"
EXTENSION = f"{BASE}/StructureDefinition"

CLIENT_REF_SYSTEM = f"{BASE}/sid/client-ref"
"""The default identifier system of the client reference (configurable per export)."""
STAFF_SYSTEM = f"{BASE}/sid/staff"
ENTRY_SYSTEM = f"{BASE}/sid/entry"
BUNDLE_SYSTEM = f"{BASE}/sid/export"

MODALITY = f"{CODE_SYSTEM}/modality"
SESSION_SETTING = f"{CODE_SYSTEM}/session-setting"
ASAM_LEVEL = f"{CODE_SYSTEM}/asam-level"
TEDS_REASON = f"{CODE_SYSTEM}/teds-reason-for-discharge"
STAFF_ROLE = f"{CODE_SYSTEM}/staff-role"
SCREEN_INTERPRETATION = f"{CODE_SYSTEM}/screen-interpretation"
DOCUMENT_TYPE = f"{CODE_SYSTEM}/document-type"

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
V3_CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V3_DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
EPISODE_OF_CARE_TYPE = "http://terminology.hl7.org/CodeSystem/episodeofcare-type"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PROVENANCE_AGENT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"

SECURITY_LABELS: list[dict[str, str]] = [
    {"system": V3_CONFIDENTIALITY, "code": "R", "display": "restricted"},
    {"system": V3_ACT_CODE, "code": "42CFRPart2", "display": "42 CFR Part2"},
    {
        "system": V3_ACT_CODE,
        "code": "NORDSCLCD",
        "display": "no redisclosure without consent directive",
    },
]
"""On every resource: restricted, 42 CFR Part 2 policy, no redisclosure without consent."""

ANALYTES: dict[str, tuple[str, str]] = {
    "alcohol": ("5644-0", "Ethanol [Presence] in Urine"),
    "amphetamines": ("19343-3", "Amphetamine [Presence] in Urine by Screen method"),
    "benzodiazepines": ("14316-4", "Benzodiazepines [Presence] in Urine by Screen method"),
    "buprenorphine": ("3414-0", "Buprenorphine [Presence] in Urine"),
    "cannabis": ("18282-4", "Cannabinoids [Presence] in Urine by Screen method"),
    "cocaine": ("19359-9", "Cocaine [Presence] in Urine by Screen method"),
    "fentanyl": ("59673-4", "fentaNYL [Presence] in Urine by Screen method"),
    "methadone": ("19550-3", "Methadone [Presence] in Urine by Screen method"),
    "methamphetamine": ("19554-5", "Methamphetamine [Presence] in Urine by Screen method"),
    "opiates": ("19295-5", "Opiates [Presence] in Urine by Screen method"),
    "oxycodone": ("19642-8", "oxyCODONE [Presence] in Urine by Screen method"),
}
"""LOINC per screen analyte (loinc.org/<code>), see docs/fhir.md."""

RESULT_VALUES: dict[str, tuple[str, str]] = {
    "positive": ("10828004", "Positive"),
    "negative": ("260385009", "Negative"),
}
"""SNOMED CT qualifier values for a screen's result; an invalid specimen has no value."""

MEDICATIONS: dict[str, tuple[str, str]] = {
    "buprenorphine": ("1819", "buprenorphine"),
    "disulfiram": ("3554", "disulfiram"),
    "methadone": ("6813", "methadone"),
    "naltrexone": ("7243", "naltrexone"),
}
"""RxNorm ingredient concepts."""

ROUTES: dict[str, tuple[str, str]] = {
    "oral": ("26643006", "Oral route"),
    "sublingual": ("37839007", "Sublingual route"),
    "intramuscular": ("78421000", "Intramuscular route"),
}
"""SNOMED CT routes of administration."""

ASAM_LEVELS = {
    "1": "Outpatient services",
    "2.1": "Intensive outpatient services",
    "2.5": "Partial hospitalization services",
}
TEDS_REASONS = {
    1: "Treatment completed",
    2: "Dropped out of treatment",
    3: "Terminated by facility",
    4: "Transferred to another treatment program or facility",
    5: "Incarcerated",
    6: "Death",
    7: "Other",
}
SCREEN_MEANINGS = {
    "expected-positive": "Positive for a medication the client is prescribed",
    "unexpected-positive": "Positive not explained by a prescribed medication",
}
DOCUMENT_TYPES = {"part2-redisclosure-notice": "42 CFR Part 2 notice to accompany disclosure"}
SETTINGS = {"on_site": "On site", "telehealth": "Telehealth"}


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"system": system, "code": code}
    if display is not None:
        found["display"] = display
    return found


def concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"coding": [coding(system, code, display)]}


def label(code: str) -> str:
    """The display of a project code: ``relapse_prevention`` -> ``Relapse prevention``."""
    return code.replace("_", " ").capitalize()


PART2_NOTICE = (
    "This record which has been disclosed to you is protected by federal confidentiality "
    "rules (42 CFR part 2). The federal rules prohibit you from making any further disclosure "
    "of this record unless further disclosure is expressly permitted by the written consent "
    "of the individual whose information is being disclosed in this record or, is otherwise "
    "permitted by 42 CFR part 2. A general authorization for the release of medical or other "
    "information is NOT sufficient for this purpose (see \u00a72.31). The federal rules "
    "restrict any use of the information to investigate or prosecute with regard to a crime "
    "any patient with a substance use disorder, except as provided at \u00a7\u00a72.12(c)(5) "
    "and 2.65."
)
"""The statement 42 CFR 2.32(a)(1) prescribes for a disclosure made with consent.

As amended July 15, 2020 (85 FR 43037). The 2024 final rule (89 FR 12472)
rewrote this statement; check the current eCFR text before relying on it.
"""
