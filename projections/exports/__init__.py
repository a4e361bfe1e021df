"""Exports that leave the program (FHIR R4, TEDS, audit reports, proof bundles), each one
disclosure."""

from projections.exports.api import (
    Export,
    FhirExport,
    HtmlReport,
    ProofBundle,
    TedsExport,
    export_audit_report,
    export_audit_report_html,
    export_fhir,
    export_fhir_many,
    export_proof_bundle,
    export_teds,
    serialize,
)

__all__ = [
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
