"""The canonical bytes of an entry, the hash chain, and the stored form.

This module is the executable form of docs/hash-chain.md; change both or
neither. An entry's canonical bytes are the ASCII JSON encoding of::

    {"actor": {"id": ..., "role": ...}, "class_version": int,
     "command_digest": str | null, "command_id": str | null,
     "episode_id": str, "occurred_at": str, "payload": {...},
     "recorded_at": str, "type": str, "version": int}

with keys sorted at every depth, no insignificant white space and every
non-ASCII character escaped. Only strings, integers, booleans, null, arrays
and objects appear: times and decimal quantities are strings.

The stored form of an entry is the same object with its chain link added as
``_chain``, encoded the same way. ``_`` sorts before every lowercase letter,
so the stored bytes are ``{"_chain":"<64 hex>",`` followed by the canonical
bytes less their opening brace: what the chain covers is stored byte for
byte, and checking a link needs no JSON parsing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec


def canonical_time(moment: datetime) -> str:
    """UTC, microseconds always written, ``Z`` suffix: 2026-11-26T16:03:46.000000Z."""
    if moment.tzinfo is None:
        msg = f"canonical times must be timezone-aware, got naive {moment!r}"
        raise ValueError(msg)
    utc = moment.astimezone(UTC)
    # Three per command: %-formatting the fields is faster than isoformat
    # (which also formats the offset) or strftime, and pads years to four digits.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031  (see above)
        utc.year,
        utc.month,
        utc.day,
        utc.hour,
        utc.minute,
        utc.second,
        utc.microsecond,
    )


def canonical_decimal(quantity: Decimal) -> str:
    """Plain notation without trailing zeros: Decimal('9.50') -> '9.5'."""
    text = format(quantity.normalize(), "f")
    return "0" if text in {"-0", "0"} else text


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _one_shot_encoder() -> Callable[[Any], str]:
    """``_ENCODER.encode`` without building a C encoder per call (the fallback path).

    The values encoded here never hold cycles, so no cycle markers; falls
    back to the pure-Python encoder where the C accelerator is missing.
    """
    sort_keys, skip_keys, allow_nan = True, False, False
    try:
        chunks = json.encoder.c_make_encoder(  # type: ignore[attr-defined]  # CPython's accelerator
            None,  # no cycle markers
            _ENCODER.default,
            json.encoder.encode_basestring_ascii,
            None,  # no indent
            ":",
            ",",
            sort_keys,
            skip_keys,
            allow_nan,
        )
    except (AttributeError, TypeError):
        return _ENCODER.encode
    return lambda value: "".join(chunks(value, 0))


_encode = _one_shot_encoder()
_FAST = msgspec.json.Encoder(order="sorted")
_FAST_DECODER = msgspec.json.Decoder()


def _fast_canonical(value: Any) -> bytes | None:
    """msgspec's bytes when they are the standard library's, else None.

    msgspec sorts keys and escapes control characters, quotes and
    backslashes as ``json.dumps`` does, and writes integers of any size
    exactly. It differs in three places, each visible in its output: it
    writes non-ASCII characters (U+2028 among them) as UTF-8 where the
    standard library escapes them, DEL as itself where that escapes it, and
    floats in other forms (``1e16`` for ``1e+16``, ``0.00001`` for
    ``1e-05``); it refuses lone surrogates. Any of those hands the value to
    the standard library.
    """
    try:
        out = _FAST.encode(value)
    except (TypeError, ValueError, OverflowError):  # lone surrogates, unknown types
        return None
    if not out.isascii() or b"\x7f" in out or _may_hold_float(out):
        return None
    return out


# In msgspec's output a float is a number token holding ".", "e" or "E". With
# digits and minus signs deleted, those marked \x01 and the "," and "[" that
# may precede a value marked \x02, a float shows as \x02\x01, '":\x01' or a
# leading \x01. Control characters never appear raw (they are escaped), so
# the marks are unambiguous; text inside strings can look the same, which
# only costs a fallback.
_FLOAT_MARKS = bytes.maketrans(b".eE,[", b"\x01\x01\x01\x02\x02")
_NUMBER_BODY = b"0123456789-"


def _may_hold_float(out: bytes) -> bool:
    """Whether msgspec's output may hold a float (canonical values never do)."""
    marks = out.translate(_FLOAT_MARKS, _NUMBER_BODY)
    return marks.startswith(b"\x01") or b"\x02\x01" in marks or b'":\x01' in marks


def canonical_json(value: Any) -> bytes:
    """Keys sorted, no white space, ASCII only (see the module docstring).

    The standard library's encoder, which refuses anything but JSON types.
    """
    return _encode(value).encode("ascii")


def canonical_form(form: Any) -> bytes:
    """``canonical_json(form)`` for a JSON form, through msgspec where it writes the same bytes.

    A JSON form holds only dicts with string keys, lists, strings,
    integers, floats, booleans and None: what ``model_dump(mode="json")``
    and ``json.loads`` return, and all an entry or a command digest holds.
    msgspec would also write datetimes, UUIDs, decimals, bytes, sets and
    enums in forms of its own where ``canonical_json`` refuses them, so it
    is used only where the caller built a JSON form.
    """
    fast = _fast_canonical(form)
    return fast if fast is not None else _encode(form).encode("ascii")


def parse_json(data: bytes | str) -> Any:
    """``json.loads(data)``, through msgspec where it can decode the text.

    msgspec decodes every JSON document ``json.loads`` does to the same
    value (integers of any size included) but refuses a few it accepts:
    escaped lone surrogates, ``NaN``, ``Infinity`` and numbers beyond the
    float range. Those go to the standard library.
    """
    try:
        return _FAST_DECODER.decode(data)
    except msgspec.DecodeError:
        return json.loads(data)


def entry_bytes(
    *,
    episode_id: UUID | str,
    version: int,
    event_type: str,
    class_version: int,
    recorded_at: str,
    occurred_at: str,
    actor: dict[str, str],
    command_id: str | None,
    command_digest: str | None,
    payload: dict[str, Any],
) -> bytes:
    return canonical_form(
        {
            "actor": actor,
            "class_version": class_version,
            "command_digest": command_digest,
            "command_id": command_id,
            "episode_id": str(episode_id),
            "occurred_at": occurred_at,
            "payload": payload,
            "recorded_at": recorded_at,
            "type": event_type,
            "version": version,
        }
    )


def chain_seed(episode_id: UUID | str) -> str:
    """The link before version 1: SHA-256 of the episode id's 36 ASCII characters."""
    return hashlib.sha256(str(episode_id).encode("ascii")).hexdigest()


def next_link(previous: str, canonical: bytes) -> str:
    """``sha256(previous link's 32 raw bytes || canonical bytes)`` as lowercase hex."""
    return hashlib.sha256(bytes.fromhex(previous) + canonical).hexdigest()


CHAIN_OPENING = b'{"_chain":"'
LINK_END = len(CHAIN_OPENING) + 64
BODY_START = LINK_END + 2  # past the link's closing quote and the comma
SEAL_OPENING = b'"_seal":"'
SEAL_MEMBER = len(SEAL_OPENING) + 64 + 2  # '"_seal":"<64 hex>",'


def stored_form(link: str, canonical: bytes, seal: str | None = None) -> bytes:
    """The entry as stored: its canonical object with ``_chain`` (and ``_seal``) first.

    ``_seal``, when the service holds an integrity key, is the second member:
    ``_c`` < ``_s`` < every lowercase letter, so the stored object stays in
    canonical key order.
    """
    sealed = b"" if seal is None else SEAL_OPENING + seal.encode("ascii") + b'",'
    return CHAIN_OPENING + link.encode("ascii") + b'",' + sealed + canonical[1:]


def split_sealed(stored: bytes) -> tuple[str, str | None, bytes]:
    """The stored link, the stored seal (or None) and the canonical bytes, without parsing."""
    if not stored.startswith(CHAIN_OPENING) or stored[LINK_END:BODY_START] != b'",':
        msg = "stored entry does not begin with its chain link"
        raise ValueError(msg)
    link = stored[len(CHAIN_OPENING) : LINK_END].decode("ascii")
    if not stored.startswith(SEAL_OPENING, BODY_START):
        return link, None, b"{" + stored[BODY_START:]
    seal_start = BODY_START + len(SEAL_OPENING)
    body_start = BODY_START + SEAL_MEMBER
    if stored[body_start - 2 : body_start] != b'",':
        msg = "stored entry's seal is not 64 characters"
        raise ValueError(msg)
    seal = stored[seal_start : body_start - 2].decode("ascii")
    return link, seal, b"{" + stored[body_start:]


def split_stored(stored: bytes) -> tuple[str, bytes]:
    """The stored link and the canonical bytes it covers, without parsing JSON."""
    link, _, canonical = split_sealed(stored)
    return link, canonical


def entry_tail(event_type: str, version: int) -> bytes:
    """How an entry's canonical bytes end: its type and version, the last two keys."""
    return b'"type":"%s","version":%d}' % (event_type.encode("ascii"), version)


def entry_texts(stored: bytes) -> tuple[str, str, str]:
    """An entry's ``occurred_at``, ``payload`` and ``recorded_at`` as the canonical text stored.

    Found by position, not parsed: keys are sorted, the members before
    ``occurred_at`` hold no quotes of their own, and after ``recorded_at``
    come only ``type`` and ``version``.
    """
    occurred_start = stored.index(b',"occurred_at":"') + 16
    occurred_end = stored.index(b'"', occurred_start)
    recorded_key = stored.rindex(b',"recorded_at":"')
    recorded_end = stored.index(b'"', recorded_key + 16)
    return (
        stored[occurred_start:occurred_end].decode("ascii"),
        stored[occurred_end + 12 : recorded_key].decode("ascii"),  # past '","payload":'
        stored[recorded_key + 16 : recorded_end].decode("ascii"),
    )
