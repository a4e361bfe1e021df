"""The integrity key: derived seals and Ed25519 signatures."""

from __future__ import annotations

import base64

import pytest

from iop_episodes.infrastructure.keys import (
    IntegrityKey,
    IntegrityKeyError,
    key_id_of,
    verify_signature,
)

SECRET = bytes(range(32))


def test_a_seal_holds_for_its_data_and_key_only() -> None:
    """A seal verifies for the sealed bytes under the same key, and for nothing else."""
    key = IntegrityKey(SECRET)
    seal = key.seal(b"link")
    assert len(seal) == 64
    assert key.seal_holds(b"link", seal)
    assert not key.seal_holds(b"link2", seal)
    assert not IntegrityKey(bytes(32)).seal_holds(b"link", seal)


def test_a_signature_verifies_with_the_public_key_and_fails_when_changed() -> None:
    """Signatures check out against the public key, not after a flipped bit or another key."""
    key = IntegrityKey(SECRET)
    signature = key.sign(b"checkpoint")
    assert verify_signature(key.public_key, b"checkpoint", signature)
    assert not verify_signature(key.public_key, b"checkpoinT", signature)
    assert not verify_signature(IntegrityKey(bytes(32)).public_key, b"checkpoint", signature)


def test_the_key_id_names_the_public_key() -> None:
    """The key id is the first 8 bytes of SHA-256 of the raw public key."""
    key = IntegrityKey(SECRET)
    assert key.key_id == key_id_of(key.public_key)
    assert len(key.key_id) == 16
    assert key.key_id != IntegrityKey(bytes(32)).key_id


@pytest.mark.parametrize(
    ("text", "expected"),
    [("not base64!", "not base64"), (base64.b64encode(b"short").decode(), "32 bytes, got 5")],
)
def test_a_malformed_key_text_is_refused_naming_the_problem(text: str, expected: str) -> None:
    """Text that is not base64 of 32 bytes is refused with a message saying why."""
    with pytest.raises(IntegrityKeyError, match=expected):
        IntegrityKey.from_text(text)


def test_key_text_round_trips() -> None:
    """The base64 text of the secret gives the same key."""
    text = base64.b64encode(SECRET).decode()
    assert IntegrityKey.from_text(text).key_id == IntegrityKey(SECRET).key_id
