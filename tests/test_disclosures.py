"""42 CFR Part 2: consents, the basis of every export, one disclosure each, the accounting."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from pydantic import ValidationError

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.checkpoints import make_checkpoint
from iop_episodes.audit.integrity import notifications, verify_store
from iop_episodes.domain import errors
from iop_episodes.infrastructure.keys import IntegrityKey
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, open_episode, stored_count
from projections import audit, history_text
from projections.exports import (
    export_audit_report,
    export_fhir,
    export_fhir_many,
    export_teds,
    serialize,
)
from projections.exports.accounting import DISCLOSED_TOPIC, disclosures, three_years_before
from projections.runner import ViewRunner
from tests import tamper
from tests.exports_scenario import PHYSICIAN, START, scenario

TO_EHR = {"recipient": "County EHR", "purpose": "treatment", "actor": PHYSICIAN}
AUDITOR = {"id": "au.hill", "role": "auditor"}
AUDIT = {"recipient": "State", "purpose": "audit", "actor": AUDITOR}
ROLES = ["counselor", "therapist", "nurse", "physician", "program_director", "scheduler", "auditor"]
MAY_DISCLOSE = {
    "consent": {"physician", "program_director"},
    "medical-emergency": {"physician", "program_director"},
    "research": {"program_director"},
    "audit-and-evaluation": {"auditor", "program_director"},
    "court-order": {"program_director"},
}


def disclosed(service: EpisodeService) -> list[dict[str, object]]:
    return [
        service.mapper.to_domain_event(n).payload
        for n in notifications(service)
        if n.topic == DISCLOSED_TOPIC
    ]


def consenting(service: EpisodeService, clock: SimulatedClock, **consent: object) -> UUID:
    episode = active_episode(service, clock)
    service.record_session(factories.session(episode, clock.now()))
    service.record_consent(factories.consent(episode, clock.now(), **consent))
    return episode


def test_an_export_records_exactly_one_disclosure_naming_its_entries_and_bytes(service, clock):
    """Who, to whom, why, on which consent, versions 1-N, and the sha256 of the bytes sent."""
    episode = consenting(service, clock)
    bundle = export_fhir(service, episode, consent=True, command_id="export-1", **TO_EHR)
    (payload,) = disclosed(service)
    assert payload["recipient"] == "County EHR"
    assert payload["purpose"] == "treatment"
    assert payload["basis"] == "consent"
    assert payload["format"] == "fhir-r4-collection"
    assert payload["records"] == [
        {
            "episode_id": str(episode),
            "client_ref": "MRN-0001",
            "from_version": 1,
            "to_version": 4,
            "consent_version": 4,
        }
    ]
    assert payload["scope"] == ["admission_discharge", "sessions"]
    assert payload["checkpoint"] is None
    data = serialize(bundle)
    assert payload["sha256"] == hashlib.sha256(data).hexdigest()
    assert payload["size_bytes"] == len(data)


def test_many_episodes_and_a_teds_file_are_one_disclosure_each(service, clock):
    """Two bundles under one disclosure; a TEDS export is another."""
    first, second = consenting(service, clock), consenting(service, clock, purpose="Treatment ")
    export = export_fhir_many(service, [first, second], consent=True, **TO_EHR)
    assert len(export.bundles) == 2
    assert export.refused == {}
    today = clock.now().date()
    export_teds(
        service,
        kind="admission",
        start=today - timedelta(days=30),
        end=today,
        consent=True,
        **TO_EHR,
    )
    records = [[r["episode_id"] for r in p["records"]] for p in disclosed(service)]
    assert records == [[str(first), str(second)], [str(first), str(second)]]
    assert [p["format"] for p in disclosed(service)] == [
        "fhir-r4-collection",
        "teds-admissions-csv",
    ]


def test_without_consent_the_export_is_refused_and_nothing_is_recorded(service, clock):
    """No consent for that recipient: NoConsentInForce names the rule; the store is unchanged."""
    episode = consenting(service, clock, recipient="Another clinic")
    before = stored_count(service)
    with pytest.raises(errors.NoConsentInForce) as refused:
        export_fhir(service, episode, consent=True, **TO_EHR)
    assert refused.value.rule == "disclosure-needs-consent-in-force"
    assert refused.value.field == "consent"
    assert stored_count(service) == before


def test_a_revoked_consent_is_refused(service, clock):
    """After ConsentRevoked the same export is refused with ConsentWithdrawn."""
    episode = consenting(service, clock)
    service.revoke_consent(factories.revocation(episode, clock.now(), consent_version=4))
    before = stored_count(service)
    with pytest.raises(errors.ConsentWithdrawn) as refused:
        export_fhir(service, episode, consent=True, **TO_EHR)
    assert refused.value.rule == "consent-not-revoked"
    assert stored_count(service) == before


def test_an_expired_consent_is_refused(service, clock):
    """The day after expires_on (in the program's timezone) the consent is no basis."""
    episode = consenting(service, clock, expires_on=clock.now().date() + timedelta(days=2))
    clock.advance(timedelta(days=2))
    export_fhir(service, episode, consent=True, **TO_EHR)  # its last day still counts
    clock.advance(timedelta(days=1))
    before = stored_count(service)
    with pytest.raises(errors.ConsentExpired) as refused:
        export_fhir(service, episode, consent=True, **TO_EHR)
    assert refused.value.field == "expires_on"
    assert stored_count(service) == before


def test_a_consent_covers_only_its_scope(service, clock):
    """A consent for admission and discharge data allows TEDS but not the sessions in FHIR."""
    episode = consenting(service, clock, scope=["admission_discharge"])
    with pytest.raises(errors.ConsentOutOfScope) as refused:
        export_fhir(service, episode, consent=True, **TO_EHR)
    assert "sessions" in str(refused.value)
    today = clock.now().date()
    export = export_teds(
        service,
        kind="admission",
        start=today - timedelta(days=9),
        end=today,
        consent=True,
        **TO_EHR,
    )
    assert len(export.records) == 1
    assert len(disclosed(service)) == 1


def test_a_newer_consent_in_force_wins_over_a_revoked_one(service, clock):
    """Revoking one consent leaves a later one for the same recipient and purpose usable."""
    episode = consenting(service, clock)
    service.record_consent(factories.consent(episode, clock.now()))
    service.revoke_consent(factories.revocation(episode, clock.now(), consent_version=4))
    export_fhir(service, episode, consent=True, **TO_EHR)
    assert disclosed(service)[0]["records"][0]["consent_version"] == 5


def test_revocations_must_target_a_consent_not_yet_revoked(service, clock):
    """Revoking a session or a revoked consent raises ConsentInvalid and stores nothing."""
    episode = consenting(service, clock)
    with pytest.raises(errors.ConsentInvalid):
        service.revoke_consent(factories.revocation(episode, clock.now(), consent_version=3))
    service.revoke_consent(factories.revocation(episode, clock.now(), consent_version=4))
    before = stored_count(service)
    with pytest.raises(errors.ConsentInvalid) as refused:
        service.revoke_consent(factories.revocation(episode, clock.now(), consent_version=4))
    assert refused.value.field == "consent_version"
    assert stored_count(service) == before


def test_consent_may_be_recorded_after_discharge(service, clock):
    """Records of a finished episode still need a consent to leave."""
    episode = active_episode(service, clock)
    service.discharge(factories.discharge(episode, clock.now()))
    receipt = service.record_consent(factories.consent(episode, clock.now()))
    assert receipt.version == 4


@pytest.mark.parametrize("basis", sorted(MAY_DISCLOSE))
def test_every_role_against_every_disclosure_basis(service, clock, basis):
    """Allowed roles record one disclosure; the others raise PermissionDenied and record none."""
    episode = consenting(service, clock)
    for role in ROLES:
        actor = {"id": f"x.{role}", "role": role}
        how = {"consent": True} if basis == "consent" else {"exception": basis}
        before = len(disclosed(service))
        if role in MAY_DISCLOSE[basis]:
            export_fhir(
                service, episode, recipient="County EHR", purpose="treatment", actor=actor, **how
            )
            assert len(disclosed(service)) == before + 1, (basis, role)
        else:
            with pytest.raises(errors.PermissionDenied) as refused:
                export_fhir(
                    service,
                    episode,
                    recipient="County EHR",
                    purpose="treatment",
                    actor=actor,
                    **how,
                )
            assert refused.value.field == "actor.role"
            assert len(disclosed(service)) == before, (basis, role)


def on_basis(episode: UUID, at: object, basis: str, role: str) -> dict[str, object]:
    """A write-side disclosure of versions 1-4 of ``consenting``'s episode on ``basis``."""
    command = factories.disclosure(
        episode, at, to_version=4, actor={"id": f"x.{role}", "role": role}
    )
    command["command_id"] = f"{basis}-{role}"
    if basis == "consent":
        (record,) = command["records"]
        command.update(
            basis="consent",
            exception=None,
            recipient="County EHR",
            purpose="treatment",
            records=[{**record, "consent_version": 4}],
        )
    else:
        command["exception"] = basis
    return command


@pytest.mark.parametrize("basis", sorted(MAY_DISCLOSE))
def test_record_disclosure_checks_every_role_against_every_basis(service, clock, basis):
    """On the write side the README's table holds for each role and basis pair."""
    episode = consenting(service, clock)
    for role in ROLES:
        command = on_basis(episode, clock.now(), basis, role)
        before = stored_count(service)
        if role in MAY_DISCLOSE[basis]:
            service.record_disclosure(command)
            assert stored_count(service) == before + 1, (basis, role)
        else:
            with pytest.raises(errors.PermissionDenied) as refused:
                service.record_disclosure(command)
            assert refused.value.field == "actor.role"
            assert stored_count(service) == before, (basis, role)


@pytest.mark.parametrize("role", ["auditor", "program_director"])
def test_a_consent_basis_naming_an_exception_is_refused(service, clock, role):
    """basis consent with an exception set fails validation at exception and stores nothing."""
    episode = consenting(service, clock)
    command = on_basis(episode, clock.now(), "consent", role)
    command["exception"] = "audit-and-evaluation"
    before = stored_count(service)
    with pytest.raises(ValidationError) as refused:
        service.record_disclosure(command)
    assert refused.value.errors()[0]["loc"] == ("exception",)
    assert stored_count(service) == before


def test_an_exception_basis_must_name_its_exception(service, clock):
    """basis exception without an exception fails validation at exception and stores nothing."""
    episode = consenting(service, clock)
    command = {**on_basis(episode, clock.now(), "research", "program_director"), "exception": None}
    before = stored_count(service)
    with pytest.raises(ValidationError) as refused:
        service.record_disclosure(command)
    assert refused.value.errors()[0]["loc"] == ("exception",)
    assert stored_count(service) == before


def test_a_basis_must_be_exactly_one_known_exception_or_consent(service, clock):
    """Neither, both, or an unknown exception name is refused naming the field."""
    episode = consenting(service, clock)
    with pytest.raises(errors.DisclosureRefused) as neither:
        export_fhir(service, episode, **TO_EHR)
    assert neither.value.field == "basis"
    with pytest.raises(errors.DisclosureRefused):
        export_fhir(service, episode, consent=True, exception="research", **TO_EHR)
    with pytest.raises(errors.DisclosureRefused) as unknown:
        export_fhir(service, episode, exception="curiosity", **TO_EHR)
    assert unknown.value.field == "exception"
    assert disclosed(service) == []


def test_the_write_side_rechecks_the_consent_a_disclosure_names(service, clock):
    """record_disclosure refuses a consent version that is not the one in force."""
    episode = consenting(service, clock)
    record = {"episode_id": episode, "client_ref": "MRN-0001", "from_version": 1, "to_version": 4}
    command = {
        "actor": PHYSICIAN,
        "occurred_at": clock.now(),
        "command_id": "forged",
        "recipient": "County EHR",
        "purpose": "treatment",
        "basis": "consent",
        "format": "fhir-r4-collection",
        "scope": ["admission_discharge", "sessions"],
        "records": [{**record, "consent_version": 3}],
        "sha256": "0" * 64,
        "size_bytes": 1,
    }
    with pytest.raises(errors.NoConsentInForce):
        service.record_disclosure(command)
    first = service.record_disclosure({**command, "records": [{**record, "consent_version": 4}]})
    again = service.record_disclosure({**command, "records": [{**record, "consent_version": 4}]})
    assert (again.episode_id, again.replayed) == (first.episode_id, True)
    with pytest.raises(errors.IdempotencyKeyReused):
        service.record_disclosure(
            {**command, "records": [{**record, "consent_version": 4}], "size_bytes": 2}
        )
    assert len(disclosed(service)) == 1


@pytest.mark.parametrize(
    ("scope", "export_format"),
    [
        (["admission_discharge"], "fhir-r4-collection"),
        (["admission_discharge", "medications", "sessions"], "fhir-r4-collection"),
        (["admission_discharge", "sessions"], "teds-admissions-csv"),
    ],
)
def test_a_disclosure_scope_must_be_the_kinds_of_record_it_sends(
    service, clock, scope, export_format
):
    """A scope narrower or wider than the range's entries (TEDS: admission only) is refused."""
    episode = consenting(service, clock)
    command = on_basis(episode, clock.now(), "consent", "physician")
    before = stored_count(service)
    with pytest.raises(errors.DisclosureRefused) as refused:
        service.record_disclosure({**command, "scope": scope, "format": export_format})
    assert type(refused.value) is errors.DisclosureRefused
    assert refused.value.field == "scope"
    assert stored_count(service) == before


def test_a_teds_disclosure_needs_only_admission_and_discharge_consent(service, clock):
    """TEDS sends admission and discharge data, so a consent for just that is its basis."""
    episode = consenting(service, clock, scope=["admission_discharge"])
    command = on_basis(episode, clock.now(), "consent", "physician")
    receipt = service.record_disclosure(
        {**command, "scope": ["admission_discharge"], "format": "teds-admissions-csv"}
    )
    assert receipt.version == 1


def test_a_disclosure_must_name_the_episodes_own_client(service, clock):
    """A client_ref not the episode's would hide it from that client's accounting: refused."""
    episode = consenting(service, clock)
    command = factories.disclosure(episode, clock.now(), to_version=4)
    (record,) = command["records"]
    before = stored_count(service)
    with pytest.raises(errors.DisclosureRefused) as refused:
        service.record_disclosure({**command, "records": [{**record, "client_ref": "MRN-9999"}]})
    assert refused.value.field == "records"
    assert "MRN-0001" in str(refused.value)
    assert stored_count(service) == before
    receipt = service.record_disclosure(command)
    listed = [row.disclosure_id for row in disclosures(service, client="MRN-0001")]
    assert listed == [str(receipt.episode_id)]


@pytest.mark.parametrize(("first", "last"), [(1, 5), (3, 2), (0, 4)])
def test_a_disclosure_range_must_lie_within_the_episode(service, clock, first, last):
    """Versions past the episode's last, reversed or before 1 are refused; nothing is stored."""
    episode = consenting(service, clock)
    command = factories.disclosure(episode, clock.now(), to_version=4)
    (record,) = command["records"]
    before = stored_count(service)
    with pytest.raises((errors.DisclosureRefused, ValidationError)):
        service.record_disclosure(
            {**command, "records": [{**record, "from_version": first, "to_version": last}]}
        )
    assert stored_count(service) == before


def test_each_episodes_consent_is_checked_against_its_own_records(service, clock):
    """An episode without sessions leaves on a consent for admission data beside one with."""
    with_sessions = consenting(service, clock)
    without = open_episode(service, clock, client_ref="MRN-0002")
    service.record_consent(factories.consent(without, clock.now(), scope=["admission_discharge"]))
    export = export_fhir_many(service, [with_sessions, without], consent=True, **TO_EHR)
    assert (sorted(export.bundles), export.refused) == (sorted([with_sessions, without]), {})
    (payload,) = disclosed(service)
    assert payload["scope"] == ["admission_discharge", "sessions"]


def test_a_retried_disclosure_returns_its_first_receipt_after_a_revocation(service, clock):
    """The same command_id once its consent is revoked: the first receipt, nothing stored."""
    episode = consenting(service, clock)
    command = on_basis(episode, clock.now(), "consent", "physician")
    first = service.record_disclosure(command)
    service.revoke_consent(factories.revocation(episode, clock.now(), consent_version=4))
    before = stored_count(service)
    again = service.record_disclosure(command)
    assert (again.episode_id, again.version, again.replayed) == (first.episode_id, 1, True)
    assert stored_count(service) == before
    with pytest.raises(errors.ConsentWithdrawn):
        service.record_disclosure({**command, "command_id": "after-revocation"})


def test_disclosures_are_chained_verified_and_ignored_by_the_views(sqlite_url, clock):
    """A disclosure verifies like an episode, a changed byte is found, the views skip it."""
    with EpisodeService(sqlite_url, clock=clock) as service:
        episode = consenting(service, clock)
        export_fhir(service, episode, consent=True, command_id="export-7", **TO_EHR)
        runner = ViewRunner(service)
        runner.catch_up()
        assert verify_store(service) == []
        assert audit.verify(service, runner.views) == []
        assert [row.version for row in runner.views.episodes()] == [4]
        (row,) = disclosures(service)
        tamper.replace_text(sqlite_url, UUID(row.disclosure_id), 1, "County EHR", "County EHX")
    with EpisodeService(sqlite_url, clock=clock) as service:
        findings = verify_store(service)
    assert [(str(f.episode_id), f.version, f.problem) for f in findings] == [
        (row.disclosure_id, 1, "chain-mismatch")
    ]


def test_the_accounting_refuses_a_disclosure_whose_entry_does_not_verify(sqlite_url, clock):
    """An edited Disclosed entry raises EntryIntegrityError naming it; it is never listed."""
    with EpisodeService(sqlite_url, clock=clock) as service:
        episode = consenting(service, clock)
        export_fhir(service, episode, consent=True, command_id="export-8", **TO_EHR)
        (row,) = disclosures(service)
    tamper.replace_text(sqlite_url, UUID(row.disclosure_id), 1, "County EHR", "County EHX")
    with (
        EpisodeService(sqlite_url, clock=clock) as service,
        pytest.raises(errors.EntryIntegrityError) as refused,
    ):
        disclosures(service)
    assert (str(refused.value.episode_id), refused.value.version) == (row.disclosure_id, 1)


def test_the_accounting_lists_a_clients_disclosures_and_no_one_elses(service, clock):
    """--client keeps only that client's records; --since drops older disclosures."""
    mine = consenting(service, clock, expires_on=date(2030, 1, 1))
    other = active_episode(service, clock)
    service.assess(factories.assessment(clock.now(), client_ref="MRN-0002"))
    export_fhir_many(
        service,
        [mine, other],
        exception="audit-and-evaluation",
        actor=AUDITOR,
        recipient="State",
        purpose="audit",
    )
    clock.advance(timedelta(days=400))
    export_fhir(service, mine, consent=True, **TO_EHR)
    rows = disclosures(service, client="MRN-0001")
    assert [len(row.records) for row in rows] == [2, 1]
    assert {r["client_ref"] for row in rows for r in row.records} == {"MRN-0001"}
    later = disclosures(service, since=clock.now() - timedelta(days=1))
    assert [row.recipient for row in later] == ["County EHR"]
    assert three_years_before(date(2028, 2, 29)) == date(2025, 2, 28)


def iop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iop_episodes.entrypoints.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_exports_consenting_episodes_names_the_rest_and_accounts_for_it(tmp_path: Path):
    """--consent: a file per consenting episode, the others named, exit 1; then the accounting."""
    url = f"sqlite:///{tmp_path / 'iop.db'}"
    clock = SimulatedClock(START)
    with EpisodeService(url, clock=clock) as service:
        scenario_episode = scenario(service, clock)
        clock.set(START + timedelta(days=60))
        silent = service.assess(factories.assessment(clock.now(), client_ref="MRN-0009")).episode_id
    out = tmp_path / "bundles"
    ehr = ["--recipient", "County EHR", "--purpose", "treatment", "--store", url]
    done = iop(
        "export", "fhir", "--all", "--out", str(out), "--consent", "--as", "dr.lee:physician", *ehr
    )
    assert done.returncode == 1, done.stderr
    assert f"episode {silent}" in done.stderr
    assert "[disclosure-needs-consent-in-force]" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{scenario_episode}.json"]
    refused = tmp_path / "refused"
    none = iop(
        "export",
        "fhir",
        str(silent),
        "--out",
        str(refused),
        "--consent",
        "--as",
        "dr.lee:physician",
        *ehr,
    )
    assert none.returncode == 1
    assert not refused.exists()
    audit_args = ["--recipient", "State", "--purpose", "audit", "--store", url]
    every = iop(
        "export",
        "fhir",
        "--all",
        "--exception",
        "audit-and-evaluation",
        "--as",
        "au.hill:auditor",
        *audit_args,
    )
    assert every.returncode == 0, every.stderr
    assert len(every.stdout.splitlines()) == 2
    teds = iop(
        "export", "teds", "--discharges", "--from", "2026-01-01", "--to", "2026-12-31",
        "--exception", "audit-and-evaluation", "--as", "au.hill:auditor", *audit_args,
    )  # fmt: skip
    assert teds.returncode == 0, teds.stderr
    assert [line.split(",")[7] for line in teds.stdout.splitlines()[1:]] == ["4", "1"]
    accounting = iop("audit", "disclosures", "--json", "--store", url)
    rows = json.loads(accounting.stdout)
    assert [row["format"] for row in rows] == [
        "fhir-r4-collection",
        "fhir-r4-collection",
        "teds-discharges-csv",
    ]
    one_client = json.loads(
        iop("audit", "disclosures", "--json", "--client", "MRN-0009", "--store", url).stdout
    )
    assert [len(row["records"]) for row in one_client] == [1]


def test_cli_teds_on_consent_writes_the_consenting_records_and_names_the_rest(tmp_path: Path):
    """--consent: the file holds the consenting episode's records; the other is named, exit 1."""
    url = f"sqlite:///{tmp_path / 'iop.db'}"
    clock = SimulatedClock(START)
    with EpisodeService(url, clock=clock) as service:
        scenario(service, clock)
        silent = active_episode(service, clock)
    out = tmp_path / "teds.csv"
    done = iop(
        "export", "teds", "--admissions", "--from", "2026-01-01", "--to", "2026-12-31",
        "--out", str(out), "--consent", "--as", "dr.lee:physician",
        "--recipient", "County EHR", "--purpose", "treatment", "--store", url,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"episode {silent}" in done.stderr
    with EpisodeService(url) as service:
        (row,) = disclosures(service)
    summary = done.stderr.splitlines()[-1]
    assert summary == (
        f"iop export teds: 2 records exported, 1 episodes refused; disclosure {row.disclosure_id}"
    )
    assert len(out.read_text().splitlines()) == 3


@pytest.mark.slow
def test_cli_since_keeps_episodes_recorded_since_then(tmp_path: Path):
    """--since after every entry exports nothing and records no disclosure; before, all."""
    url = f"sqlite:///{tmp_path / 'iop.db'}"
    clock = SimulatedClock(START)
    with EpisodeService(url, clock=clock) as service:
        scenario(service, clock)
    args = ["--recipient", "State", "--purpose", "audit", "--exception", "audit-and-evaluation"]
    args += ["--as", "au.hill:auditor", "--store", url]
    later = iop("export", "fhir", "--all", "--since", "2026-05-01T00:00Z", *args)
    assert (later.returncode, later.stdout) == (0, "")
    assert "0 bundles exported" in later.stderr
    earlier = iop("export", "fhir", "--all", "--since", "2026-04-01T00:00Z", *args)
    assert len(earlier.stdout.splitlines()) == 1
    with EpisodeService(url) as service:
        assert len(disclosed(service)) == 1


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"recipient": "   "}, "recipient"),
        ({"recipient": "x" * 201}, "recipient"),
        ({"purpose": ""}, "purpose"),
        ({"scope": []}, "scope"),
        ({"scope": ["everything"]}, "scope"),
        ({"expires_on": "next year"}, "expires_on"),
        ({"note": "bell\x07"}, "note"),
    ],
)
def test_a_malformed_consent_names_its_field_and_stores_nothing(service, clock, override, field):
    """Blank or over-long recipient and purpose, an empty or unknown scope, a bad date."""
    episode = active_episode(service, clock)
    before = stored_count(service)
    with pytest.raises(ValidationError) as refused:
        service.record_consent({**factories.consent(episode, clock.now()), **override})
    assert refused.value.errors()[0]["loc"][0] == field
    assert stored_count(service) == before


def test_a_disclosure_of_an_episode_id_is_not_an_episode(service, clock):
    """Reading a disclosure's id as an episode raises EpisodeNotFound."""
    episode = consenting(service, clock)
    export_fhir(service, episode, consent=True, command_id="export-9", **TO_EHR)
    (row,) = disclosures(service)
    with pytest.raises(errors.EpisodeNotFound):
        service.episode(UUID(row.disclosure_id))


@pytest.mark.parametrize("export", ["fhir", "fhir-many", "audit-report"])
@pytest.mark.parametrize("odd_id", ["unknown", "disclosure"])
def test_exporting_an_id_that_is_no_episode_raises_episode_not_found(
    service, clock, export, odd_id
):
    """An unknown id, or a disclosure's, is EpisodeNotFound naming it; nothing is recorded."""
    episode = consenting(service, clock)
    first = export_fhir_many(service, [episode], exception="audit-and-evaluation", **AUDIT)
    assert first.disclosure is not None
    wanted = UUID(int=7) if odd_id == "unknown" else first.disclosure.episode_id
    before = stored_count(service)
    how = {"exception": "audit-and-evaluation", **AUDIT}
    calls = {
        "fhir": lambda: export_fhir(service, wanted, **how),
        "fhir-many": lambda: export_fhir_many(service, [episode, wanted], **how),
        "audit-report": lambda: export_audit_report(service, wanted, **how),
    }
    with pytest.raises(errors.EpisodeNotFound, match=f"no episode {wanted}"):
        calls[export]()
    assert stored_count(service) == before


@pytest.mark.parametrize("output", ["jsonl", "csv"])
def test_an_audit_report_is_the_audit_history_and_one_disclosure(service, clock, output):
    """export_audit_report gives the bytes iop audit history gives, and records them."""
    episode = consenting(service, clock)
    service.correct_entry(factories.correction(episode, clock.now(), target_version=3))
    data = export_audit_report(
        service,
        episode,
        exception="audit-and-evaluation",
        actor=AUDITOR,
        recipient="State",
        purpose="audit",
        output=output,
    )
    runner = ViewRunner(service)
    runner.catch_up()
    entries = audit.history(runner.views, str(episode))
    expected = (
        audit.to_jsonl(entries)
        if output == "jsonl"
        else history_text.to_csv(entries, "MRN-0001", service.program_timezone)
    )
    assert data == expected.encode("utf-8")
    (payload,) = disclosed(service)
    assert payload["format"] == f"audit-report-{output}"
    assert payload["sha256"] == hashlib.sha256(data).hexdigest()
    assert payload["records"][0]["to_version"] == 5


def test_consents_show_in_the_audit_view_and_change_no_hours(service, clock):
    """The audit history lists ConsentRecorded and ConsentRevoked; the schedule ignores them."""
    episode = consenting(service, clock)
    runner = ViewRunner(service)
    runner.catch_up()
    (before,) = runner.views.episodes()
    activity = runner.views.activity(str(episode))
    service.revoke_consent(factories.revocation(episode, clock.now(), consent_version=4))
    runner.catch_up()
    types = [entry.event_type for entry in audit.history(runner.views, str(episode))]
    assert types[-2:] == ["ConsentRecorded", "ConsentRevoked"]
    (after,) = runner.views.episodes()
    assert (after.weekly_hours, after.status, after.version) == (
        before.weekly_hours,
        before.status,
        5,
    )
    assert runner.views.activity(str(episode)) == activity


def test_a_consent_is_revoked_not_corrected(service, clock):
    """EntryCorrected refuses a consent entry: a consent ends by its own revocation."""
    episode = consenting(service, clock)
    with pytest.raises(errors.CorrectionInvalid) as refused:
        service.correct_entry(factories.correction(episode, clock.now(), target_version=4))
    assert "ConsentRecorded" in str(refused.value)


@pytest.mark.slow
def test_cli_audit_report_prints_the_history_and_is_accounted_for(tmp_path: Path):
    """iop export audit-report prints what iop audit history prints; the accounting lists it."""
    url = f"sqlite:///{tmp_path / 'iop.db'}"
    clock = SimulatedClock(START)
    with EpisodeService(url, clock=clock) as service:
        episode = scenario(service, clock)
    basis = ["--exception", "audit-and-evaluation", "--as", "au.hill:auditor"]
    report = iop(
        "export",
        "audit-report",
        str(episode),
        "--recipient",
        "State",
        "--purpose",
        "audit",
        *basis,
        "--store",
        url,
    )
    assert report.returncode == 0, report.stderr
    history = iop("audit", "history", str(episode), "--format", "jsonl", "--store", url)
    assert report.stdout == history.stdout
    refused = iop(
        "export",
        "audit-report",
        str(episode),
        "--recipient",
        "State",
        "--purpose",
        "audit",
        "--consent",
        "--as",
        "dr.lee:physician",
        "--store",
        url,
    )
    assert refused.returncode == 1
    assert "[disclosure-needs-consent-in-force]" in refused.stderr
    accounting = iop("audit", "disclosures", "--store", url)
    assert "audit-report-jsonl" in accounting.stdout
    assert accounting.stdout.endswith("1 disclosures\n")


def test_a_disclosure_names_the_checkpoint_that_covers_its_entries(sqlite_url, clock):
    """With a checkpoint over the disclosed entries, the Disclosed entry records its root."""
    key = IntegrityKey(bytes(range(32)))
    with EpisodeService(sqlite_url, clock=clock, integrity_key=key) as service:
        episode = consenting(service, clock)
        made = make_checkpoint(service, key, None)
        export_fhir(service, episode, consent=True, command_id="export-cp", **TO_EHR)
        later = consenting(service, clock)  # after the checkpoint: not yet attested
        export_fhir(service, later, consent=True, command_id="export-late", **TO_EHR)
        first, second = disclosed(service)
    assert first["checkpoint"] == made.checkpoint.root
    assert second["checkpoint"] is None
