"""Validate FHIR R4 bundles read from stdin (one JSON bundle per line) with fhir.resources.

Runs in its own environment (fhir.resources 6.4.0, the last line with R4
4.0.1 models, is built on pydantic 1). Prints one JSON line: resources per
type, codings per system, and every error with the resource it concerns.
"""

import json
import sys
from collections import Counter

import fhir.resources
from fhir.resources import construct_fhir_element
from pydantic import ValidationError


def codings(value, found):
    if isinstance(value, dict):
        if "system" in value and "code" in value:
            found[value["system"]] += 1
        for item in value.values():
            codings(item, found)
    elif isinstance(value, list):
        for item in value:
            codings(item, found)


def main():
    types, systems, errors = Counter(), Counter(), []
    bundles = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        bundle = json.loads(line)
        bundles += 1
        try:
            construct_fhir_element("Bundle", bundle)
        except ValidationError as error:
            errors.append({"resource": f"Bundle/{bundle.get('id')}", "error": str(error)})
        for entry in bundle.get("entry", []):
            resource = entry["resource"]
            types[resource["resourceType"]] += 1
            codings(resource, systems)
            try:
                construct_fhir_element(resource["resourceType"], resource)
            except ValidationError as error:
                where = f"{resource['resourceType']}/{resource.get('id')}"
                errors.append({"resource": where, "error": str(error)})
    print(
        json.dumps(
            {
                "fhir_version": fhir.resources.__fhir_version__,
                "bundles": bundles,
                "resources": dict(sorted(types.items())),
                "codings": dict(sorted(systems.items())),
                "errors": errors,
            }
        )
    )


if __name__ == "__main__":
    main()
