"""The outside FHIR R4 validator: fhir.resources 6.4.0 (R4 4.0.1) in its own environment.

fhir.resources releases with R4 4.0.1 models are built on pydantic 1, which
cannot share the project's environment (pydantic 2), so the validator gets a
virtual environment of its own under .venv/fhir-r4, made once from
tests/fhir_validator/requirements.txt, and reads bundles on stdin.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from projections.exports import serialize

ROOT = Path(__file__).resolve().parent.parent
VALIDATOR = ROOT / "tests" / "fhir_validator"
ENVIRONMENT = ROOT / ".venv" / "fhir-r4"
PYTHON = ENVIRONMENT / "bin" / "python"


def validator_python() -> Path:
    """The validator environment's interpreter, created on first use (once across workers)."""
    ENVIRONMENT.parent.mkdir(exist_ok=True)
    with (ENVIRONMENT.parent / "fhir-r4.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = ENVIRONMENT / ".ready"
        if not ready.exists():
            subprocess.run([sys.executable, "-m", "venv", str(ENVIRONMENT)], check=True)
            subprocess.run(
                [
                    str(PYTHON),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                    str(VALIDATOR / "requirements.txt"),
                ],
                check=True,
                timeout=600,
            )
            ready.touch()
    return PYTHON


def validate(bundles: list[dict[str, Any]]) -> dict[str, Any]:
    """Resources per type, codings per system and every validation error of the bundles."""
    done = subprocess.run(
        [str(validator_python()), str(VALIDATOR / "validate.py")],
        input=b"".join(serialize(bundle) for bundle in bundles),
        capture_output=True,
        check=True,
        timeout=600,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report
