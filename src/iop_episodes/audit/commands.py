"""``iop audit checkpoint``, ``iop audit pubkey`` and ``iop audit prove``, and the witness check.

The read side owns the ``iop audit`` command group and registers these
into it (``register``); ``attest`` is what its ``iop audit verify`` calls
for ``--witness`` and ``--pubkey``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn
from uuid import UUID

from iop_episodes.application import arguments, problems
from iop_episodes.application.service import EpisodeService
from iop_episodes.audit.bundle import ProofUnavailable, prove_episode
from iop_episodes.audit.checkpoints import CheckpointMade, NoIntegrityKey, make_checkpoint
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


def cmd_checkpoint(args: argparse.Namespace) -> int:
    try:
        key = configured_key()
    except (NoIntegrityKey, IntegrityKeyError) as error:
        _fail("checkpoint", error)
    with EpisodeService(args.store, create=False) as service:
        made = make_checkpoint(service, key, configured_witness(args.witness))
    print(made.line())
    if made.refused is not None:
        print(f"not signed in from {made.refused}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_pubkey(args: argparse.Namespace) -> int:
    try:
        key = configured_key()
        added = args.out is not None and add_key(args.out, key)
    except (NoIntegrityKey, IntegrityKeyError, KeyFileError) as error:
        _fail("pubkey", error)
    print(key_line(key))
    if args.out is not None:
        print(f"{'added to' if added else 'already in'} {args.out}", file=sys.stderr)
    return EXIT_OK


def cmd_prove(args: argparse.Namespace) -> int:
    episode_id: UUID = args.episode
    with EpisodeService(args.store, create=False) as service:
        try:
            proven = prove_episode(service, episode_id)
        except ProofUnavailable as error:
            print(f"iop audit prove: {error}", file=sys.stderr)
            return EXIT_FAILED
    Path(args.out).write_text(json.dumps(proven.bundle, indent=1) + "\n", encoding="ascii")
    checkpoint = proven.bundle["checkpoint"]
    print(
        f"bundle: episode {episode_id}, {proven.entries} entries, checkpoint size "
        f"{checkpoint['size']} key {checkpoint['key_id']}, written to {args.out}"
    )
    if proven.not_yet_attested:
        print(f"not yet attested (left out): {proven.not_yet_attested} entries")
    return EXIT_OK


def register(audit_commands: Any) -> None:
    """Add checkpoint, pubkey and prove to the ``iop audit`` command group."""
    checkpoint = audit_commands.add_parser(
        "checkpoint", help="sign the log's Merkle root and append it to the witness"
    )
    arguments.add_store(checkpoint)
    checkpoint.add_argument("--witness", help="file or directory (default: $IOP_WITNESS)")
    checkpoint.set_defaults(handler=cmd_checkpoint)

    pubkey = audit_commands.add_parser("pubkey", help="the checkpoint key's id and public key")
    pubkey.add_argument("--out", help="add the key to this public key file")
    pubkey.set_defaults(handler=cmd_pubkey)

    prove = audit_commands.add_parser("prove", help="a proof bundle for one episode")
    prove.add_argument("episode", type=arguments.episode_id, help="the episode id")
    arguments.add_store(prove)
    prove.add_argument("--out", required=True, help="the bundle's JSON file")
    prove.set_defaults(handler=cmd_prove)
