"""For read models that commit their rows and their tracking position together.

A read model built on one of the library's SQL tracking recorders writes a
batch of view rows and the position in the upstream log after it in one
transaction, so each event is projected exactly once. The library offers
that only to subclasses (see ``infrastructure.compat``, item 4); this is
the public face of it.
"""

from __future__ import annotations

from iop_episodes.infrastructure.compat import position_in, record_position

__all__ = ["position_in", "record_position"]
