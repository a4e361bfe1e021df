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
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

from iop_episodes.domain.rules import DEFAULT_MAX_SESSION_MINUTES, RuleSettings
from iop_episodes.domain.takehome import FEDERAL_TAKE_HOME_POLICY, TakeHomePolicy
from iop_episodes.infrastructure.keys import IntegrityKey

DEFAULT_STORE = "sqlite:///iop.db"
DEFAULT_TIMEZONE = "America/New_York"
SQLITE_FACTORY = "iop_episodes.infrastructure.sqlite:StatementCachingSQLiteFactory"
POSTGRES_FACTORY = "iop_episodes.infrastructure.postgres:CopyingPostgresFactory"


SQLITE_HEADER = b"SQLite format 3\x00"


class StoreUrlError(ValueError):
    """A store URL that names no backend this project supports."""


class StorePathError(OSError):
    """A SQLite store path that holds no store, or where none can be made."""


@dataclass(frozen=True)
class Store:
    url: str
    env: dict[str, str]
    read_only: bool = False
    views_env: dict[str, str] = field(default_factory=dict)
    """Where the views may be caught up from a reading command (no tables created)."""

    @property
    def backend(self) -> str:
        """``memory``, ``sqlite`` or ``postgresql``."""
        scheme = self.url.split(":", 1)[0]
        return "postgresql" if scheme == "postgres" else scheme

    @property
    def display(self) -> str:
        """The URL with its password masked, for messages and logs."""
        return masked(self.url)


def masked(url: str) -> str:
    """``postgresql://user:***@host/db``: a URL fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def store_url(explicit: str | None = None) -> str:
    return explicit or os.environ.get("IOP_STORE") or DEFAULT_STORE


def program_timezone(explicit: str | None = None) -> str:
    return explicit or os.environ.get("IOP_TIMEZONE") or DEFAULT_TIMEZONE


def parse_store(url: str, *, read_only: bool = False, create: bool = True) -> Store:
    """Translate ``memory://``, ``sqlite:///path`` or ``postgresql://...``.

    ``read_only`` opens nothing that is not already a store: a SQLite file
    is opened with ``mode=ro`` and no tables are created on any backend.
    Without ``create`` the store must exist already (it may be empty) and
    no table is created either, but it is opened for writing.
    """
    if "\x00" in unquote(url):
        raise StoreUrlError("the store URL contains a NUL character; check --store or $IOP_STORE")
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return Store(url, {"PERSISTENCE_MODULE": "eventsourcing.popo"}, read_only)
    if parts.scheme == "sqlite":
        return _sqlite_store(url, read_only=read_only, create=create)
    if parts.scheme in {"postgresql", "postgres"}:
        env = _postgres_env(url) | ({"CREATE_TABLE": "n"} if read_only or not create else {})
        return Store(url, env, read_only, env)
    raise StoreUrlError(
        f"store URL {masked(url)!r}: the scheme must be memory, sqlite or postgresql"
    )


def _sqlite_store(url: str, *, read_only: bool, create: bool) -> Store:
    path = unquote(urlsplit(url).path)
    if urlsplit(url).netloc or not path or path == "/":
        raise StoreUrlError(
            f"store URL {url!r}: a SQLite URL is sqlite:///relative.db or "
            "sqlite:////absolute/path.db"
        )
    database = path[1:]
    env = {
        "PERSISTENCE_MODULE": SQLITE_FACTORY,
        "SQLITE_DBNAME": database,
        "SQLITE_LOCK_TIMEOUT": "30",
    }
    if database == ":memory:":
        return Store(url, env, read_only, env)
    if read_only:
        file = Path(database).absolute()
        _check_sqlite_file(file)
        reading = env | {"SQLITE_DBNAME": _read_only_uri(file), "CREATE_TABLE": "n"}
        updating = env | {"SQLITE_DBNAME": f"file:{quote(str(file))}?mode=rw", "CREATE_TABLE": "n"}
        return Store(url, reading, read_only, updating)
    if not create:
        _check_sqlite_file(Path(database).absolute())
        existing = env | {"CREATE_TABLE": "n"}
        return Store(url, existing, read_only, existing)
    _prepare_sqlite_path(Path(database))
    return Store(url, env, read_only, env)


def _check_sqlite_file(file: Path) -> None:
    """The path must be a SQLite database already (a reading command makes none)."""
    for parent in file.parents:
        if parent.exists() and not parent.is_dir():
            raise StorePathError(f"no store at {file}: {parent} is a file, not a directory")
    if not file.exists():
        raise StorePathError(f"no store at {file}: check --store or $IOP_STORE")
    if file.is_dir():
        raise StorePathError(f"{file} is a directory; give the store's database file")
    try:
        with file.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        raise StorePathError(f"store {file} cannot be read: {error.strerror}") from None
    if not header:
        raise StorePathError(f"store {file} is an empty file, not a store")
    if header != SQLITE_HEADER:
        raise StorePathError(f"{file} is not a SQLite database; check --store")
    _check_sqlite_size(file)


def _check_sqlite_size(file: Path) -> None:
    """A file shorter than its header says was cut off (a partial copy, a full disk)."""
    with file.open("rb") as handle:
        header = handle.read(100)
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    size = file.stat().st_size
    if len(header) < 100 or (pages and size < pages * page_size):
        raise StorePathError(
            f"store {file} is truncated: its header says {pages * page_size} bytes, the file "
            f"has {size}; restore it from a complete copy"
        )


def _read_only_uri(file: Path) -> str:
    """``mode=ro``, and ``immutable`` when SQLite could not make its shared-memory file.

    Reading a WAL database needs a ``-shm`` file beside it; in a directory
    the reader may not write to, with no writer there to have made one, the
    file cannot change and SQLite is told so.
    """
    uri = f"file:{quote(str(file))}?mode=ro"
    wal, shm = Path(f"{file}-wal"), Path(f"{file}-shm")
    if os.access(file.parent, os.W_OK) or shm.exists():
        return uri
    if wal.exists() and wal.stat().st_size:
        raise StorePathError(
            f"store {file} has a write-ahead log ({wal.name}) but no {shm.name}, in a "
            "directory you may not write to: copy all three files to a writable directory"
        )
    return uri + "&immutable=1"


def _prepare_sqlite_path(file: Path) -> None:
    """Make the directories a new store needs; refuse a path that cannot be a store."""
    if file.is_dir():
        raise StorePathError(f"{file} is a directory; give the store's database file")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise StorePathError(
            f"cannot make a store at {file}: a parent of it is a file, not a directory"
        ) from None
    except PermissionError:
        raise StorePathError(f"cannot make the directory for {file}: permission denied") from None
    if file.exists() and file.stat().st_size:
        with file.open("rb") as handle:
            if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise StorePathError(f"{file} is not a SQLite database; check --store")
        _check_sqlite_size(file)
    elif not file.exists() and not os.access(file.parent, os.W_OK):
        raise StorePathError(f"cannot make a store at {file}: its directory is not writable")


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
            f"store URL {masked(url)!r}: a PostgreSQL URL is postgresql://user@host:port/db"
        )
    env = {
        "PERSISTENCE_MODULE": POSTGRES_FACTORY,
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
