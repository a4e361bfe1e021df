"""Exports that leave the program (FHIR R4, TEDS, audit reports), each one disclosure."""

from projections.exports.api import (
    Export,
    FhirExport,
    TedsExport,
    export_audit_report,
    export_fhir,
    export_fhir_many,
    export_teds,
    serialize,
)

__all__ = [
    "Export",
    "FhirExport",
    "TedsExport",
    "export_audit_report",
    "export_fhir",
    "export_fhir_many",
    "export_teds",
    "serialize",
]
