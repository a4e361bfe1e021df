"""Public key files: the checkpoint keys an auditor trusts, one a line.

Each line is ``<key id> <public key>``: the key id (16 hex digits, the
first 8 bytes of SHA-256 of the raw key) and the raw 32-byte Ed25519
public key in base64. Blank lines and lines starting with ``#`` are
ignored. A file listing several keys verifies checkpoints signed by any of
them, so checkpoints signed before a key rotation keep verifying.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from iop_episodes.infrastructure.keys import IntegrityKey, key_id_of


class KeyFileError(ValueError):
    """A public key file line that is not ``<key id> <base64 public key>``."""


def key_line(key: IntegrityKey) -> str:
    return f"{key.key_id} {base64.b64encode(key.public_key).decode('ascii')}"


def parse_keys(text: str, source: str = "public key file") -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        try:
            key_id, encoded = fields
            public_key = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            msg = f"{source} line {number}: expected '<key id> <base64 public key>'"
            raise KeyFileError(msg) from None
        if len(public_key) != 32 or key_id_of(public_key) != key_id:
            msg = f"{source} line {number}: key id {key_id} does not name that 32-byte key"
            raise KeyFileError(msg)
        keys[key_id] = public_key
    return keys


def read_keys(path: str) -> dict[str, bytes]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        msg = f"--pubkey {path}: {error.strerror}"
        raise KeyFileError(msg) from None
    return parse_keys(text, f"--pubkey {path}")


def add_key(path: str, key: IntegrityKey) -> bool:
    """Add ``key``'s line to the file unless it is there already; whether it was added."""
    file = Path(path)
    existing = parse_keys(file.read_text(encoding="utf-8")) if file.exists() else {}
    if key.key_id in existing:
        return False
    with file.open("a", encoding="ascii") as handle:
        handle.write(key_line(key) + "\n")
    return True
