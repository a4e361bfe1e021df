"""The main job: a reproducible simulation of a program through the service."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.integrity import store_digest, verify_store
from iop_episodes.entrypoints.demo import ProgramSimulation, demo_clock
from projections.candidates import ScheduleCandidates
from tests.cli import iop


def digest_of(clients: int, weeks: int, seed: int) -> str:
    clock = demo_clock()
    with EpisodeService("memory://", clock=clock) as service:
        ProgramSimulation(
            service,
            clock,
            clients=clients,
            weeks=weeks,
            seed=seed,
            candidates=ScheduleCandidates(service),
        ).run()
        return store_digest(service)


def test_same_seed_gives_the_same_digest():
    """Two fresh runs with one seed store the same bytes."""
    assert digest_of(10, 6, seed=3) == digest_of(10, 6, seed=3)


def test_another_seed_gives_another_digest():
    """The seed drives the simulation."""
    assert digest_of(10, 6, seed=3) != digest_of(10, 6, seed=4)


@pytest.fixture(scope="module")
def program() -> tuple[EpisodeService, Counter[str]]:
    clock = demo_clock()
    service = EpisodeService("memory://", clock=clock)
    result = ProgramSimulation(
        service, clock, clients=40, weeks=14, seed=11, candidates=ScheduleCandidates(service)
    ).run()
    return service, result.events_by_type


def test_demo_records_every_kind_of_entry(program):
    """Every episode entry type but revocations appears in a default-sized program."""
    _, by_type = program
    assert set(by_type) == {
        "Assessed",
        "PlanCreated",
        "SessionAttended",
        "MedicationDispensed",
        "ScreenResulted",
        "StepDown",
        "Recertified",
        "Discharged",
        "AftercareScheduled",
        "EntryCorrected",
        "ConsentRecorded",
    }


def test_seven_clients_in_eight_consent_and_the_rest_do_not(program):
    """Every client but each eighth records one consent for County EHR and treatment."""
    service, by_type = program
    assert (by_type["Assessed"], by_type["ConsentRecorded"]) == (40, 35)
    entries = [
        service.mapper.to_domain_event(n) for n in service.recorder.select_notifications(1, 100_000)
    ]
    consents = [e.payload for e in entries if type(e).__name__ == "ConsentRecorded"]
    assert {(c["recipient"], c["purpose"]) for c in consents} == {("County EHR", "treatment")}


def test_demo_histories_are_realistic(program):
    """Several TEDS reasons, take-home doses, unexpected positives, late entries."""
    service, _ = program
    entries = [
        entry
        for notification in service.recorder.select_notifications(1, 100_000)
        for entry in [service.mapper.to_domain_event(notification)]
    ]
    reasons = {e.payload["reason"] for e in entries if type(e).__name__ == "Discharged"}
    take_home = [e for e in entries if e.payload.get("take_home_doses", 0) > 0]
    pathways = {e.payload["entry_pathway"] for e in entries if type(e).__name__ == "Assessed"}
    late = [e for e in entries if e.timestamp - e.occurred_at > timedelta(hours=24)]
    positives = [
        e
        for e in entries
        if type(e).__name__ == "ScreenResulted"
        and any(
            result == "positive" and substance not in {"buprenorphine", "methadone"}
            for substance, result in e.payload["results"].items()
        )
    ]
    scheduler = {e.actor["role"] for e in entries if type(e).__name__ == "StepDown"}
    assert len(reasons) >= 2
    assert take_home
    assert len(pathways) >= 4
    assert late
    assert positives
    assert scheduler == {"scheduler"}


def test_demo_store_verifies(program):
    """Every chain in the demo's store verifies."""
    service, _ = program
    assert verify_store(service) == []


def test_cli_demo_prints_the_same_digest_in_fresh_stores(tmp_path: Path):
    """`iop demo` twice with one seed ends with the same store digest line."""
    lines = []
    for name in ("one.db", "two.db"):
        done = iop(
            "demo",
            "--store",
            f"sqlite:///{tmp_path / name}",
            "--clients",
            "8",
            "--weeks",
            "5",
            "--seed",
            "7",
        )
        lines.append(done.stdout.splitlines()[-1])
    assert lines[0] == lines[1]
    assert lines[0].startswith("store digest: ")
    assert len(lines[0].removeprefix("store digest: ")) == 64


def test_cli_demo_refuses_a_store_that_holds_events(tmp_path: Path):
    """The demo never mixes into a used store; --reset starts a SQLite one afresh."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    iop("demo", "--store", url, "--clients", "3", "--weeks", "2")
    refused = iop("demo", "--store", url, "--clients", "3", "--weeks", "2", expect=2)
    assert "--reset" in refused.stderr
    iop("demo", "--store", url, "--clients", "3", "--weeks", "2", "--reset")
