"""Every ordinary mistake gets one line on stderr, a documented exit code, and no side effect."""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from eventsourcing.cipher import AESCipher

from iop_episodes.application.service import EpisodeService
from iop_episodes.application.stepdown import EpisodeOutcome, SweepSummary
from iop_episodes.entrypoints.commands import sweep_exit_code
from tests.clirun import (
    files_under,
    first_episode,
    iop,
    make_demo,
    one_line_error,
    public_directory,
)
from tests.conftest import POSTGRES_SERVER, require_postgres

USAGE, STORE, INTEGRITY = 2, 3, 4
EXPORT_ALL = ("export", "fhir", "--all", "--recipient", "payer", "--purpose", "treatment")
EXPORT_ALL += ("--as", "c.adams:counselor", "--consent")
READING = [
    ("audit", "verify"),
    ("audit", "history", "6f1f8c1e-3b7a-5d0e-9a53-2f4c7b1d9e10"),
    ("schedule",),
    ("projections", "status"),
    ("stepdown", "run", "--dry-run"),
    ("audit", "disclosures"),
    ("episodes",),
    ("worklist",),
    ("schedule", "--episode", "MRN-001-00000"),
    (
        *(
            "audit",
            "report",
            "6f1f8c1e-3b7a-5d0e-9a53-2f4c7b1d9e10",
            "--out",
            "/nonexistent/r.html",
        ),
        *("--recipient", "State auditor", "--purpose", "audit", "--as", "au.hill:auditor"),
        *("--exception", "audit-and-evaluation"),
    ),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(make_demo(tmp_path_factory.mktemp("demo") / "demo.db")[len("sqlite:///") :])


@pytest.fixture
def copy(demo: Path, tmp_path: Path) -> Path:
    """A private copy of the demo store, free to damage."""
    target = tmp_path / "copy.db"
    shutil.copy(demo, target)
    return target


@pytest.fixture
def episode(demo: Path) -> str:
    return str(first_episode(f"sqlite:///{demo}"))


@pytest.mark.parametrize("command", READING, ids=" ".join)
def test_reading_a_missing_store_fails_and_creates_nothing(tmp_path, command):
    """A typo in --store is exit 3, and no directory or empty store appears."""
    done = iop(*command, "--store", f"sqlite:///{tmp_path}/typo/x.db")
    assert done.returncode == STORE
    assert "no store at" in one_line_error(done)
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_sqlite_is_refused_by_readers_and_writers(tmp_path):
    """A text file as the store: exit 3 naming it, and the file is untouched."""
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    for command in (("audit", "verify"), ("demo",), ("projections", "catch-up")):
        done = iop(*command, "--store", f"sqlite:///{text}")
        assert done.returncode == STORE, command
        assert "is not a SQLite database" in one_line_error(done)
    assert files_under(tmp_path) == {"notes.txt": b"hello\n"}


def test_a_truncated_database_is_named_truncated(demo, tmp_path):
    """The first 20 kB of a store: exit 3 saying it is truncated, no -wal or -shm made."""
    cut = tmp_path / "cut.db"
    cut.write_bytes(demo.read_bytes()[:20_000])
    for command in (("audit", "verify"), ("projections", "catch-up")):
        done = iop(*command, "--store", f"sqlite:///{cut}")
        assert done.returncode == STORE
        assert "is truncated" in one_line_error(done)
    assert [path.name for path in tmp_path.iterdir()] == ["cut.db"]


def test_a_directory_given_as_the_store_is_refused(tmp_path):
    """--store naming a directory: exit 3 for readers and writers alike."""
    for command in (("audit", "verify"), ("demo",)):
        done = iop(*command, "--store", f"sqlite:///{tmp_path}")
        assert done.returncode == STORE
        assert "is a directory" in one_line_error(done)
    assert list(tmp_path.iterdir()) == []


def test_a_path_under_a_file_is_refused(tmp_path):
    """sqlite:///file.txt/x.db: exit 3 naming the file in the way."""
    (tmp_path / "file.txt").write_text("x")
    for command in (("audit", "verify"), ("demo",)):
        done = iop(*command, "--store", f"sqlite:///{tmp_path}/file.txt/x.db")
        assert done.returncode == STORE
        assert "is a file, not a directory" in one_line_error(done)


def test_writing_into_a_read_only_directory_is_refused():
    """A demo into a directory the user may not write: exit 3, nothing created."""
    with public_directory() as directory:
        locked = directory / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        done = iop("demo", "--store", f"sqlite:///{locked}/new.db", as_reader=True)
        assert done.returncode == STORE
        assert "not writable" in one_line_error(done)
        assert list(locked.iterdir()) == []


def test_a_nul_in_the_path_is_a_usage_error(tmp_path):
    """%00 in a store URL: exit 2 saying so, not a key problem."""
    done = iop("audit", "verify", "--store", f"sqlite:///{tmp_path}/a%00b.db")
    assert done.returncode == USAGE
    assert "NUL" in one_line_error(done)


def test_postgresql_not_listening_is_store_unavailable_with_the_password_masked():
    """Nothing on port 1: exit 3 saying connection refused, and the password never shown."""
    done = iop("audit", "verify", "--store", "postgresql://auditor:s3cret-pw@127.0.0.1:1/test")
    assert done.returncode == STORE
    line = one_line_error(done)
    assert "Connection refused" in line
    assert "auditor:***@127.0.0.1" in line
    assert "s3cret-pw" not in done.stderr + done.stdout


@pytest.mark.postgres
def test_a_missing_postgresql_database_is_store_unavailable():
    """A database that does not exist: exit 3 naming it."""
    require_postgres()
    done = iop("audit", "verify", "--store", "postgresql://postgres@127.0.0.1:5432/no_such_db")
    assert done.returncode == STORE
    assert 'database "no_such_db" does not exist' in one_line_error(done)


@pytest.mark.postgres
def test_a_missing_postgresql_schema_is_store_unavailable():
    """A schema that does not exist: exit 3, and the schema is still not there."""
    require_postgres()
    import psycopg  # noqa: PLC0415  (only PostgreSQL tests need the driver)

    schema = f"t_missing_{uuid.uuid4().hex[:8]}"
    done = iop("schedule", "--store", f"{POSTGRES_SERVER}?schema={schema}")
    assert done.returncode == STORE
    assert "holds no episode tables" in one_line_error(done)
    with psycopg.connect(POSTGRES_SERVER) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchall()
    assert found == []


def test_a_malformed_cipher_key_is_a_key_problem(copy):
    """IOP_CIPHER_KEY that is not base64 AES: exit 4, and the key is not echoed."""
    done = iop("audit", "verify", "--store", f"sqlite:///{copy}", env={"IOP_CIPHER_KEY": "abc"})
    assert done.returncode == INTEGRITY
    assert "IOP_CIPHER_KEY is not a base64 AES key" in one_line_error(done)


@pytest.mark.parametrize("command", [("audit", "verify"), ("demo",)], ids=" ".join)
def test_a_malformed_integrity_key_is_a_key_problem_never_echoed(tmp_path, copy, command):
    """IOP_INTEGRITY_KEY that is not base64: exit 4 naming the variable, its text never shown."""
    malformed = "not-base64-but-private-text!"
    store = copy if command[0] == "audit" else tmp_path / "new.db"
    done = iop(*command, "--store", f"sqlite:///{store}", env={"IOP_INTEGRITY_KEY": malformed})
    assert done.returncode == INTEGRITY
    assert "IOP_INTEGRITY_KEY" in one_line_error(done)
    assert malformed not in done.stderr + done.stdout
    assert not (tmp_path / "new.db").exists()


def test_a_wrong_cipher_key_is_a_key_problem(copy):
    """A well-formed key the store was not written with: exit 4, the key never printed."""
    key = AESCipher.create_key(32)
    done = iop("audit", "verify", "--store", f"sqlite:///{copy}", env={"IOP_CIPHER_KEY": key})
    assert done.returncode == INTEGRITY
    assert "cannot be read with IOP_CIPHER_KEY" in one_line_error(done)
    assert key not in done.stderr


@pytest.mark.parametrize(
    "command",
    [("stepdown", "run", "--dry-run"), ("demo",), ("scheduler",)],
    ids=" ".join,
)
def test_an_unknown_timezone_is_a_usage_error_naming_the_argument(copy, command):
    """--timezone Mars/Olympus: exit 2 naming --timezone, before the store is touched."""
    done = iop(*command, "--store", f"sqlite:///{copy}", "--timezone", "Mars/Olympus")
    assert done.returncode == USAGE
    assert "argument --timezone" in one_line_error(done)


def test_an_unknown_timezone_from_the_environment_is_a_usage_error(copy):
    """IOP_TIMEZONE=Mars/Olympus: exit 2 naming the variable."""
    done = iop(
        "stepdown", "run", "--dry-run", "--store", f"sqlite:///{copy}",
        env={"IOP_TIMEZONE": "Mars/Olympus"},
    )  # fmt: skip
    assert done.returncode == USAGE
    assert "IOP_TIMEZONE" in one_line_error(done)


@pytest.mark.parametrize("week", ["banana", "2026-W60", "2025-W53", "2026-W00"])
def test_a_week_that_does_not_exist_is_refused_naming_week(copy, week):
    """--week must be an ISO week that exists (2026 has 53, 2025 has 52)."""
    done = iop("schedule", "--store", f"sqlite:///{copy}", "--week", week)
    assert done.returncode == USAGE
    assert "argument --week" in one_line_error(done)


def test_a_week_that_exists_is_accepted(copy):
    """2026-W53 exists."""
    assert iop("schedule", "--store", f"sqlite:///{copy}", "--week", "2026-W53").returncode == 0


@pytest.mark.parametrize("version", ["0", "99999", "-1", "two"])
def test_a_version_outside_the_episode_is_refused_naming_version(copy, episode, version):
    """--version must lie between 1 and the episode's head."""
    done = iop("audit", "history", episode, "--store", f"sqlite:///{copy}", "--version", version)
    assert done.returncode == USAGE
    assert "argument --version" in one_line_error(done)


@pytest.mark.parametrize(
    ("command", "argument"),
    [
        (("audit", "history", "EPISODE"), "--as-of"),
        (("stepdown", "run", "--dry-run"), "--as-of"),
        (("worklist",), "--as-of"),
        (("audit", "report", "EPISODE", "--out", "report.html"), "--as-of"),
        (EXPORT_ALL, "--since"),
    ],
)
@pytest.mark.parametrize("value", ["2026-03-01T00:00", "yesterday"])
def test_a_time_without_an_offset_is_refused_naming_the_argument(
    copy, episode, command, argument, value
):
    """Every time argument needs ISO 8601 with an offset."""
    args = [episode if part == "EPISODE" else part for part in command]
    done = iop(*args, "--store", f"sqlite:///{copy}", argument, value)
    assert done.returncode == USAGE
    assert f"argument {argument}" in one_line_error(done)


TEDS = ("export", "teds", "--admissions", "--recipient", "state", "--purpose", "reporting")
TEDS += ("--as", "pd.gray:program_director", "--exception", "audit-and-evaluation")


@pytest.mark.parametrize(
    ("command", "argument"),
    [
        ((*TEDS, "--to", "2026-12-31", "--from"), "--from"),
        ((*TEDS, "--from", "2026-01-01", "--to"), "--to"),
        (("audit", "disclosures", "--since"), "--since"),
    ],
)
@pytest.mark.parametrize("value", ["banana", "2026-02-30", "2026-03-01T00:00Z", "20260301"])
def test_a_day_that_is_not_yyyy_mm_dd_is_refused_naming_the_argument(
    copy, command, argument, value
):
    """--from, --to and --since take a day that exists, written YYYY-MM-DD; nothing is recorded."""
    before = copy.read_bytes()
    done = iop(*command, value, "--store", f"sqlite:///{copy}")
    assert done.returncode == USAGE
    assert f"argument {argument}" in one_line_error(done)
    assert copy.read_bytes() == before


def test_an_unknown_episode_is_a_usage_error(copy):
    """A UUID no episode has: exit 2 naming it."""
    missing = str(uuid.uuid4())
    done = iop("audit", "history", missing, "--store", f"sqlite:///{copy}")
    assert done.returncode == USAGE
    assert missing in one_line_error(done)


@pytest.mark.parametrize("kind", ["fhir", "audit-report"])
def test_exporting_an_unknown_episode_is_a_usage_error_that_records_nothing(copy, kind):
    """A UUID no episode has: exit 2, one line naming it, and the store is unchanged."""
    unknown = "6f1f8c1e-3b7a-5d0e-9a53-2f4c7b1d9e10"
    before = copy.read_bytes()
    disclosing = ("--recipient", "County EHR", "--purpose", "treatment", "--consent")
    disclosing += ("--as", "dr.lee:physician", "--store", f"sqlite:///{copy}")
    done = iop("export", kind, unknown, *disclosing)
    assert done.returncode == USAGE
    assert f"no episode {unknown}" in one_line_error(done)
    assert copy.read_bytes() == before


def test_bad_arguments_are_one_line_not_a_usage_block(copy):
    """An unknown option: exit 2, one line pointing at --help."""
    done = iop("audit", "verify", "--store", f"sqlite:///{copy}", "--colour")
    assert done.returncode == USAGE
    assert "--help" in one_line_error(done)


def test_debug_shows_the_traceback(tmp_path):
    """iop --debug: the same failure, with the traceback above the line."""
    done = iop("--debug", "audit", "verify", "--store", f"sqlite:///{tmp_path}/none.db")
    assert done.returncode == STORE
    assert "Traceback" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("iop: error: no store at")


def test_reset_refuses_a_file_that_is_not_a_store(tmp_path):
    """demo --reset on a text file: exit 3, the file kept."""
    text = tmp_path / "iop.db"
    text.write_text("my notes\n")
    done = iop("demo", "--reset", "--store", f"sqlite:///{text}")
    assert done.returncode == STORE
    assert "nothing deleted" in one_line_error(done)
    assert text.read_text() == "my notes\n"


def test_reset_refuses_a_store_holding_real_events_unless_yes(copy):
    """A store with an entry by someone not on the demo staff: exit 2, kept; --yes deletes."""
    with EpisodeService(f"sqlite:///{copy}") as service:
        service.assess(
            {
                "actor": {"id": "c.real", "role": "counselor"},
                "occurred_at": datetime.now(tz=UTC),
                "client_ref": "MRN-REAL-1",
                "birth_date": date(1980, 1, 1),
                "entry_pathway": "after_inpatient_or_residential",
                "payer": "private_insurance",
                "asam": dict.fromkeys(
                    (
                        "intoxication_withdrawal",
                        "biomedical",
                        "emotional_behavioral_cognitive",
                        "readiness_to_change",
                        "relapse_potential",
                        "recovery_environment",
                    ),
                    1,
                ),
                "primary_substances": ["alcohol"],
            }
        )
    before = copy.read_bytes()
    refused = iop("demo", "--reset", "--store", f"sqlite:///{copy}")
    assert refused.returncode == USAGE
    assert "c.real" in one_line_error(refused)
    assert copy.read_bytes() == before
    forced = iop(
        "demo", "--reset", "--yes", "--store", f"sqlite:///{copy}", "--clients", "4", "--weeks", "2"
    )
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.splitlines()[-1].startswith("store digest: ")
    assert "c.real" not in copy.read_bytes().decode("latin-1")


def test_reset_replaces_a_demo_store(copy):
    """A store holding only demo data is deleted and the demo runs again."""
    done = iop("demo", "--reset", "--store", f"sqlite:///{copy}", "--clients", "4", "--weeks", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("store digest: ")


def test_a_broken_pipe_is_quiet(demo, episode):
    """iop audit history X | head -1: one line out, nothing on stderr, exit 0."""
    command = [sys.executable, "-m", "iop_episodes.entrypoints.cli", "audit", "history", episode]
    with subprocess.Popen(
        [*command, "--store", f"sqlite:///{demo}", "--format", "csv"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline()
        process.stdout.close()  # the reader goes away, as head does
        assert process.wait(timeout=60) == 0
        assert process.stderr is not None
        assert process.stderr.read() == b""


def test_version_prints_the_package_version():
    """iop --version names the program and its version."""
    done = iop("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("iop 0.")


def test_every_option_has_help_text():
    """No option of any command is left without a line of help."""
    from iop_episodes.entrypoints.cli import build_parser  # noqa: PLC0415

    missing = []
    for name, parser in walk(build_parser()):
        missing.extend(
            f"{name} {'/'.join(action.option_strings) or action.dest}"
            for action in parser._actions
            if action.help is None and action.dest != "help"
        )
    assert missing == []


def walk(parser, name="iop"):
    """Every parser below ``parser``, with the command that reaches it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from walk(child, f"{name} {sub}")


def test_a_sweep_with_errors_exits_1():
    """One episode's error makes the sweep a finding; holds alone do not."""
    held = EpisodeOutcome(uuid.uuid4(), "held", "not yet")
    failed = EpisodeOutcome(uuid.uuid4(), "error", "ValueError: boom")
    moment = datetime(2026, 3, 2, tzinfo=UTC)
    assert sweep_exit_code(SweepSummary(moment, "iop-taper@1", False, [held])) == 0
    assert sweep_exit_code(SweepSummary(moment, "iop-taper@1", False, [held, failed])) == 1


def move_tracking(store: Path, position: int) -> None:
    with sqlite3.connect(store) as conn:
        conn.execute(
            "UPDATE tracking SET notification_id = ? WHERE application_name = 'Episodes'",
            (position,),
        )


def test_a_position_past_the_head_is_flagged_and_catch_up_refuses(copy):
    """Tracking beyond the log: status exits 1 saying so; catch-up exits 4 naming rebuild."""
    url = f"sqlite:///{copy}"
    move_tracking(copy, 999_999)
    status = iop("projections", "status", "--store", url)
    assert status.returncode == 1
    assert "PAST THE HEAD" in status.stdout
    catch_up = iop("projections", "catch-up", "--store", url)
    assert catch_up.returncode == INTEGRITY
    assert "iop projections rebuild" in one_line_error(catch_up)
    assert iop("projections", "rebuild", "--store", url).returncode == 0
    assert iop("projections", "status", "--store", url).returncode == 0


def test_a_position_moved_back_is_reported_and_readers_still_answer(copy):
    """Tracking behind the views: status and catch-up name rebuild, verify fails, schedule works."""
    url = f"sqlite:///{copy}"
    move_tracking(copy, 10)
    status = iop("projections", "status", "--store", url)
    assert status.returncode == 1
    assert "moved back" in status.stdout
    catch_up = iop("projections", "catch-up", "--store", url)
    assert catch_up.returncode == INTEGRITY
    assert "iop projections rebuild" in one_line_error(catch_up)
    schedule = iop("schedule", "--store", url, "--week", "2026-W04")
    assert schedule.returncode == 0
    assert "reading the store directly" in schedule.stderr
    verify = iop("audit", "verify", "--store", url)  # it checks the views as they stand
    assert verify.returncode == 1
    assert "verification: FAILED" in verify.stdout


def test_projections_run_refuses_json(copy):
    """The long-running runner logs as it goes: --json is a usage error saying where it applies."""
    done = iop("projections", "run", "--store", f"sqlite:///{copy}", "--json")
    assert done.returncode == USAGE
    assert "--json is for status" in one_line_error(done)


@pytest.mark.parametrize(
    "command",
    [
        ("stepdown", "run"),
        ("projections", "catch-up"),
        ("projections", "rebuild"),
        EXPORT_ALL,
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_writing_commands_other_than_demo_need_an_existing_store(tmp_path, command):
    """A sweep or catch-up on a typo'd path: exit 3, no store made to sweep nothing."""
    done = iop(*command, "--store", f"sqlite:///{tmp_path}/typo/x.db")
    assert done.returncode == STORE
    assert "no store at" in one_line_error(done)
    assert list(tmp_path.iterdir()) == []


def test_log_lines_mask_store_passwords():
    """The scheduler's log formatter blots out a password in a store URL."""
    import logging  # noqa: PLC0415

    from iop_episodes.entrypoints.cli import MaskingFormatter  # noqa: PLC0415

    record = logging.makeLogRecord(
        {"msg": "sweep failed on %s", "args": ("postgresql://ops:hunter2@db/iop",)}
    )
    line = MaskingFormatter(debug=False).format(record)
    assert "postgresql://ops:***@db/iop" in line
    assert "hunter2" not in line


@pytest.mark.parametrize("cron", ["banana", "61 * * * *"])
def test_a_bad_cron_expression_is_a_usage_error_naming_cron(copy, cron):
    """--cron that APScheduler cannot read: exit 2 naming --cron, no scheduler started."""
    done = iop("scheduler", "--store", f"sqlite:///{copy}", "--cron", cron)
    assert done.returncode == USAGE
    assert "argument --cron" in one_line_error(done)


def test_reset_refuses_a_sqlite_database_that_is_not_the_engines(tmp_path):
    """Another program's SQLite file: exit 3, kept byte for byte."""
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
    before = other.read_bytes()
    done = iop("demo", "--reset", "--store", f"sqlite:///{other}")
    assert done.returncode == STORE
    assert "nothing deleted" in one_line_error(done)
    assert other.read_bytes() == before


def test_log_lines_go_to_the_stderr_of_the_moment_not_the_one_logging_started_with():
    """A host that swaps (or closes) sys.stderr after main ran still gets its warnings."""
    import contextlib  # noqa: PLC0415
    import io  # noqa: PLC0415
    import logging  # noqa: PLC0415

    from iop_episodes.entrypoints.cli import configure_logging  # noqa: PLC0415

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("schedule", debug=False)
        first, second = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(first):
            logging.getLogger("iop.test").warning("one")
        first.close()  # the stream logging began beside is gone
        with contextlib.redirect_stderr(second):
            logging.getLogger("iop.test").warning("two")
        assert second.getvalue().rstrip().endswith("WARNING iop.test: two")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
