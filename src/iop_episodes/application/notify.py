"""For read models that wake when new events commit instead of polling.

On PostgreSQL the library's recorder notifies a channel in every transaction
that inserts events; ``listening_for_inserts(service.recorder)`` yields a
connection listening on it (psycopg's ``notifies()`` then waits for the
next), or None where the store sends no notifications. The library offers
the channel only to its own subscriptions (see ``infrastructure.compat``,
item 6); this is the public face of it.
"""

from __future__ import annotations

from iop_episodes.infrastructure.compat import listening_for_inserts

__all__ = ["listening_for_inserts"]
