"""The integrity key: the service's secret for sealing entries and signing checkpoints.

``IOP_INTEGRITY_KEY`` is the base64 text of 32 random bytes, held by the
service and never written to the store (it is separate from
``IOP_CIPHER_KEY``, which only hides the records). Two keys are derived
from it with HKDF-SHA256, so neither use weakens the other:

* a **seal key**: HMAC-SHA256 over an entry's chain link (or a snapshot's
  bytes) lets the engine tell its own entries from forged ones cheaply;
* an **Ed25519 signing key** for checkpoints; auditors get its public key
  (``key_id`` is the first 8 bytes of SHA-256 of the raw public key, in hex).

Generate a key with ``python -c "import base64, os;
print(base64.b64encode(os.urandom(32)).decode())"``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field
from functools import cached_property

from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF
from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

KEY_BYTES = 32
SEAL_CONTEXT = b"iop-episodes seal key v1"
SIGNING_CONTEXT = b"iop-episodes checkpoint signing key v1"


class IntegrityKeyError(ValueError):
    """``IOP_INTEGRITY_KEY`` is not the base64 text of 32 bytes."""


def key_id_of(public_key: bytes) -> str:
    """The 16 hex digits that name an Ed25519 public key (raw 32 bytes)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class IntegrityKey:
    """Seals and signatures from one 32-byte secret."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            msg = f"the integrity key must be {KEY_BYTES} bytes, got {len(self.secret)}"
            raise IntegrityKeyError(msg)

    @classmethod
    def from_text(cls, text: str) -> IntegrityKey:
        """Decode ``IOP_INTEGRITY_KEY``'s base64 text."""
        try:
            secret = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            msg = "IOP_INTEGRITY_KEY is not base64 text (expected 32 random bytes, base64)"
            raise IntegrityKeyError(msg) from None
        if len(secret) != KEY_BYTES:
            msg = f"IOP_INTEGRITY_KEY must decode to {KEY_BYTES} bytes, got {len(secret)}"
            raise IntegrityKeyError(msg)
        return cls(secret)

    # Derived once per key object: HKDF costs about 80 µs, and every entry
    # written, loaded or signed into a checkpoint checks a seal.
    @cached_property
    def _seal_key(self) -> bytes:
        return _derive(self.secret, SEAL_CONTEXT)

    @cached_property
    def _signing_key(self) -> ECC.EccKey:
        return ECC.construct(curve="Ed25519", seed=_derive(self.secret, SIGNING_CONTEXT))

    def seal(self, data: bytes) -> str:
        """HMAC-SHA256 of ``data`` under the seal key, as 64 lowercase hex digits."""
        return hmac.new(self._seal_key, data, hashlib.sha256).hexdigest()

    def seal_holds(self, data: bytes, seal: str) -> bool:
        """Whether ``seal`` is this key's seal of ``data`` (constant-time compare)."""
        return hmac.compare_digest(self.seal(data), seal)

    def sign(self, message: bytes) -> bytes:
        """An Ed25519 (RFC 8032) signature of ``message``: 64 bytes."""
        return bytes(eddsa.new(self._signing_key, "rfc8032").sign(message))

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key auditors verify checkpoints with."""
        return bytes(self._signing_key.public_key().export_key(format="raw"))

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_key)


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    try:
        key = eddsa.import_public_key(public_key)
        eddsa.new(key, "rfc8032").verify(message, signature)
    except ValueError:
        return False
    return True


def _derive(secret: bytes, context: bytes) -> bytes:
    derived = HKDF(secret, KEY_BYTES, b"", SHA256, context=context)
    assert isinstance(derived, bytes)  # noqa: S101  (one key asked for, one returned)
    return derived
