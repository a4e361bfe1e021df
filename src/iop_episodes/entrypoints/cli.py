"""The ``iop`` command: a thin shell over the public API.

``main`` is the one place failures become exit codes: 0 ok, 1 a finding,
2 usage, 3 store unavailable, 4 integrity or key problem (70 a bug, 130
interrupted). Every
failure is one line on stderr; ``iop --debug ...`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sqlite3
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn

from eventsourcing.persistence import IntegrityError, MapperDeserialisationError, PersistenceError
from pydantic import BaseModel, ValidationError

from iop_episodes.application import problems
from iop_episodes.application.output import schema_of
from iop_episodes.domain import errors
from iop_episodes.entrypoints import commands
from iop_episodes.entrypoints.extensions import load_extensions

EXIT_OK, EXIT_FINDING = problems.EXIT_OK, problems.EXIT_FINDING
EXIT_USAGE, EXIT_STORE = problems.EXIT_USAGE, problems.EXIT_STORE
EXIT_INTEGRITY, EXIT_BUG = problems.EXIT_INTEGRITY, problems.EXIT_BUG

EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (problems.UsageProblem, EXIT_USAGE),
    (problems.StoreUnavailable, EXIT_STORE),
    (problems.IntegrityProblem, EXIT_INTEGRITY),
    (errors.StoreKeyError, EXIT_INTEGRITY),
    (errors.EntryIntegrityError, EXIT_INTEGRITY),
    (errors.EpisodeNotFound, EXIT_USAGE),
    (errors.EpisodeRuleError, EXIT_USAGE),
    (ValidationError, EXIT_USAGE),
    (IntegrityError, EXIT_INTEGRITY),
    (MapperDeserialisationError, EXIT_INTEGRITY),
    (PersistenceError, EXIT_STORE),
    (sqlite3.Error, EXIT_STORE),
    (errors.EpisodeError, EXIT_FINDING),
    (ValueError, EXIT_USAGE),  # what commands raised for a bad value before problems existed
)
"""Which failure gives which exit code: the first class that matches wins."""

ADVICE = {
    EXIT_STORE: "check --store or $IOP_STORE, and that the database is reachable",
    EXIT_BUG: "this is a bug: run again with iop --debug and report the traceback",
}

_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]*:)[^@\s]+@")
_PASSWORD_FIELD = re.compile(r"(password\s*=\s*)\S+", re.IGNORECASE)


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (and no usage block above it)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("iop").strip()
        where = f"{command}: " if command else ""
        raise problems.UsageProblem(f"{where}{message} (see {self.prog} --help)")


def package_version() -> str:
    try:
        return version("iop-episodes")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def json_models() -> dict[str, type[BaseModel]]:
    """Every command's JSON shape: the write side's and each extension's."""
    models = dict(commands.JSON_MODELS)
    for extension in load_extensions():
        # An extension written before json_models() existed publishes none.
        models.update(getattr(extension, "json_models", dict)())
    return models


def cmd_schema(args: argparse.Namespace) -> int:
    models = json_models()
    name = " ".join(args.name)
    if not name:
        print("\n".join(sorted(models)))
        return EXIT_OK
    if name not in models:
        msg = f"no JSON output named {name!r}; one of: {', '.join(sorted(models))}"
        raise problems.UsageProblem(msg)
    print(json.dumps(schema_of(models[name]), indent=2))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="iop", description=__doc__)
    parser.add_argument("--version", action="version", version=f"iop {package_version()}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback when a command fails"
    )
    subcommands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do (iop COMMAND --help)"
    )
    commands.register(subcommands)
    schema = subcommands.add_parser("schema", help="the JSON Schema of a command's --json output")
    schema.add_argument(
        "name",
        nargs=argparse.REMAINDER,  # a name may hold an option: iop schema schedule --episode
        help="the command, such as: projections status (none: list them)",
    )
    schema.set_defaults(handler=cmd_schema)
    for extension in load_extensions():
        extension.register(subcommands)
    return parser


def masked(text: str) -> str:
    """The text with passwords and the cipher key blotted out."""
    text = _PASSWORD_FIELD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))
    key = os.environ.get("IOP_CIPHER_KEY")
    return text.replace(key, "***") if key and len(key) >= 8 else text


def exit_code_of(error: BaseException) -> int:
    for kind, code in EXIT_CODES:
        if isinstance(error, kind):
            return code
    return EXIT_BUG


def report(error: BaseException, *, debug: bool) -> int:
    """One line on stderr (the traceback too with --debug); the exit code."""
    code = exit_code_of(error)
    if debug:
        traceback.print_exception(error, file=sys.stderr)
    message = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = f"{where}: {first['msg']}"
    elif code in ADVICE and not isinstance(error, problems.Problem):
        message = f"{type(error).__name__}: {message}; {ADVICE[code]}"
    print(f"iop: error: {masked(message)}", file=sys.stderr)
    return code


def quiet_broken_pipe() -> int:
    """The reader went away (``iop ... | head``): stop without a word."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_OK


class MaskingFormatter(logging.Formatter):
    """No password in any log line, and tracebacks only with --debug."""

    def __init__(self, *, debug: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.debug = debug

    def format(self, record: logging.LogRecord) -> str:
        if not self.debug and record.exc_info:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return masked(super().format(record))


class CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]  # its stream is sys.stderr's type
    """Writes each record to ``sys.stderr`` as it is then, not as it was when made.

    ``main`` may run inside a host (or a test) that swaps or closes the
    stream it started with; a handler holding the old one would then fail.
    """

    @property  # read-only here: always the current stream
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        """``StreamHandler.__init__`` sets a stream; the current one is always used."""


def configure_logging(command: str, *, debug: bool) -> None:
    """The scheduler logs what it does; other commands only warnings (output says the rest)."""
    handler = CurrentStderrHandler()
    handler.setFormatter(MaskingFormatter(debug=debug))
    level = logging.INFO if command == "scheduler" or debug else logging.WARNING
    logging.basicConfig(level=level, handlers=[handler], force=True)


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in raw
    try:
        args = build_parser().parse_args(raw)
        configure_logging(args.command, debug=debug)
        code: int = args.handler(args)
        sys.stdout.flush()
    except BrokenPipeError:
        return quiet_broken_pipe()
    except KeyboardInterrupt:
        print("iop: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001  (the one place a failure becomes an exit code)
        return report(error, debug=debug)
    return code


if __name__ == "__main__":
    sys.exit(main())
