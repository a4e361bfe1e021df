"""Why a PostgreSQL store cannot be reached, said at once and plainly.

The library's connection pool retries until its timeout and then reports
only that it got no connection; one direct attempt first tells refused
connections, unknown databases and bad passwords apart.
"""

from __future__ import annotations

from iop_episodes.infrastructure.pglocks import connect


def unreachable(env: dict[str, str]) -> str | None:
    """The server's reason for refusing a connection, or None when one opens."""
    import psycopg  # noqa: PLC0415  (the driver is an optional extra)

    try:
        connect(env).close()
    except psycopg.OperationalError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        return lines[0] if lines else type(error).__name__
    return None
