"""The store against the checkpoints a witness kept: append-only, or a finding.

One pass over the log in order rebuilds the Merkle tree from the stored
entries (not from the store's frontier, which is only a cache) and, at
each checkpoint's size, compares the root with the checkpoint's. A
checkpoint counts only when its signature holds under a key the auditor
listed for its key id. Truncating, deleting, inserting, reordering or
re-chaining anything a checkpoint covers changes the root at its size.
Entries past the largest good checkpoint are "not yet attested", which is
a count, not a failure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from pydantic import ValidationError

from iop_episodes.audit.checkpoints import Checkpoint
from iop_episodes.audit.merkle import Frontier, leaf_data, leaf_hash
from iop_episodes.domain.canonical import split_sealed
from iop_episodes.infrastructure.legacy import format1_link, is_format1
from iop_episodes.infrastructure.rawlog import log_pages

if TYPE_CHECKING:
    from iop_episodes.application.service import EpisodeService
    from iop_episodes.audit.witness import WitnessLine

CheckpointProblem = Literal[
    "unreadable-checkpoint", "unknown-key", "bad-signature", "truncated", "root-mismatch"
]


@dataclass(frozen=True)
class CheckpointFinding:
    where: str
    problem: CheckpointProblem
    detail: str

    def __str__(self) -> str:
        return f"checkpoint {self.where}: {self.problem}: {self.detail}"


@dataclass(frozen=True)
class Attestation:
    """What the witness's checkpoints prove about the store."""

    checkpoints: int
    entries: int
    attested: int  # leaves covered by the largest checkpoint that holds
    findings: list[CheckpointFinding] = field(default_factory=list)

    @property
    def not_yet_attested(self) -> int:
        return max(self.entries - self.attested, 0)

    def line(self) -> str:
        verdict = "ok" if not self.findings else f"FAILED ({len(self.findings)} findings)"
        return (
            f"checkpoints: {verdict}: {self.checkpoints} checked, {self.attested} of "
            f"{self.entries} entries attested, {self.not_yet_attested} not yet attested"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "checkpoints": self.checkpoints,
            "entries": self.entries,
            "attested": self.attested,
            "not_yet_attested": self.not_yet_attested,
            "findings": [
                {"where": f.where, "problem": f.problem, "detail": f.detail} for f in self.findings
            ],
        }


def verify_checkpoints(
    service: EpisodeService, lines: Iterable[WitnessLine], keys: dict[str, bytes]
) -> Attestation:
    """Check every checkpoint line's signature and its root against the store's tree."""
    findings: list[CheckpointFinding] = []
    signed: list[tuple[str, Checkpoint]] = []
    count = 0
    for line in lines:
        count += 1
        checkpoint = _signed(line, keys, findings)
        if checkpoint is not None:
            signed.append((line.where, checkpoint))
    entries, roots = _roots_at(service, {checkpoint.size for _, checkpoint in signed})
    attested = 0
    for where, checkpoint in signed:
        held = roots.get(checkpoint.size)
        if held is None:
            findings.append(
                CheckpointFinding(
                    where,
                    "truncated",
                    f"signed for {checkpoint.size} entries, the store holds {entries}",
                )
            )
        elif held != checkpoint.root:
            findings.append(
                CheckpointFinding(
                    where,
                    "root-mismatch",
                    f"the first {checkpoint.size} entries hash to {held}, "
                    f"signed root {checkpoint.root}: history it covers was changed",
                )
            )
        else:
            attested = max(attested, checkpoint.size)
    return Attestation(count, entries, attested, findings)


def _signed(
    line: WitnessLine, keys: dict[str, bytes], findings: list[CheckpointFinding]
) -> Checkpoint | None:
    try:
        checkpoint = Checkpoint.model_validate_json(line.text)
    except ValidationError as error:
        reason = error.errors()[0]
        where = ".".join(str(part) for part in reason["loc"]) or "line"
        findings.append(
            CheckpointFinding(line.where, "unreadable-checkpoint", f"{where}: {reason['msg']}")
        )
        return None
    public_key = keys.get(checkpoint.key_id)
    if public_key is None:
        findings.append(
            CheckpointFinding(
                line.where, "unknown-key", f"key {checkpoint.key_id} is not in the public key file"
            )
        )
        return None
    if not checkpoint.signature_holds(public_key):
        findings.append(
            CheckpointFinding(
                line.where,
                "bad-signature",
                f"the signature does not hold for key {checkpoint.key_id}",
            )
        )
        return None
    return checkpoint


def _roots_at(service: EpisodeService, sizes: set[int]) -> tuple[int, dict[int, str]]:
    """How many entries the store holds, and its tree's root (hex) at each size it reaches."""
    frontier = Frontier()
    roots = {0: frontier.root().hex()} if 0 in sizes else {}
    plain = service.mapper.plaintext
    for page in log_pages(service.recorder):
        for episode, version, _, state, _ in page:
            link = leaf_link(plain, state)
            frontier.append(leaf_hash(leaf_data(frontier.size, UUID(episode), version, link)))
            if frontier.size in sizes:
                roots[frontier.size] = frontier.root().hex()
    return frontier.size, roots


def leaf_link(plain: Any, state: bytes) -> bytes:
    """The link a row stores; for an unreadable row, a stand-in no checkpoint can match."""
    try:
        stored = plain(state)
        link = format1_link(stored) if is_format1(stored) else split_sealed(stored)[0]
        return bytes.fromhex(link)
    except Exception:  # noqa: BLE001  (any unreadable row just cannot match a signed root)
        return hashlib.sha256(b"unreadable" + state).digest()
