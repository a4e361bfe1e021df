"""Why a command could not do its work: the failures an operator can act on.

Each class is one kind of failure with its own exit code, mapped in one
place (``iop``'s ``main``). Messages are one line saying what is wrong and
what to do. The read side and other extensions raise these too, so every
command fails the same way without handling errors itself.

    EpisodeError
    └── Problem
        ├── UsageProblem       a bad argument or value: exit 2
        ├── StoreUnavailable   the store is missing, empty, unreadable or unreachable: exit 3
        │   └── EmptyStore     the store's tables are there, but no event is
        └── IntegrityProblem   a key that cannot read the store, or views that cannot be
                               trusted or repaired by catching up: exit 4
"""

from __future__ import annotations

from iop_episodes.domain import errors

EXIT_OK, EXIT_FINDING, EXIT_USAGE, EXIT_STORE, EXIT_INTEGRITY, EXIT_BUG = 0, 1, 2, 3, 4, 70
"""``iop``'s exit codes (README, "Exit codes and errors"): written here once."""


class Problem(errors.EpisodeError):
    """A failure the command reports in one line, with what to do about it."""


class UsageProblem(Problem):
    """An argument or value the command cannot use."""


class StoreUnavailable(Problem):
    """The store cannot be opened, read or written as the command needs."""


class EmptyStore(StoreUnavailable):
    """The store exists but holds no events, and the command needs some."""


class IntegrityProblem(Problem):
    """The data cannot be trusted as it stands: the command stops rather than guess."""
