"""What commands print: JSON models with real numbers, and progress on stderr.

Every ``--json`` output is one ``Output`` model (frozen, unknown fields are
errors), printed by ``print_json``; ``iop schema COMMAND`` prints its JSON
Schema. Hours and other decimals are JSON numbers (``Number``), counts are
integers, and no field is left out because it is zero or empty.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, PlainSerializer, WithJsonSchema

from iop_episodes.domain.values import Model


def _json_number(quantity: Decimal) -> int | float:
    """15 for 15.00, 9.5 for 9.50: the shortest number that says it."""
    return int(quantity) if quantity == quantity.to_integral_value() else float(quantity)


Number = Annotated[
    Decimal,
    PlainSerializer(_json_number, return_type=Any, when_used="json"),
    WithJsonSchema({"type": "number"}, mode="serialization"),
]
"""A decimal (hours, a fraction) that JSON shows as a number: 15 or 9.5, not "15" or "9.5"."""

Progress = Callable[[int, int], None]
"""Called with (done, total) as work goes on."""


T = TypeVar("T")


def counted(items: Sequence[T], progress: Progress | None) -> Iterator[T]:
    """The items in order, telling ``progress`` (done, total) as each one is taken."""
    if progress is not None:
        progress(0, len(items))
    for done, item in enumerate(items, 1):
        yield item
        if progress is not None:
            progress(done, len(items))


class Output(Model):
    """Base of every command's JSON output."""


def print_json(output: Output) -> None:
    print(output.model_dump_json(indent=2))


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a command's output, as it is serialized."""
    return model.model_json_schema(mode="serialization")


@contextmanager
def progress_bar(label: str) -> Iterator[Progress]:
    """A progress bar on stderr while the block runs; nothing when stderr is no terminal."""
    if not sys.stderr.isatty():
        yield _ignore
        return
    from rich.progress import Progress as RichProgress  # noqa: PLC0415  (only on a terminal)

    with RichProgress(transient=True, console=_stderr_console()) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, done))

        yield update


def _ignore(done: int, total: int) -> None:
    del done, total


def _stderr_console() -> Any:
    from rich.console import Console  # noqa: PLC0415

    return Console(stderr=True)
