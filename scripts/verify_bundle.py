#!/usr/bin/env python3
"""Check an iop-episodes proof bundle offline, as a third party would (docs/proofs.md).

    python scripts/verify_bundle.py bundle.json --pubkey keys.txt

Uses the standard library and the ``cryptography`` package (Ed25519) only,
and imports nothing from iop-episodes. Checks, in order: the checkpoint's
signature under the key its key id names in the public key file; versions
1..n without a gap; each entry's chain link recomputed from its stored
bytes (docs/hash-chain.md); each leaf and its inclusion proof up to the
checkpoint's root (RFC 9162, 2.1.3.2). Exit 0 when everything holds, 1
naming the first thing that does not (an unreadable bundle or key file
included).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

CHECKPOINT_FORMAT = "iop-checkpoint-v1"
BUNDLE_FORMAT = "iop-proof-bundle-v1"
HEX64 = frozenset("0123456789abcdef")


class BundleError(Exception):
    """The bundle does not prove what it claims; the message says what failed."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def read_keys(path: str) -> dict[str, bytes]:
    keys = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key_id, encoded = line.split()
            public_key = base64.b64decode(encoded, validate=True)
            if hashlib.sha256(public_key).hexdigest()[:16] != key_id:
                raise BundleError(f"public key file: key id {key_id} does not name its key")
            keys[key_id] = public_key
    return keys


def hex_hash(text: Any, what: str) -> bytes:
    if not isinstance(text, str) or len(text) != 64 or not set(text) <= HEX64:
        raise BundleError(f"{what} is not 64 lowercase hex digits")
    return bytes.fromhex(text)


def check_signature(checkpoint: dict[str, Any], keys: dict[str, bytes]) -> None:
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise BundleError(f"checkpoint format is not {CHECKPOINT_FORMAT}")
    size, root, time, key_id = (checkpoint.get(k) for k in ("size", "root", "time", "key_id"))
    if not isinstance(size, int) or not isinstance(time, str) or not isinstance(key_id, str):
        raise BundleError("checkpoint lacks an integer size, a time or a key id")
    hex_hash(root, "checkpoint root")
    public_key = keys.get(key_id)
    if public_key is None:
        raise BundleError(f"checkpoint key {key_id} is not in the public key file")
    message = f"{CHECKPOINT_FORMAT}\nsize {size}\nroot {root}\ntime {time}\nkey {key_id}\n"
    try:
        signature = base64.b64decode(checkpoint.get("signature", ""), validate=True)
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message.encode("ascii"))
    except (InvalidSignature, ValueError, binascii.Error, TypeError):
        raise BundleError(f"checkpoint signature does not hold for key {key_id}") from None


def entry_link(stored: bytes, previous: bytes, episode_id: str, version: int) -> bytes:
    """The entry's stored link, after checking it follows from its bytes and ``previous``."""
    try:
        entry = json.loads(stored)
        link = hex_hash(entry.pop("_chain"), "its _chain")
    except (ValueError, KeyError, AttributeError, TypeError):
        raise BundleError(f"entry version {version}: stored bytes are not an entry") from None
    entry.pop("_seal", None)  # the seal (docs/proofs.md) is not part of the canonical bytes
    if entry.get("episode_id") != episode_id or entry.get("version") != version:
        raise BundleError(f"entry version {version}: names another episode or version")
    if sha256(previous + canonical(entry)) != link:
        raise BundleError(f"entry version {version}: chain link does not follow")
    return link


def leaf_hash(index: int, episode_id: str, version: int, link: bytes) -> bytes:
    data = (
        index.to_bytes(8, "big") + uuid.UUID(episode_id).bytes + version.to_bytes(8, "big") + link
    )
    return sha256(b"\x00" + data)


def root_from_path(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """RFC 9162 2.1.3.2: the root the inclusion path leads to, or None if it cannot."""
    if not 0 <= index < size:
        return None
    fn, sn, root = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            root = sha256(b"\x01" + sibling + root)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            root = sha256(b"\x01" + root + sibling)
        fn >>= 1
        sn >>= 1
    return root if sn == 0 else None


def check_entries(bundle: dict[str, Any], root: bytes, size: int) -> int:
    episode_id = bundle.get("episode_id")
    if not isinstance(episode_id, str) or str(uuid.UUID(episode_id)) != episode_id:
        raise BundleError("episode_id is not a 36-character episode id")
    entries = bundle.get("entries")
    if not isinstance(entries, list) or not entries:
        raise BundleError("the bundle holds no entries")
    previous = sha256(episode_id.encode("ascii"))
    for expected, entry in enumerate(entries, start=1):
        version = entry.get("version")
        if version != expected:
            raise BundleError(f"versions do not run 1..n: expected {expected}, got {version}")
        try:
            stored = base64.b64decode(entry["stored"], validate=True)
        except (KeyError, ValueError, binascii.Error, TypeError):
            raise BundleError(f"entry version {version}: stored is not base64") from None
        previous = entry_link(stored, previous, episode_id, version)
        index = entry.get("leaf_index")
        path = [
            hex_hash(node, f"entry version {version} proof")
            for node in entry.get("inclusion_proof", [])
        ]
        if not isinstance(index, int):
            raise BundleError(f"entry version {version}: leaf_index is not an integer")
        leaf = leaf_hash(index, episode_id, version, previous)
        if root_from_path(index, size, leaf, path) != root:
            raise BundleError(f"entry version {version}: inclusion proof does not lead to the root")
    return len(entries)


def verify(bundle: dict[str, Any], keys: dict[str, bytes]) -> str:
    if bundle.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"bundle format is not {BUNDLE_FORMAT}")
    checkpoint = bundle.get("checkpoint")
    if not isinstance(checkpoint, dict):
        raise BundleError("the bundle holds no checkpoint")
    check_signature(checkpoint, keys)
    count = check_entries(bundle, bytes.fromhex(checkpoint["root"]), checkpoint["size"])
    return (
        f"bundle ok: episode {bundle['episode_id']}, versions 1..{count}, included in "
        f"checkpoint size {checkpoint['size']} signed by key {checkpoint['key_id']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument(
        "--pubkey", required=True, help="public key file: '<key id> <base64>' lines"
    )
    args = parser.parse_args()
    try:
        keys = read_keys(args.pubkey)
        bundle = json.loads(Path(args.bundle).read_text(encoding="utf-8"))
    except (OSError, ValueError, BundleError) as error:
        print(f"bundle FAILED: cannot read the bundle or the key file: {error}")
        return 1
    try:
        print(verify(bundle, keys))
    except (BundleError, AttributeError, TypeError, ValueError) as error:
        print(f"bundle FAILED: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
