"""Where the store is and how it is protected: store URLs and environment.

This is the one module that reads the environment for the write side:
``IOP_STORE`` (a store URL), ``IOP_CIPHER_KEY`` (encryption at rest and
compression), ``IOP_INTEGRITY_KEY`` (seals and checkpoint signatures, see
``keys``), ``IOP_WITNESS`` (where checkpoints go), ``IOP_TIMEZONE`` (the
program's clock), and the program's rule settings: ``IOP_TAKE_HOME_POLICY``
(a JSON file holding a take-home policy) and ``IOP_MAX_SESSION_MINUTES``
(the longest session, default 720).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from iop_episodes.domain.rules import DEFAULT_MAX_SESSION_MINUTES, RuleSettings
from iop_episodes.domain.takehome import FEDERAL_TAKE_HOME_POLICY, TakeHomePolicy
from iop_episodes.infrastructure.keys import IntegrityKey

DEFAULT_STORE = "sqlite:///iop.db"
DEFAULT_TIMEZONE = "America/New_York"
SQLITE_FACTORY = "iop_episodes.infrastructure.sqlite:StatementCachingSQLiteFactory"


class StoreUrlError(ValueError):
    """A store URL that names no backend this project supports."""


@dataclass(frozen=True)
class Store:
    url: str
    env: dict[str, str]

    @property
    def backend(self) -> str:
        """``memory``, ``sqlite`` or ``postgresql``."""
        scheme = self.url.split(":", 1)[0]
        return "postgresql" if scheme == "postgres" else scheme


def store_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get("IOP_STORE") or DEFAULT_STORE


def program_timezone(explicit: str | None = None) -> str:
    return explicit or os.environ.get("IOP_TIMEZONE") or DEFAULT_TIMEZONE


def parse_store(url: str) -> Store:
    """Translate ``memory://``, ``sqlite:///path`` or ``postgresql://...``."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return Store(url, {"PERSISTENCE_MODULE": "eventsourcing.popo"})
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if parts.netloc or not path or path == "/":
            raise StoreUrlError(
                f"store URL {url!r}: a SQLite URL is sqlite:///relative.db or "
                "sqlite:////absolute/path.db"
            )
        database = path[1:]
        if database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        return Store(
            url,
            {
                "PERSISTENCE_MODULE": SQLITE_FACTORY,
                "SQLITE_DBNAME": database,
                "SQLITE_LOCK_TIMEOUT": "30",
            },
        )
    if parts.scheme in {"postgresql", "postgres"}:
        return Store(url, _postgres_env(url))
    raise StoreUrlError(f"store URL {url!r}: the scheme must be memory, sqlite or postgresql")


def _postgres_env(url: str) -> dict[str, str]:
    if importlib.util.find_spec("psycopg") is None:
        raise StoreUrlError(
            "a postgresql:// store needs the PostgreSQL driver: "
            "pip install 'iop-episodes[postgres]'"
        )
    parts = urlsplit(url)
    dbname = parts.path.lstrip("/")
    if not parts.hostname or not dbname:
        raise StoreUrlError(
            f"store URL {url!r}: a PostgreSQL URL is postgresql://user@host:port/db"
        )
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_POOL_SIZE": "4",
    }
    schema = parse_qs(parts.query).get("schema")
    if schema:
        env["POSTGRES_SCHEMA"] = schema[0]
    return env


def protection_env() -> dict[str, str]:
    """Encryption at rest and compression, both on when IOP_CIPHER_KEY is set."""
    key = os.environ.get("IOP_CIPHER_KEY")
    if not key:
        return {}
    return {
        "CIPHER_TOPIC": "eventsourcing.cipher:AESCipher",
        "CIPHER_KEY": key,
        "COMPRESSOR_TOPIC": "eventsourcing.compressor:ZlibCompressor",
    }


def integrity_key(explicit: IntegrityKey | str | None = None) -> IntegrityKey | None:
    """The service's integrity key: given, or ``IOP_INTEGRITY_KEY``, or none.

    Raises ``IntegrityKeyError`` naming the problem when the text is not the
    base64 of 32 bytes.
    """
    if isinstance(explicit, IntegrityKey):
        return explicit
    text = explicit or os.environ.get("IOP_INTEGRITY_KEY")
    return IntegrityKey.from_text(text) if text else None


def witness_path(explicit: str | None = None) -> str | None:
    """Where checkpoints are appended outside the store: ``--witness`` or ``IOP_WITNESS``."""
    return explicit or os.environ.get("IOP_WITNESS") or None


def take_home_policy(path: str | None = None) -> TakeHomePolicy:
    """The policy in the JSON file named (or by ``IOP_TAKE_HOME_POLICY``), else the federal one."""
    chosen = path or os.environ.get("IOP_TAKE_HOME_POLICY")
    if not chosen:
        return FEDERAL_TAKE_HOME_POLICY
    return TakeHomePolicy.model_validate_json(Path(chosen).read_text(encoding="utf-8"))


def rule_settings(
    *, take_home_policy_path: str | None = None, max_session_minutes: int | None = None
) -> RuleSettings:
    """The program's rule settings from explicit values, then the environment."""
    minutes = max_session_minutes or int(
        os.environ.get("IOP_MAX_SESSION_MINUTES") or DEFAULT_MAX_SESSION_MINUTES
    )
    return RuleSettings(
        max_session_minutes=minutes,
        take_home_policy=take_home_policy(take_home_policy_path),
    )
