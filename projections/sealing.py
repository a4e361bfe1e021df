"""Sealing clinical text in the view tables when the store is encrypted.

With ``IOP_CIPHER_KEY`` set, the columns that could carry clinical text or
identities (client references, medication names, step-down reasons, actor
ids, command ids and entry payloads) are stored as ``enc:`` + base64 of
AES-GCM ciphertext, with the store's own cipher. Everything else in the
views is ids, codes, times, hours and counts.
"""

from __future__ import annotations

from base64 import b64decode, b64encode
from dataclasses import dataclass

from eventsourcing.persistence import Cipher

SEALED_COLUMNS = {
    "EpisodeRow": frozenset({"medications", "client_ref"}),
    "StepDownRow": frozenset({"reason", "actor_id"}),
    "AuditRow": frozenset({"actor_id", "command_id", "payload"}),
}
PREFIX = "enc:"


@dataclass(frozen=True)
class Sealer:
    cipher: Cipher | None = None

    def seal(self, text: str | None) -> str | None:
        if self.cipher is None or text is None:
            return text
        return PREFIX + b64encode(self.cipher.encrypt(text.encode("utf-8"))).decode("ascii")

    def open(self, text: str | None) -> str | None:
        if text is None or not text.startswith(PREFIX) or self.cipher is None:
            return text
        return self.cipher.decrypt(b64decode(text[len(PREFIX) :])).decode("utf-8")


def still_sealed(text: str | None) -> bool:
    """Whether a column read back is still sealed (the views were opened without the key)."""
    return text is not None and text.startswith(PREFIX)
