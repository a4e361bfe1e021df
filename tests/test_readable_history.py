"""The text and CSV histories a person reads: local times, one column per field, corrections
applied, and no stored text that can forge a line, reorder a line or run as a formula."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from pydantic import ValidationError

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, advance
from projections import audit
from projections.escaping import spreadsheet_cell, visible
from projections.history_text import CSV_COLUMNS, to_csv, to_text
from projections.runner import ViewRunner
from tests.conftest import START
from tests.strategies import hostile_text

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"
ENTRY_LINE = re.compile(r"^v\d")


def amended_history(service: EpisodeService, clock: SimulatedClock, note: str = ""):
    """Assessed, plan, a 180-minute session amended to 60 minutes by v4, one voided by v6."""
    episode_id = active_episode(service, clock)
    session_at = advance(clock, hours=1)
    service.record_session(factories.session(episode_id, session_at, note=note))
    amended = {"modality": "group", "minutes": 60, "topics": ["relapse_prevention"]}
    service.correct_entry(
        factories.correction(
            episode_id,
            advance(clock, hours=1),
            action="amend",
            amended=amended,
            reason="Session ended early.",
        )
    )
    service.record_session(factories.session(episode_id, advance(clock, hours=1), note=note))
    service.correct_entry(
        factories.correction(episode_id, advance(clock, hours=1), target_version=5)
    )
    runner = ViewRunner(service)
    runner.catch_up()
    return episode_id, audit.history(runner.views, str(episode_id)), service.episode(episode_id)


@pytest.fixture
def memory_service(clock: SimulatedClock):
    with EpisodeService("memory://", clock=clock, timezone="America/New_York") as app:
        yield app


def test_text_shows_the_amended_value_with_the_recorded_one_beside_it(memory_service, clock):
    """v3 reads minutes 60 (recorded 180) and names v4; v5 is marked voided by v6."""
    _, entries, state = amended_history(memory_service, clock)
    lines = to_text(entries, state, "America/New_York").splitlines()
    v3 = next(i for i, line in enumerate(lines) if line.startswith("v3 "))
    assert "[amended by v4]" in lines[v3]
    assert "minutes: 60 (recorded 180)" in lines[v3 + 1]
    v5 = next(i for i, line in enumerate(lines) if line.startswith("v5 "))
    assert "[voided by v6]" in lines[v5]
    assert lines[v5 + 1].strip().startswith("VOIDED:")
    v4 = next(line for line in lines if line.startswith("v4 "))
    assert "corrects v3" in v4


def test_text_has_no_python_reprs_microseconds_or_capitalised_booleans(memory_service, clock):
    """Dicts are written out, times to the minute with offset, flags yes/no."""
    _, entries, state = amended_history(memory_service, clock)
    text = to_text(entries, state, "America/New_York")
    assert "{'" not in text
    assert "False" not in text
    assert "True" not in text
    assert not re.search(r"\d\d:\d\d:\d\d\.\d{6}", text)
    assert "intoxication_withdrawal 1" in text  # the ASAM ratings, written out
    assert "has_transport: yes" in text


def test_csv_has_one_column_per_field_and_applies_corrections(memory_service, clock):
    """The header is CSV_COLUMNS; the amended row shows 60 minutes and keeps 180 as recorded."""
    _, entries, state = amended_history(memory_service, clock)
    rows = list(csv.DictReader(io.StringIO(to_csv(entries, state.client_ref, "America/New_York"))))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == 6
    amended = rows[2]
    assert (amended["status"], amended["minutes"], amended["corrected_by"]) == (
        "amended",
        "60",
        "4",
    )
    assert amended["recorded_values"] == "minutes 180"
    assert rows[4]["status"] == "voided"
    assert {row["late"] for row in rows} == {"no"}
    assert all(row["client_ref"] == "MRN-0001" for row in rows)
    assert rows[0]["occurred_at"] == "2026-03-02 09:00 -05:00"


def test_a_session_at_2040_in_new_york_on_7_january_shows_on_the_7th():
    """20:40 -05:00 is 01:40 UTC on the 8th; the history shows the 7th, with its offset."""
    evening = datetime(2026, 1, 8, 1, 40, tzinfo=UTC)
    clock = SimulatedClock(evening - timedelta(days=2))
    with EpisodeService("memory://", clock=clock, timezone="America/New_York") as service:
        episode_id = active_episode(service, clock)
        clock.advance(evening - clock.now() + timedelta(minutes=30))
        service.record_session(factories.session(episode_id, evening))
        runner = ViewRunner(service)
        runner.catch_up()
        entries = audit.history(runner.views, str(episode_id))
        state = service.episode(episode_id)
    session = next(
        line
        for line in to_text(entries, state, "America/New_York").splitlines()
        if line.startswith("v3 ")
    )
    assert "2026-01-07 20:40 -05:00" in session
    in_utc = next(
        line for line in to_text(entries, state, "UTC").splitlines() if line.startswith("v3 ")
    )
    assert "2026-01-08 01:40 +00:00" in in_utc


def test_a_note_with_a_newline_cannot_forge_an_entry_line(memory_service, clock):
    """A note holding '\\nv9   Discharged ...' and bidi overrides stays on its own line, escaped."""
    forged = "Fine.\nv9   Discharged           2026-03-09 10:00 -04:00  by dr.who (physician)"
    _, entries, state = amended_history(memory_service, clock, note=forged + BIDI)
    text = to_text(entries, state, "America/New_York")
    entry_lines = [line for line in text.splitlines() if ENTRY_LINE.match(line)]
    assert [line.split()[0] for line in entry_lines] == ["v1", "v2", "v3", "v4", "v5", "v6"]
    assert not any(character in text for character in BIDI)
    assert "Fine.\\nv9   Discharged" in text
    assert "\\u202e" in text
    csv_lines = to_csv(entries, state.client_ref, "UTC").splitlines()
    assert len(csv_lines) == 1 + len(entries)  # no cell breaks a line either
    assert not any(character in "".join(csv_lines) for character in BIDI)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("line\nbreak", "line\\nbreak"),
        ("carriage\rreturn", "carriage\\rreturn"),
        ("tab\there", "tab\\there"),
        ("nul\x00", "nul\\x00"),
        ("next line\x85", "next line\\x85"),
        ("separator\u2028", "separator\\u2028"),
        ("override\u202eevil", "override\\u202eevil"),
        ("isolate\u2066x\u2069", "isolate\\u2066x\\u2069"),
        ("marks\u200e\u200f", "marks\\u200e\\u200f"),
        ("back\\slash", "back\\\\slash"),
        ("plain text, ünïcode ok", "plain text, ünïcode ok"),
    ],
)
def test_visible_escapes_every_invisible_or_line_breaking_character(raw, shown):
    """Control, bidi and separator characters become escapes; other text is unchanged."""
    assert visible(raw) == shown


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_prefixed_with_a_quote(start):
    """=, +, -, @, tab and CR at the start of a cell are neutralised by a leading quote."""
    cell = spreadsheet_cell(start + 'HYPERLINK("http://x")')
    assert cell.startswith("'")
    assert "\t" not in cell
    assert "\r" not in cell


def test_an_ordinary_cell_is_left_as_it_is():
    """A cell that would not run stays unchanged."""
    assert spreadsheet_cell("MRN-0001") == "MRN-0001"


def test_a_formula_in_a_note_reaches_the_csv_neutralised(memory_service, clock):
    """A session note '=cmd|...' is written to the CSV as the text "'=cmd|..."."""
    _, entries, state = amended_history(memory_service, clock, note="=cmd|' /C calc'!A0")
    rows = list(csv.DictReader(io.StringIO(to_csv(entries, state.client_ref, "UTC"))))
    assert rows[4]["note"] == "'=cmd|' /C calc'!A0"
    assert not any(value.startswith(("=", "+", "-", "@")) for row in rows for value in row.values())


@given(text=hostile_text())
def test_visible_text_never_holds_an_invisible_or_line_breaking_character(text):
    """Whatever the text, its visible form is one line of printable characters and spaces."""
    shown = visible(text)
    assert not any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"} for c in shown)
    assert len(shown.splitlines()) <= 1


@given(text=hostile_text())
def test_visible_text_is_unambiguous(text):
    """Two different texts never look the same (escapes cannot be faked)."""
    assert visible(text + "x") != visible(text + "\\x")
    decoded = visible(text).encode("ascii", "backslashreplace").decode("unicode_escape")
    assert decoded == text


@given(text=hostile_text())
def test_no_cell_ever_starts_like_a_formula(text):
    """A spreadsheet cell starts with ', or with something that does not run."""
    cell = spreadsheet_cell(text)
    assert cell.startswith("'") or not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


NOTE_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
"""What a Note refuses: control characters, and lone surrogates (no Unicode text holds one)."""


def test_a_note_holding_a_lone_surrogate_is_refused_naming_the_field():
    """'\\ud800' is no text: the command fails validation on note, and nothing is stored."""
    clock = SimulatedClock(START)
    with EpisodeService("memory://", clock=clock, timezone="America/New_York") as service:
        episode_id = active_episode(service, clock)
        before = len(list(service.history(episode_id)))
        with pytest.raises(ValidationError) as raised:
            service.record_session(factories.session(episode_id, clock.now(), note="\ud800"))
        assert [error["loc"] for error in raised.value.errors()] == [("note",)]
        assert len(list(service.history(episode_id))) == before


@given(note=hostile_text().map(lambda text: NOTE_FORBIDDEN.sub("", text)))
def test_no_note_adds_or_hides_a_line_of_the_text_history(note):
    """Whatever a stored note says, the text history has exactly one v-line per entry."""
    clock = SimulatedClock(START)
    with EpisodeService("memory://", clock=clock, timezone="America/New_York") as service:
        _, entries, state = amended_history(service, clock, note=note)
    text = to_text(entries, state, "America/New_York")
    lines = text.splitlines()
    assert [line.split()[0] for line in lines if ENTRY_LINE.match(line)] == [
        f"v{entry.version}" for entry in entries
    ]
    assert len(lines) == 4 + 2 * len(entries)  # three heading lines, a blank, two per entry
    assert not any(character in text for character in BIDI)


def test_the_documented_csv_columns_are_the_columns_written():
    """docs/history-formats.md lists exactly CSV_COLUMNS, in order."""
    doc = (Path(__file__).parent.parent / "docs" / "history-formats.md").read_text()
    after = doc.split("## CSV", 1)[1].split("The columns, in order:", 1)[1]
    listed = after.split("`", 2)[1]
    assert [name.strip() for name in listed.split(",")] == list(CSV_COLUMNS)
