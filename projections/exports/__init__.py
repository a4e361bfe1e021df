"""Exports that leave the program (FHIR R4, TEDS), each recorded as one disclosure."""

from projections.exports.api import (
    Export,
    FhirExport,
    TedsExport,
    export_fhir,
    export_fhir_many,
    export_teds,
    serialize,
)
from projections.exports.fhir import fhir_bundle

__all__ = [
    "Export",
    "FhirExport",
    "TedsExport",
    "export_fhir",
    "export_fhir_many",
    "export_teds",
    "fhir_bundle",
    "serialize",
]
