"""Every command's --json output validates against the schema ``iop schema`` publishes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from iop_episodes.entrypoints.cli import json_models
from tests.clirun import first_episode, iop, make_demo
from tests.sealing import TEST_KEY_TEXT

AS_OF = "2026-02-09T07:00:00-05:00"  # the Monday after the demo's fifth week
KEYED_ENV = {"IOP_INTEGRITY_KEY": TEST_KEY_TEXT, "IOP_WITNESS": ""}
KEYED_NAMES = ["audit checkpoint", "audit prove", "audit pubkey", "audit report"]
"""Commands that need IOP_INTEGRITY_KEY and a store its service sealed (run further below)."""
CLIENT = "MRN-001-00000"  # the demo's first client, who consents to County EHR
DISCLOSING = ["--recipient", "County EHR", "--purpose", "treatment", "--as", "dr.lee:physician"]
EXPORTS = {
    "fhir": ["export", "fhir", CLIENT, *DISCLOSING, "--consent"],
    "teds": [
        *("export", "teds", "--admissions", "--from", "2026-01-01", "--to", "2026-12-31"),
        *DISCLOSING[:4],
        *("--as", "pd.gray:program_director", "--exception", "audit-and-evaluation"),
    ],
    "audit-report": ["export", "audit-report", CLIENT, *DISCLOSING, "--consent"],
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(make_demo(tmp_path_factory.mktemp("demo") / "demo.db")[len("sqlite:///") :])


@pytest.fixture
def store(demo: Path, tmp_path: Path) -> str:
    copy = tmp_path / "copy.db"
    shutil.copy(demo, copy)
    return f"sqlite:///{copy}"


def test_iop_schema_lists_every_published_shape():
    """iop schema with no name lists the commands that have a JSON shape."""
    done = iop("schema")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == NAMES


def schema(name: str) -> dict[str, Any]:
    done = iop("schema", *name.split())
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    jsonschema.Draft202012Validator.check_schema(found)
    return found


def invocation(name: str, store: str, tmp_path: Path) -> list[str]:
    """How to run a command for its JSON: most need only the store; these need more."""
    special = {
        "demo": [
            "demo",
            "--store",
            f"sqlite:///{tmp_path}/new.db",
            "--clients",
            "4",
            "--weeks",
            "2",
        ],
        "stepdown run": ["stepdown", "run", "--store", store, "--as-of", AS_OF],
        "schedule --episode": ["schedule", "--episode", CLIENT, "--store", store],
        "audit history": ["audit", "history", CLIENT, "--store", store],
        **{
            f"export {kind}": [*EXPORTS[kind], "--store", store, "--out", str(tmp_path / kind)]
            for kind in EXPORTS
        },
    }
    return [*special.get(name, [*name.split(), "--store", store]), "--json"]


NAMES = sorted(json_models())


def test_the_write_and_projection_commands_publish_their_shapes():
    """demo, stepdown run, audit verify and projections status|catch-up|rebuild each have one."""
    expected = {"demo", "stepdown run", "audit verify"} | {
        f"projections {action}" for action in ("status", "catch-up", "rebuild")
    }
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", [name for name in NAMES if name not in KEYED_NAMES])
def test_json_output_validates_against_its_published_schema(name, store, tmp_path):
    """Run the command with --json; its stdout is one JSON value matching its schema."""
    done = iop(*invocation(name, store, tmp_path))
    assert done.returncode == 0, done.stderr
    jsonschema.validate(json.loads(done.stdout), schema(name))


def every_object(value: Any, shape: dict[str, Any], defs: dict[str, Any]) -> Any:
    """Each (object, its schema) pair in ``value``, following the schema's items and $refs."""
    if "$ref" in shape:
        shape = defs[shape["$ref"].rsplit("/", 1)[1]]
    if isinstance(value, list) and "items" in shape:
        for item in value:
            yield from every_object(item, shape["items"], defs)
    elif isinstance(value, dict) and "properties" in shape:
        yield value, shape
        for key, inner in value.items():
            for option in shape["properties"][key].get("anyOf", [shape["properties"][key]]):
                yield from every_object(inner, option, defs)


@pytest.mark.parametrize("name", [name for name in NAMES if name not in KEYED_NAMES])
def test_no_field_is_left_out_of_the_json_output(name, store, tmp_path):
    """Every property the schema names is in every object printed, null, zero or empty or not."""
    found = schema(name)
    if name == "audit disclosures":  # the demo discloses nothing: something to account for
        iop(*EXPORTS["teds"], "--store", store, "--out", str(tmp_path / "t.csv"))
    output = json.loads(iop(*invocation(name, store, tmp_path)).stdout)
    objects = list(every_object(output, found, found.get("$defs", {})))
    assert objects
    for value, shape in objects:
        assert set(value) == set(shape["properties"]), shape.get("title")


def test_an_unknown_schema_name_is_a_usage_error():
    """iop schema banana: exit 2 listing the names there are."""
    done = iop("schema", "banana")
    assert done.returncode == 2
    assert "projections status" in done.stderr


def test_stepdown_json_keeps_zero_counts_and_gives_hours_as_numbers(store):
    """A second sweep steps nobody down: every count is still there, hours are numbers."""
    first = iop("stepdown", "run", "--store", store, "--as-of", AS_OF, "--json")
    assert first.returncode == 0, first.stderr
    again = json.loads(iop("stepdown", "run", "--store", store, "--as-of", AS_OF, "--json").stdout)
    assert again["counts"]["stepped_down"] == 0
    assert set(again["counts"]) == {"stepped_down", "held", "already_recorded", "skipped", "error"}
    decision = again["decisions"][0]["decision"]
    assert isinstance(decision["from_weekly_hours"], int | float)
    assert all(isinstance(week["target_hours"], int | float) for week in decision["evidence"])


def test_catch_up_and_rebuild_print_json(store):
    """projections catch-up --json and rebuild --json print JSON, not text."""
    catch_up = json.loads(iop("projections", "catch-up", "--store", store, "--json").stdout)
    assert catch_up["projected"] == 0
    rebuild = json.loads(iop("projections", "rebuild", "--store", store, "--json").stdout)
    assert rebuild["projected"] == rebuild["status"]["head"] > 0
    assert rebuild["status"]["lag"] == 0


def test_verify_json_says_what_it_checked(store):
    """audit verify --json counts the episodes and entries it checked."""
    report = json.loads(iop("audit", "verify", "--store", store, "--json").stdout)
    assert report["ok"] is True
    assert report["episodes"] == 8
    assert report["entries"] > report["episodes"]
    assert report["view_rows"] > 0
    assert report["findings"] == []


def test_docs_cli_json_is_what_iop_schema_prints():
    """docs/cli-json.md holds every published shape exactly (python scripts/cli_json_docs.py)."""
    from scripts.cli_json_docs import DOC, document  # noqa: PLC0415

    assert DOC.read_text() == document(), "docs/cli-json.md is stale: run scripts/cli_json_docs.py"


def test_schedule_hours_are_json_numbers(store):
    """schedule --json: weekly and target hours are numbers, 15 rather than "15"."""
    done = iop("schedule", "--store", store, "--week", "2026-W05", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert rows
    for row in rows:
        assert isinstance(row["weekly_hours"], int | float)
        assert isinstance(row["week"]["target_hours"], int | float)
        assert isinstance(row["week"]["compliance"], int | float)


# ---- the auditor's keyed commands: a store sealed by the integrity key ----------

DISCLOSED = [
    *("--recipient", "State auditor", "--purpose", "audit", "--as", "au.hill:auditor"),
    *("--exception", "audit-and-evaluation"),
]


@pytest.fixture(scope="module")
def keyed_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo made with the integrity key: every entry sealed, a checkpoint at its end."""
    path = tmp_path_factory.mktemp("keyed") / "keyed.db"
    done = iop(
        "demo", "--store", f"sqlite:///{path}", "--clients", "4", "--weeks", "2", env=KEYED_ENV
    )
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture
def keyed_store(keyed_demo: Path, tmp_path: Path) -> str:
    copy = tmp_path / "keyed.db"
    shutil.copy(keyed_demo, copy)
    return f"sqlite:///{copy}"


def keyed_invocation(name: str, store: str, tmp_path: Path) -> list[str]:
    episode = str(first_episode(store))
    return {
        "audit checkpoint": ["audit", "checkpoint", "--store", store, "--witness", f"{tmp_path}/w"],
        "audit pubkey": ["audit", "pubkey", "--out", f"{tmp_path}/keys.txt"],
        "audit prove": [
            *("audit", "prove", episode, "--store", store, "--out", f"{tmp_path}/b.json"),
            *DISCLOSED,
        ],
        "audit report": [
            *("audit", "report", episode, "--store", store, "--out", f"{tmp_path}/r.html"),
            *DISCLOSED,
        ],
    }[name] + ["--json"]


def test_the_auditors_commands_publish_their_shapes():
    """audit checkpoint, pubkey, prove and report each have a JSON shape."""
    assert set(KEYED_NAMES) <= set(NAMES)


@pytest.mark.parametrize("name", KEYED_NAMES)
def test_keyed_json_output_validates_against_its_published_schema(name, keyed_store, tmp_path):
    """With the integrity key: one JSON object matching the command's schema, no field left out."""
    done = iop(*keyed_invocation(name, keyed_store, tmp_path), env=KEYED_ENV)
    assert done.returncode == 0, done.stderr
    found = schema(name)
    output = json.loads(done.stdout)
    jsonschema.validate(output, found)
    for value, shape in every_object(output, found, found.get("$defs", {})):
        assert set(value) == set(shape["properties"]), shape.get("title")


def keyed_json(*args: str) -> dict[str, Any]:
    done = iop(*args, "--json", env=KEYED_ENV)
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def test_checkpoint_json_keeps_zero_counts(keyed_store):
    """A second checkpoint signs in nothing new: signed_in is 0, not left out; nulls stay."""
    keyed_json("audit", "checkpoint", "--store", keyed_store)
    again = keyed_json("audit", "checkpoint", "--store", keyed_store)
    assert again["signed_in"] == 0
    assert again["witness"] is None
    assert again["not_signed_in_from"] is None
    assert isinstance(again["checkpoint"]["size"], int)


def test_pubkey_json_is_the_key_line_it_prints(tmp_path):
    """The JSON's key_line is the text output; added is true once, then false."""
    text = iop("audit", "pubkey", env=KEYED_ENV).stdout.strip()
    keys = str(tmp_path / "keys.txt")
    first = keyed_json("audit", "pubkey", "--out", keys)
    assert first["key_line"] == text == f"{first['key_id']} {first['public_key']}"
    assert first["added"] is True
    assert keyed_json("audit", "pubkey", "--out", keys)["added"] is False
    assert keyed_json("audit", "pubkey")["added"] is None


def test_prove_and_report_json_name_their_disclosure(keyed_store, tmp_path):
    """Each names what it wrote and the one disclosure the accounting lists for it."""
    episode = str(first_episode(keyed_store))
    proof = keyed_json(
        *("audit", "prove", episode, "--store", keyed_store, "--out", f"{tmp_path}/b.json"),
        *DISCLOSED,
    )
    bundle = json.loads((tmp_path / "b.json").read_text())
    assert proof["entries"] == len(bundle["entries"])
    assert proof["not_yet_attested"] == 0
    assert proof["checkpoint"] == bundle["checkpoint"]
    report = keyed_json(
        *("audit", "report", episode, "--store", keyed_store, "--out", f"{tmp_path}/r.html"),
        *DISCLOSED,
    )
    assert report["verification"] == "ok"
    assert report["checkpoint"] is not None
    listed = json.loads(iop("audit", "disclosures", "--store", keyed_store, "--json").stdout)
    assert listed == [proof["disclosure"], report["disclosure"]]
    assert [row["format"] for row in listed] == ["proof-bundle", "audit-report-html"]


NO_JSON = {"scheduler", "schema"}
"""Commands without --json: the scheduler logs as a daemon, schema prints JSON Schema itself."""


def leaf_commands() -> dict[str, set[str]]:
    """Every command that runs (no sub-commands below it), with its options."""
    import argparse  # noqa: PLC0415

    from iop_episodes.entrypoints.cli import build_parser  # noqa: PLC0415

    found: dict[str, set[str]] = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        below = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not below:
            found[name] = {option for a in parser._actions for option in a.option_strings}
        for action in below:
            for sub, child in action.choices.items():
                walk(child, f"{name} {sub}".strip())

    walk(build_parser(), "")
    return found


def test_every_command_has_json_and_each_json_shape_is_published():
    """Each command but the daemon and schema takes --json, and iop schema knows its shape."""
    commands = leaf_commands()
    without = {name for name, options in commands.items() if "--json" not in options}
    assert without <= NO_JSON
    for name in set(commands) - without:
        assert name in NAMES or any(n.startswith(f"{name} ") for n in NAMES), name


def test_iop_schema_takes_a_name_that_holds_an_option():
    """iop schema schedule --episode prints one episode's schedule, not the program's list."""
    found = schema("schedule --episode")
    assert found["type"] == "object"
    assert {"episode_id", "taper", "weeks"} <= set(found["properties"])


def test_each_jsonl_line_of_audit_history_is_an_item_of_the_json_array(store):
    """--format jsonl gives the same entries as --json, one AuditEntry per line."""
    items = schema("audit history")
    entry = {"$ref": items["items"]["$ref"], "$defs": items["$defs"]}
    lines = iop("audit", "history", CLIENT, "--store", store, "--format", "jsonl").stdout
    entries = [json.loads(line) for line in lines.splitlines()]
    assert len(entries) > 1
    for one in entries:
        jsonschema.validate(one, entry)
    whole = json.loads(iop("audit", "history", CLIENT, "--store", store, "--json").stdout)
    assert whole == entries


def test_the_accounting_json_of_an_export_validates_and_names_its_records(store, tmp_path):
    """After a TEDS export, audit disclosures --json lists it with one record per episode."""
    teds = iop(*EXPORTS["teds"], "--store", store, "--out", str(tmp_path / "t.csv"), "--json")
    assert teds.returncode == 0, teds.stderr
    summary = json.loads(teds.stdout)
    done = iop("audit", "disclosures", "--store", store, "--json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    jsonschema.validate([row], schema("audit disclosures"))
    assert row["disclosure_id"] == summary["disclosure_id"]
    assert row["size_bytes"] == summary["size_bytes"] == (tmp_path / "t.csv").stat().st_size
    assert len(row["records"]) == summary["exported"] == 8


def test_a_partly_refused_export_prints_its_refusals_in_the_summary_and_exits_1(store, tmp_path):
    """export fhir --all --consent: the client without consent is listed as refused, exit 1."""
    out = tmp_path / "bundles"
    done = iop(
        *EXPORTS["fhir"][:2], "--all", *EXPORTS["fhir"][3:], "--store", store,
        "--out", str(out), "--json",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    jsonschema.validate(summary, schema("export fhir"))
    (refused,) = summary["refused"]
    assert refused["rule"] == "disclosure-needs-consent-in-force"
    assert summary["exported"] == len(list(out.iterdir())) == 7
    assert refused["episode_id"] in done.stderr


def test_json_of_an_export_to_stdout_is_a_usage_error_that_records_nothing(store):
    """--json with --out - (the default): exit 2 naming --out; no disclosure is recorded."""
    for kind, command in EXPORTS.items():
        done = iop(*command, "--store", store, "--json")
        assert done.returncode == 2, kind
        assert "--out" in done.stderr
        assert done.stdout == ""
    assert json.loads(iop("audit", "disclosures", "--store", store, "--json").stdout) == []
