"""`iop audit report`: one self-contained HTML file, checked as text and in headless Chromium."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import advance
from projections.report import AuditReport, CheckpointRef, WeekMark, build_report, week_marks
from projections.report_html import render_report
from projections.runner import ViewRunner
from projections.schedule import EpisodeSchedule, episode_schedule
from tests import tamper
from tests.cli import iop
from tests.conftest import START
from tests.reports import HOSTILE_NOTE, eventful_episode
from tests.sealing import TEST_KEY, TEST_KEY_TEXT

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
DISCLOSED = (
    "--recipient",
    "State surveyor",
    "--purpose",
    "audit",
    "--as",
    "au.hill:auditor",
    "--exception",
    "audit-and-evaluation",
)
"""The report leaves the program: the disclosure options every audit report names."""
BROWSER_OWN_HOSTS = re.compile(rb"[\w.-]*(google\.com|googleapis\.com|gstatic\.com|gvt1\.com)")
"""Chromium's own background requests (time, updates, accounts), never the page's."""


def report_for(
    as_of: datetime | None = None, extra_marks: tuple[WeekMark, ...] = ()
) -> tuple[AuditReport, SimulatedClock]:
    clock = SimulatedClock(START)
    with EpisodeService("memory://", clock=clock, timezone="America/New_York") as service:
        episode_id = eventful_episode(service, clock)
        report = build_report(
            service,
            episode_id,
            as_of=as_of,
            timezone="America/New_York",
            now=clock.now(),
            extra_marks=extra_marks,
        )
    return report, clock


@pytest.fixture(scope="module")
def report() -> AuditReport:
    return report_for()[0]


@pytest.fixture(scope="module")
def page(report: AuditReport) -> str:
    return render_report(report)


class Links(HTMLParser):
    """Every tag and the attributes that could fetch or link something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.references: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in {"src", "href", "srcset", "data", "action", "xlink:href", "poster"}:
                self.references.append((tag, name, value or ""))


def parsed(page: str) -> Links:
    links = Links()
    links.feed(page)
    return links


def test_the_report_fetches_nothing_and_runs_no_script(page):
    """No script, link, iframe or object; every src/href is an anchor inside the page."""
    links = parsed(page)
    assert not {"script", "link", "iframe", "object", "embed", "img"} & set(links.tags)
    assert links.references
    assert all(value.startswith("#") for _, _, value in links.references), links.references
    assert "url(" not in page
    assert "@import" not in page
    assert "default-src 'none'" in page


def test_every_field_is_escaped(page):
    """The hostile note's tags arrive as text, its line break and override as escapes."""
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "\u202e" not in page
    assert "\\u202e" in page
    assert "\\nv99" in page
    assert HOSTILE_NOTE not in page


def test_the_summary_names_client_status_hours_and_medications(report, page):
    """Client reference, episode id, status, level, weekly hours and planned medications."""
    assert report.summary.client_ref == "MRN-0042"
    assert "<h1>Episode audit report: client MRN-0042</h1>" in page
    assert str(report.summary.episode_id) in page
    assert report.summary.weekly_hours == 9
    assert "<dt>Medications in plan</dt><dd>buprenorphine</dd>" in page


def test_the_chart_has_a_bar_and_a_target_point_per_week_and_marks(report, page):
    """One attended bar and target point per ISO week; step-down and unexpected positive marked."""
    weeks = len(report.weeks)
    assert weeks >= 6
    assert page.count('<rect class="attended"') == weeks
    assert page.count('<circle class="target-point"') == weeks
    kinds = {mark.kind for mark in report.marks}
    assert kinds == {"step-down", "unexpected-positive"}
    assert page.count('class="mark mark-step-down"') == 1
    assert page.count('class="mark mark-unexpected-positive"') == 1
    step = next(m for m in report.marks if m.kind == "step-down")
    assert step.week == report.taper[0].week


def test_the_target_drops_from_the_step_down_week(report):
    """Target 12 hours before the step-down week, 9 from it on."""
    step_week = report.taper[0].week
    targets = {w.week: w.target_hours for w in report.weeks}
    assert all(t == 12 for week, t in targets.items() if week < step_week)
    assert all(t == 9 for week, t in targets.items() if week >= step_week)


def test_the_style_is_grey_only_and_keeps_entries_whole_when_printed(page):
    """Every colour is a grey; rows never split across pages; headings repeat on each page."""
    colours = re.findall(r"#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})\b", page.split("</style>")[0])
    assert colours
    for colour in colours:
        channels = colour if len(colour) == 3 else (colour[0:2], colour[2:4], colour[4:6])
        assert len(set(channels)) == 1, colour
    assert "tr { break-inside: avoid; }" in page
    assert "thead { display: table-header-group; }" in page
    assert "@media print" in page


def test_any_source_can_mark_weeks_such_as_a_lapsed_certification():
    """Marks passed in (e.g. certification-lapsed) are drawn and listed like the others."""
    lapsed = WeekMark(week="2026-W12", kind="certification-lapsed", label="certification lapsed")
    report, _ = report_for(extra_marks=(lapsed,))
    page = render_report(report)
    assert page.count('class="mark mark-certification-lapsed"') == 1
    assert "certification lapsed" in page


def test_a_week_flagged_certification_lapsed_is_marked(report):
    """A schedule week carrying certification_lapsed becomes a certification-lapsed mark."""
    week = report.weeks[1]
    lapsed = week.model_copy(update={"certification_lapsed": True})
    schedule = EpisodeSchedule(
        episode_id=str(report.summary.episode_id),
        client_ref="MRN-0042",
        client_ref_sealed=False,
        status="active",
        age_group="adult",
        level="2.1",
        weekly_hours=None,
        plan_weekly_hours=None,
        plan_modality_hours={},
        plan_started_at=None,
        discharged_at=None,
        taper=[],
        weeks=[report.weeks[0], lapsed],
    )
    assert [(m.week, m.kind) for m in week_marks(schedule)] == [(week.week, "certification-lapsed")]


def test_medications_and_take_home_supply_leave_voided_doses_out(report, page):
    """18 doses over six weeks; take-home 1 each Monday and Wednesday, 2 each Friday; the
    voided nineteenth dose (5 take-home) is not counted."""
    (supply,) = report.medications
    assert (supply.medication, supply.in_plan) == ("buprenorphine", True)
    assert (supply.doses_dispensed, supply.take_home_doses) == (18, 24)
    assert "<td>buprenorphine</td><td>yes</td><td>18</td><td>24</td>" in page


def test_entries_are_in_order_with_who_when_late_flags_and_corrections_both_ways(report, page):
    """Each entry has an anchor; the amended one links to its correction and back; LATE shown."""
    versions = [shown.entry.version for shown in report.entries]
    assert versions == list(range(1, report.summary.version + 1))
    amended = next(s for s in report.entries if s.status == "amended")
    (correction,) = amended.entry.corrected_by
    assert f'<tr id="v{amended.entry.version}"' in page
    row = re.search(rf'<tr id="v{amended.entry.version}".*?</tr>', page)
    assert row is not None
    assert f'amended by <a href="#v{correction}">v{correction}</a>' in row.group()
    assert "LATE" in row.group()
    assert "(recorded 180)" in row.group()
    back = re.search(rf'<tr id="v{correction}".*?</tr>', page)
    assert back is not None
    assert f'corrects <a href="#v{amended.entry.version}">' in back.group()
    assert any(s.status == "voided" for s in report.entries)
    assert "2026-03-02<br>09:00 -05:00" in page  # the assessment, local with its offset


def test_the_verification_result_and_an_optional_checkpoint(report, page):
    """The chain verifies; no checkpoint is claimed unless one is given."""
    assert report.verification.verdict == "ok"
    assert report.verification.entries_checked == report.summary.version
    assert "Checkpoint: none given" in page
    checkpoint = CheckpointRef(
        log_size=4096, root_hash="ab" * 32, made_at=START + timedelta(days=50), key_id="k1"
    )
    covered = render_report(report.model_copy(update={"checkpoint": checkpoint}))
    assert "Covered by the checkpoint of log size 4096" in covered


def test_as_of_reports_only_what_was_recorded_by_then():
    """--as-of a week in: fewer entries, fewer weeks, no step-down yet."""
    full, _ = report_for()
    early, _ = report_for(as_of=START + timedelta(days=8))
    assert early.summary.version < full.summary.version
    assert len(early.weeks) < len(full.weeks)
    assert early.taper == ()
    assert [s.entry.version for s in early.entries] == list(range(1, early.summary.version + 1))


# ---- in a real browser -------------------------------------------------------------


def chromium() -> str:
    """The chromium binary; skip without it only outside CI (CI=true must have it)."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail("CI is set but chromium is not installed (.ci/run installs it)")
    pytest.skip("chromium is not installed (apt-get install -y chromium); CI would fail here")


class RecordingProxy:
    """A local HTTP proxy that accepts connections and records what each asks for."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(2)
                try:
                    self.requests.append(connection.recv(512).split(b"\r\n")[0])
                except OSError:
                    self.requests.append(b"(no request line)")

    def page_requests(self) -> list[bytes]:
        return [r for r in self.requests if not BROWSER_OWN_HOSTS.search(r)]

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    recording = RecordingProxy()
    yield recording
    recording.close()


def run_chromium(
    page: Path, profile: Path, proxy: RecordingProxy, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--proxy-server=http://127.0.0.1:{proxy.port}",
            "--enable-logging=stderr",
            "--v=0",
            *extra,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def report_file(page: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def test_in_chromium_the_report_loads_without_console_messages_or_requests(
    report, report_file, tmp_path, proxy
):
    """--dump-dom: the chart's bars are in the DOM, nothing logged, nothing fetched."""
    done = run_chromium(report_file, tmp_path / "profile", proxy, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    assert console_messages(done.stderr) == []
    assert proxy.page_requests() == []
    dom = done.stdout
    assert dom.count('<rect class="attended"') == len(report.weeks)
    assert '<path class="target"' in dom
    assert "<script" not in dom


def test_in_chromium_the_report_renders_to_a_screenshot(report_file, tmp_path, proxy):
    """A 1200x1600 screenshot is written to tests/artifacts/ and is a real PNG."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "audit-report.png"
    shot.unlink(missing_ok=True)
    done = run_chromium(
        report_file, tmp_path / "profile", proxy, f"--screenshot={shot}", "--window-size=1200,1600"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a drawn page, not a blank one
    assert proxy.page_requests() == []
    print(f"screenshot of the audit report: {shot}")  # the artifact's path, shown by -rP


def test_the_browser_check_catches_a_page_that_fetches_or_logs(tmp_path, proxy):
    """The control: a page with a remote image and a script is caught by both checks."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><img src="http://example.com/x.png">'
        '<script>console.error("boom")</script></body></html>',
        encoding="utf-8",
    )
    done = run_chromium(bad, tmp_path / "profile", proxy, "--dump-dom")
    assert any(b"example.com" in request for request in proxy.page_requests())
    assert any("boom" in line for line in console_messages(done.stderr))


def test_in_chromium_the_report_prints_to_a_pdf_of_several_pages(report_file, tmp_path, proxy):
    """--print-to-pdf: a real PDF of several pages, nothing fetched."""
    pdf = tmp_path / "report.pdf"
    done = run_chromium(report_file, tmp_path / "profile", proxy, f"--print-to-pdf={pdf}")
    assert done.returncode == 0, done.stderr[-2000:]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page[^s]", data)) >= 3
    assert proxy.page_requests() == []


def test_the_report_comes_from_the_entries_not_the_shared_views(tmp_path):
    """Hours edited in the view tables change the schedule but not the report."""
    url = f"sqlite:///{tmp_path / 'iop.db'}"
    clock = SimulatedClock(START)
    with EpisodeService(url, clock=clock, timezone="America/New_York") as service:
        episode_id = eventful_episode(service, clock)
        ViewRunner(service).catch_up()
        before = build_report(
            service, episode_id, as_of=None, timezone="UTC", now=clock.now()
        ).weeks
        with sqlite3.connect(tmp_path / "iop.db") as db:
            db.execute("UPDATE iop_activity SET minutes = minutes * 10")
        views = ViewRunner(service).views
        edited = episode_schedule(views, str(episode_id), clock.now())
        after = build_report(service, episode_id, as_of=None, timezone="UTC", now=clock.now())
    assert edited is not None
    assert [w.attended_hours for w in edited.weeks] != [w.attended_hours for w in before]
    assert after.weeks == before


def test_iop_audit_report_writes_the_file(tmp_path):
    """The command writes one HTML file and says where, with the verification verdict."""
    url = eventful_store(tmp_path)
    out = tmp_path / "report.html"
    done = iop(
        "audit",
        "report",
        "MRN-0042",
        "--store",
        url,
        "--out",
        str(out),
        "--as-of",
        "2026-03-20T00:00Z",
        *DISCLOSED,
    )
    assert f"written to {out}; verification ok; disclosure " in done.stdout
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "as recorded by 2026-03-19 20:00 -04:00" in text


def eventful_store(folder: Path) -> str:
    """A SQLite store in ``folder`` holding the eventful episode (client MRN-0042)."""
    url = f"sqlite:///{folder / 'iop.db'}"
    clock = SimulatedClock(START)
    with EpisodeService(url, clock=clock, timezone="America/New_York") as service:
        eventful_episode(service, clock)
    return url


def accounting(url: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        iop("audit", "disclosures", "--store", url, "--json").stdout
    )
    return rows


def test_iop_audit_report_records_one_disclosure_of_the_file_it_wrote(tmp_path):
    """One audit-report-html disclosure: who, to whom, versions 1 to the report's, the sha256."""
    url = eventful_store(tmp_path)
    out = tmp_path / "report.html"
    done = iop(
        "audit", "report", "MRN-0042", "--store", url, "--out", str(out), *DISCLOSED, "--json"
    )
    written = json.loads(done.stdout)
    (row,) = accounting(url)
    assert written["disclosure"] == row
    assert (row["format"], row["actor_id"], row["recipient"], row["exception"]) == (
        "audit-report-html",
        "au.hill",
        "State surveyor",
        "audit-and-evaluation",
    )
    assert [(r["from_version"], r["to_version"]) for r in row["records"]] == [
        (1, written["version"])
    ]
    assert row["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("actor", "named"),
    [
        ("dr.lee:physician", "[disclosure-needs-consent-in-force] no consent recorded"),
        ("au.hill:auditor", "[role-may-not-issue-command] role auditor (actor au.hill)"),
    ],
)
def test_a_refused_audit_report_writes_no_file_and_records_nothing(tmp_path, actor, named):
    """--consent with none in force, or a role that may not disclose on it: exit 1, one line."""
    url = eventful_store(tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()
    basis = ("--recipient", "County EHR", "--purpose", "treatment", "--consent", "--as", actor)
    out = str(folder / "report.html")
    done = iop("audit", "report", "MRN-0042", "--store", url, "--out", out, *basis, expect=1)
    refusals = [line for line in done.stderr.splitlines() if not line.startswith("iop: note:")]
    assert len(refusals) == 1
    assert refusals[0].startswith("iop audit report: refused: ")
    assert named in refusals[0]
    assert done.stdout == ""
    assert list(folder.iterdir()) == []
    assert accounting(url) == []


def test_an_out_path_that_cannot_be_written_is_a_usage_error(tmp_path):
    """--out in a missing directory: exit 2, one line naming --out, no file anywhere."""
    url = eventful_store(tmp_path)
    out = tmp_path / "missing" / "report.html"
    done = iop(
        "audit", "report", "MRN-0042", "--store", url, "--out", str(out), *DISCLOSED, expect=2
    )
    errors = [line for line in done.stderr.splitlines() if not line.startswith("iop: note:")]
    assert errors == [f"iop: error: --out {out}: No such file or directory"]
    assert not out.parent.exists()
    assert accounting(url) == []


def test_the_report_file_is_readable_by_its_owner_only(tmp_path):
    """Clinical text: the written report has mode 0600."""
    url = eventful_store(tmp_path)
    out = tmp_path / "report.html"
    iop("audit", "report", "MRN-0042", "--store", url, "--out", str(out), *DISCLOSED)
    assert out.stat().st_mode & 0o777 == 0o600


def test_an_episode_with_a_changed_entry_gets_no_report(tmp_path):
    """A byte changed in a late dose: the report is refused in one line naming the episode and
    the version, exit 4, and no file is written."""
    url = f"sqlite:///{tmp_path / 'iop.db'}"
    clock = SimulatedClock(START)
    with EpisodeService(url, clock=clock, timezone="America/New_York") as service:
        episode_id = eventful_episode(service, clock)
        dose = max(
            e.originator_version
            for e in service.history(episode_id)
            if e.type_name() == "MedicationDispensed"
        )
    tamper.replace_text(url, episode_id, dose, '"lot":"LOT-2603-07"', '"lot":"LOT-2603-08"')
    out = tmp_path / "report.html"
    refused = iop(
        "audit", "report", "MRN-0042", "--store", url, "--out", str(out), *DISCLOSED, expect=4
    )
    assert f"{episode_id} version {dose}" in refused.stderr.splitlines()[-1]
    assert "Traceback" not in refused.stderr
    assert refused.stdout == ""
    assert not out.exists()
    assert accounting(url) == []


def test_a_discharged_episode_names_its_teds_reason():
    """Discharged with TEDS reason 1: the summary reads '1 (treatment completed)'."""
    clock = SimulatedClock(START)
    with EpisodeService("memory://", clock=clock, timezone="America/New_York") as service:
        episode_id = eventful_episode(service, clock)
        service.discharge(factories.discharge(episode_id, advance(clock, hours=1)))
        report = build_report(
            service, episode_id, as_of=None, timezone="America/New_York", now=clock.now()
        )
    page = render_report(report)
    assert "<dt>Discharge reason (TEDS)</dt><dd>1 (treatment completed)</dd>" in page
    assert report.weeks[-1].partial  # the discharge week


def test_a_time_that_is_not_iso_8601_is_a_usage_error_naming_as_of(tmp_path):
    """--as-of banana: exit 2, a line naming --as-of, no file written."""
    out = tmp_path / "report.html"
    url = f"sqlite:///{tmp_path / 'iop.db'}"
    done = iop(
        "audit",
        "report",
        "X",
        "--store",
        url,
        "--as-of",
        "banana",
        "--out",
        str(out),
        *DISCLOSED,
        expect=2,
    )
    assert "--as-of" in done.stderr
    assert not out.exists()
    assert not (tmp_path / "iop.db").exists()


def test_the_report_names_the_checkpoint_that_covers_the_episode(tmp_path, monkeypatch):
    """With a checkpoint made after the entries, the report names its log size and root."""
    monkeypatch.setenv("IOP_INTEGRITY_KEY", TEST_KEY_TEXT)
    monkeypatch.delenv("IOP_WITNESS", raising=False)
    url = eventful_store(tmp_path)
    out = tmp_path / "before.html"
    iop("audit", "report", "MRN-0042", "--store", url, "--out", str(out), *DISCLOSED)
    assert "Checkpoint: none given for this report." in out.read_text(encoding="utf-8")
    made = iop("audit", "checkpoint", "--store", url).stdout
    size = re.search(r"size (\d+)", made)
    assert size is not None
    out = tmp_path / "after.html"
    iop("audit", "report", "MRN-0042", "--store", url, "--out", str(out), *DISCLOSED)
    assert f"Covered by the checkpoint of log size {size[1]}, root" in out.read_text(
        encoding="utf-8"
    )


def test_a_sealed_store_without_the_integrity_key_gets_no_report(tmp_path, monkeypatch):
    """The disclosure cannot be sealed without IOP_INTEGRITY_KEY: exit 4, no file, no disclosure."""
    monkeypatch.delenv("IOP_INTEGRITY_KEY", raising=False)
    url = f"sqlite:///{tmp_path / 'iop.db'}"
    clock = SimulatedClock(START)
    with EpisodeService(
        url, clock=clock, timezone="America/New_York", integrity_key=TEST_KEY
    ) as service:
        eventful_episode(service, clock)
    out = tmp_path / "report.html"
    done = iop(
        "audit", "report", "MRN-0042", "--store", url, "--out", str(out), *DISCLOSED, expect=4
    )
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("iop: error: ")
    assert "IOP_INTEGRITY_KEY is not set" in done.stderr
    assert list(tmp_path.glob("*.html*")) == []
    assert list(tmp_path.glob(".report.html*")) == []
    monkeypatch.setenv("IOP_INTEGRITY_KEY", TEST_KEY_TEXT)
    assert accounting(url) == []
