"""Command line: ``otel-aspects check FILE...`` (also ``python -m otel_aspects``).

Validates metrics config files with the loader's own rules and messages::

    $ otel-aspects check config/metrics/*.yml
    ok: config/metrics/my_service.yml (3 metrics)

Exit status: 0 all valid, 1 some file has problems, 2 usage error.

Output stays bounded whatever a file holds: the loader quotes values in a short
form, refuses files over ``MAX_CONFIG_BYTES`` unread and lists at most
``MAX_REPORTED_ERRORS`` problems per file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .config import _check_file

__all__ = ("main",)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-aspects", description="Tools for otel_aspects metrics configs."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="validate metrics config files",
        description="Validate metrics config files; exit 1 if any has problems.",
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="YAML config file")
    return parser


def _check(files: Sequence[str]) -> int:
    status = 0
    for name in files:
        metrics, errors = _check_file(name)  # parsed once
        if errors:
            status = 1
            print("\n".join(errors), file=sys.stderr)
        else:
            print(f"ok: {name} ({len(metrics)} metrics)")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with *argv* (default ``sys.argv[1:]``); return the exit status.

    >>> main(["check", "config/metrics/my_service.yml"])  # doctest: +SKIP
    0
    """
    args = _parser().parse_args(argv)
    if args.command == "check":
        return _check(args.files)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
