"""Proof bundles and HTML audit reports leave the program: one disclosure each, a refusal none."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from iop_episodes.application.clock import SimulatedClock
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.bundle import ProofUnavailable
from iop_episodes.audit.checkpoints import make_checkpoint
from iop_episodes.audit.integrity import notifications
from iop_episodes.domain import errors
from iop_episodes.testing import factories
from iop_episodes.testing.helpers import active_episode, stored_count
from projections.exports import export_audit_report_html, export_proof_bundle
from projections.exports.accounting import DISCLOSED_TOPIC, disclosures
from projections.exports.api import bundle_bytes
from projections.report_html import render_report
from tests.exports_scenario import PHYSICIAN
from tests.sealing import TEST_KEY

AUDITOR = {"id": "au.hill", "role": "auditor"}
AUDIT: dict[str, Any] = {
    "recipient": "State",
    "purpose": "audit",
    "actor": AUDITOR,
    "exception": "audit-and-evaluation",
}
TO_EHR: dict[str, Any] = {
    "recipient": "County EHR",
    "purpose": "treatment",
    "actor": PHYSICIAN,
    "consent": True,
}
EXPORTS: dict[str, Callable[..., Any]] = {
    "proof-bundle": export_proof_bundle,
    "audit-report-html": export_audit_report_html,
}


@pytest.fixture
def keyed(sqlite_url: str, clock: SimulatedClock) -> Iterator[EpisodeService]:
    """A service that seals every entry, so its checkpoints sign them in."""
    with EpisodeService(
        sqlite_url, clock=clock, timezone="America/New_York", integrity_key=TEST_KEY
    ) as service:
        yield service


def disclosed(service: EpisodeService) -> list[dict[str, Any]]:
    return [
        service.mapper.to_domain_event(n).payload
        for n in notifications(service)
        if n.topic == DISCLOSED_TOPIC
    ]


def consenting(service: EpisodeService, clock: SimulatedClock, **consent: Any) -> UUID:
    """An episode of four entries: assessment, plan, a session and a consent (version 4)."""
    episode = active_episode(service, clock)
    service.record_session(factories.session(episode, clock.now()))
    service.record_consent(factories.consent(episode, clock.now(), **consent))
    return episode


def checkpointed(service: EpisodeService, clock: SimulatedClock, **consent: Any) -> UUID:
    """A consenting episode under a checkpoint, then one more session not yet attested."""
    episode = consenting(service, clock, **consent)
    make_checkpoint(service, TEST_KEY, None)
    clock.advance(timedelta(hours=1))
    service.record_session(factories.session(episode, clock.now()))
    return episode


def test_a_proof_bundle_discloses_exactly_the_versions_it_carries(keyed, clock):
    """Versions 1-4 under the checkpoint (not the fifth), its root, and the bytes' sha256."""
    episode = checkpointed(keyed, clock)
    export = export_proof_bundle(keyed, episode, **AUDIT)
    (payload,) = disclosed(keyed)
    assert export.proven.entries == 4
    assert export.proven.not_yet_attested == 1
    assert payload["format"] == "proof-bundle"
    assert payload["basis"] == "exception"
    assert payload["exception"] == "audit-and-evaluation"
    assert payload["records"] == [
        {
            "episode_id": str(episode),
            "client_ref": "MRN-0001",
            "from_version": 1,
            "to_version": 4,
            "consent_version": None,
        }
    ]
    assert payload["scope"] == ["admission_discharge", "sessions"]
    assert payload["checkpoint"] == export.proven.bundle["checkpoint"]["root"]
    assert export.data == bundle_bytes(export.proven.bundle)
    assert payload["sha256"] == hashlib.sha256(export.data).hexdigest()
    assert payload["size_bytes"] == len(export.data)
    assert export.disclosure.episode_id == UUID(disclosures(keyed)[0].disclosure_id)


def test_a_proof_bundle_on_consent_names_the_consent_it_left_under(keyed, clock):
    """--consent: the consent in force for that recipient and purpose, version 4."""
    episode = checkpointed(keyed, clock)
    export_proof_bundle(keyed, episode, **TO_EHR)
    (payload,) = disclosed(keyed)
    assert (payload["basis"], payload["records"][0]["consent_version"]) == ("consent", 4)


def test_an_html_report_discloses_versions_up_to_its_as_of(keyed, clock):
    """As of before the fifth entry: versions 1-4, covered by the checkpoint; the bytes' sha256."""
    episode = checkpointed(keyed, clock)
    as_of = clock.now() - timedelta(minutes=1)  # the fifth was recorded an hour after the fourth
    export = export_audit_report_html(keyed, episode, as_of=as_of, **AUDIT)
    (payload,) = disclosed(keyed)
    assert export.report.summary.version == 4
    assert payload["format"] == "audit-report-html"
    assert payload["records"][0]["to_version"] == 4
    assert payload["scope"] == ["admission_discharge", "sessions"]
    assert export.report.checkpoint is not None
    assert payload["checkpoint"] == export.report.checkpoint.root_hash
    assert export.data == render_report(export.report).encode("utf-8")
    assert payload["sha256"] == hashlib.sha256(export.data).hexdigest()


def test_an_html_report_of_entries_not_yet_attested_names_no_checkpoint(keyed, clock):
    """The whole episode, its fifth entry after the checkpoint: checkpoint null, versions 1-5."""
    episode = checkpointed(keyed, clock)
    export = export_audit_report_html(keyed, episode, **TO_EHR)
    (payload,) = disclosed(keyed)
    assert export.report.checkpoint is None
    assert payload["checkpoint"] is None
    assert payload["records"][0]["to_version"] == 5
    assert payload["records"][0]["consent_version"] == 4


def _revoked(service: EpisodeService, clock: SimulatedClock) -> UUID:
    episode = checkpointed(service, clock)
    service.revoke_consent(factories.revocation(episode, clock.now(), consent_version=4))
    make_checkpoint(service, TEST_KEY, None)
    return episode


def _expired(service: EpisodeService, clock: SimulatedClock) -> UUID:
    episode = checkpointed(service, clock, expires_on=clock.now().date() + timedelta(days=2))
    clock.advance(timedelta(days=3))
    return episode


REFUSALS: dict[str, tuple[Callable[[EpisodeService, SimulatedClock], UUID], type[Exception]]] = {
    "no consent": (
        lambda s, c: checkpointed(s, c, recipient="Another clinic"),
        errors.NoConsentInForce,
    ),
    "revoked": (_revoked, errors.ConsentWithdrawn),
    "expired": (_expired, errors.ConsentExpired),
    "out of scope": (
        lambda s, c: checkpointed(s, c, scope=["admission_discharge"]),
        errors.ConsentOutOfScope,
    ),
}


@pytest.mark.parametrize("export", sorted(EXPORTS))
@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_an_export_without_a_consent_in_force_is_refused_and_records_nothing(
    keyed, clock, export, case
):
    """No consent, a revoked, an expired or a too narrow one: the refusal, nothing stored."""
    make_episode, refusal = REFUSALS[case]
    episode = make_episode(keyed, clock)
    before = stored_count(keyed)
    with pytest.raises(refusal):
        EXPORTS[export](keyed, episode, **TO_EHR)
    assert stored_count(keyed) == before


@pytest.mark.parametrize("export", sorted(EXPORTS))
@pytest.mark.parametrize(
    ("role", "basis"),
    [("auditor", {"consent": True}), ("physician", {"exception": "audit-and-evaluation"})],
)
def test_a_role_that_may_not_disclose_on_that_basis_is_refused(keyed, clock, export, role, basis):
    """An auditor on consent, a physician under audit and evaluation: PermissionDenied."""
    episode = checkpointed(keyed, clock)
    before = stored_count(keyed)
    how = {"recipient": "County EHR", "purpose": "treatment", **basis}
    with pytest.raises(errors.PermissionDenied):
        EXPORTS[export](keyed, episode, actor={"id": "x.who", "role": role}, **how)
    assert stored_count(keyed) == before


def test_no_bundle_without_a_checkpoint_and_nothing_recorded(keyed, clock):
    """No checkpoint yet: ProofUnavailable, and no disclosure."""
    episode = consenting(keyed, clock)
    before = stored_count(keyed)
    with pytest.raises(ProofUnavailable, match="no checkpoint yet"):
        export_proof_bundle(keyed, episode, **AUDIT)
    assert stored_count(keyed) == before


def test_a_retried_proof_export_with_its_command_id_records_once(keyed, clock):
    """The same command_id twice: one disclosure."""
    episode = checkpointed(keyed, clock)
    first = export_proof_bundle(keyed, episode, command_id="prove-1", **AUDIT)
    again = export_proof_bundle(keyed, episode, command_id="prove-1", **AUDIT)
    assert first.disclosure.episode_id == again.disclosure.episode_id
    assert len(disclosed(keyed)) == 1
