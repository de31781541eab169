"""The ``vectorstore`` command: demo, ingest, query, info, verify, vacuum, eval, dedupe.

User errors (bad input, missing store or collection, unreadable files) print one line to stderr and
exit with status 1; wrong usage exits with 2 (argparse); Ctrl-C exits with 130. No tracebacks for
user errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vectorstore.errors import VectorStoreError

__all__ = ["CLIError", "build_parser", "main"]


class CLIError(Exception):
    """A user error found by the CLI itself (e.g. a store path that holds no store)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    from vectorstore.cli import commands, demo

    parser = argparse.ArgumentParser(prog="vectorstore", description="Embedded vector search database.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.add_parser(sub)
    commands.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vectorstore`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (VectorStoreError, CLIError) as exc:
        print(f"vectorstore {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vectorstore: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `vectorstore dedupe ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
