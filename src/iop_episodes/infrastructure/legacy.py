"""Entries stored in format 1, before an entry was stored as its canonical bytes.

Stores written by the first release hold each entry as the library's JSON
transcoding of the event: times as ``{"_type_": "datetime_iso", "_data_":
...}``, the link under ``chain``, and canonical bytes that left out the
command digest (docs/hash-chain.md, "Format 1"). Such rows are never
rewritten: they are read, verified and projected by these rules, and new
entries link on from their last link in the current format.
"""

from __future__ import annotations

import json
from typing import Any

from iop_episodes.domain.canonical import CHAIN_OPENING, canonical_json


def is_format1(stored: bytes) -> bool:
    """Whether a stored entry predates the canonical stored form."""
    return not stored.startswith(CHAIN_OPENING)


def format1_link(stored: bytes) -> str:
    """The link a format 1 row stored."""
    return str(json.loads(stored)["chain"])


def format1_link_and_canonical(
    stored: bytes, episode_id: str, version: int, event_type: str
) -> tuple[str, bytes]:
    """The stored link and the canonical bytes it covers, by format 1's rules."""
    state: dict[str, Any] = json.loads(stored)
    canonical = canonical_json(
        {
            "actor": state["actor"],
            "class_version": state.get("class_version", 1),
            "command_id": state["command_id"],
            "episode_id": episode_id,
            "occurred_at": state["occurred_at"]["_data_"],
            "payload": state["payload"],
            "recorded_at": state["timestamp"]["_data_"],
            "type": event_type,
            "version": version,
        }
    )
    return str(state["chain"]), canonical


def format1_texts(stored: bytes) -> tuple[str, str, str]:
    """``occurred_at``, payload and ``recorded_at`` as format 1 stored them."""
    state: dict[str, Any] = json.loads(stored)
    return (
        state["occurred_at"]["_data_"],
        canonical_json(state["payload"]).decode("ascii"),
        state["timestamp"]["_data_"],
    )
