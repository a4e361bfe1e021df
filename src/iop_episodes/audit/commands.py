"""``iop audit checkpoint`` and ``iop audit pubkey``, and the witness check.

The read side owns the ``iop audit`` command group and registers these
into it (``register``); ``attest`` is what its ``iop audit verify`` calls
for ``--witness`` and ``--pubkey``. ``iop audit prove`` is the read side's
too: a proof bundle leaves the program, so it records a disclosure
(``projections.exports``), and ``audit.bundle`` makes the bundle.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from pydantic import BaseModel

from iop_episodes.application import arguments, problems
from iop_episodes.application.output import Output, print_json
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.checkpoints import (
    Checkpoint,
    CheckpointMade,
    NoIntegrityKey,
    make_checkpoint,
)
from iop_episodes.audit.consistency import Attestation, verify_checkpoints
from iop_episodes.audit.keyring import KeyFileError, add_key, key_line, read_keys
from iop_episodes.audit.witness import Witness, WitnessMissing
from iop_episodes.infrastructure.keys import IntegrityKey, IntegrityKeyError
from iop_episodes.infrastructure.settings import integrity_key, witness_path

EXIT_OK, EXIT_FAILED = problems.EXIT_OK, problems.EXIT_FINDING


def configured_key() -> IntegrityKey:
    """The integrity key from ``IOP_INTEGRITY_KEY``; ``NoIntegrityKey`` when unset."""
    key = integrity_key()
    if key is None:
        raise NoIntegrityKey
    return key


def configured_witness(explicit: str | None) -> Witness | None:
    path = witness_path(explicit)
    return None if path is None else Witness.at(path)


def checkpoint_now(service: EpisodeService, witness: str | None = None) -> CheckpointMade:
    """A checkpoint with the configured key, appended to the configured witness."""
    return make_checkpoint(service, configured_key(), configured_witness(witness))


def attest(service: EpisodeService, witness: str, pubkey: str) -> Attestation:
    """The store against every checkpoint the witness at ``witness`` holds."""
    if not Path(witness).exists():
        msg = f"--witness {witness}: no such file or directory"
        raise WitnessMissing(msg)
    return verify_checkpoints(service, Witness.at(witness).lines(), read_keys(pubkey))


def _fail(command: str, error: Exception) -> NoReturn:
    raise problems.UsageProblem(f"audit {command}: {error}") from None


class CheckpointReport(Output):
    """``iop audit checkpoint --json``: the checkpoint made, and the entry it stopped at."""

    checkpoint: Checkpoint
    """As the store and the witness keep it (docs/proofs.md)."""
    signed_in: int
    """Entries this checkpoint added to the tree."""
    rebuilt: bool
    """The stored frontier matched no signed checkpoint, so every entry was read again."""
    witness: str | None
    """Where the line was appended (--witness or $IOP_WITNESS), or null."""
    not_signed_in_from: str | None
    """The first entry it would not sign in, and why (then the exit code is 1), or null."""


class PublicKey(Output):
    """``iop audit pubkey --json``: the checkpoint key's id and public key."""

    key_id: str
    public_key: str
    """Base64 of the 32-byte Ed25519 public key."""
    key_line: str
    """``<key id> <public key>``, the line of a public key file."""
    out: str | None
    added: bool | None
    """With --out: whether the line was added (false: the file already had it), else null."""


def cmd_checkpoint(args: argparse.Namespace) -> int:
    try:
        key = configured_key()
    except (NoIntegrityKey, IntegrityKeyError) as error:
        _fail("checkpoint", error)
    witness = witness_path(args.witness)
    with EpisodeService(args.store, create=False) as service:
        made = make_checkpoint(service, key, None if witness is None else Witness.at(witness))
    refused = None if made.refused is None else str(made.refused)
    if args.json:
        print_json(
            CheckpointReport(
                checkpoint=made.checkpoint,
                signed_in=made.signed_in,
                rebuilt=made.rebuilt,
                witness=witness,
                not_signed_in_from=refused,
            )
        )
    else:
        print(made.line())
    if refused is not None:
        print(f"not signed in from {refused}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_pubkey(args: argparse.Namespace) -> int:
    try:
        key = configured_key()
        added = args.out is not None and add_key(args.out, key)
    except (NoIntegrityKey, IntegrityKeyError, KeyFileError) as error:
        _fail("pubkey", error)
    line = key_line(key)
    if args.json:
        print_json(
            PublicKey(
                key_id=key.key_id,
                public_key=line.split()[1],
                key_line=line,
                out=args.out,
                added=None if args.out is None else added,
            )
        )
    else:
        print(line)
    if args.out is not None:
        print(f"{'added to' if added else 'already in'} {args.out}", file=sys.stderr)
    return EXIT_OK


JSON_MODELS: dict[str, type[BaseModel]] = {
    "audit checkpoint": CheckpointReport,
    "audit pubkey": PublicKey,
}
"""The ``--json`` shapes of the commands registered here, for ``iop schema``."""


def register(audit_commands: Any) -> None:
    """Add checkpoint and pubkey to the ``iop audit`` command group."""
    checkpoint = audit_commands.add_parser(
        "checkpoint", help="sign the log's Merkle root and append it to the witness"
    )
    arguments.add_store(checkpoint)
    checkpoint.add_argument("--witness", help="file or directory (default: $IOP_WITNESS)")
    arguments.add_json(checkpoint)
    checkpoint.set_defaults(handler=cmd_checkpoint)

    pubkey = audit_commands.add_parser("pubkey", help="the checkpoint key's id and public key")
    pubkey.add_argument("--out", help="add the key to this public key file")
    arguments.add_json(pubkey)
    pubkey.set_defaults(handler=cmd_pubkey)
