"""Command line (also ``python -m otel_aspects``).

``otel-aspects check FILE...``
``otel-aspects serve-metrics DIR [--host H] [--port P] [--service NAME]``: a
sidecar serving, on one Prometheus port, the total of every process that
records into the multi-process folder *DIR* (``otel_aspects.multiprocess``);
also over OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.  Runs until
SIGTERM or SIGINT.


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
    serve = commands.add_parser(
        "serve-metrics",
        help="serve the total of a multi-process folder on one Prometheus port",
        description="Serve, on one Prometheus port, the total of every process recording "
        "into the multi-process folder DIR (and over OTLP if OTEL_EXPORTER_OTLP_ENDPOINT "
        "is set); until SIGTERM or SIGINT.",
    )
    serve.add_argument("directory", metavar="DIR", help="the workers' multi-process folder")
    serve.add_argument("--host", default=None, help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (9464; 0 picks one)")
    serve.add_argument(
        "--service", default=None, help="service name (OTEL_SERVICE_NAME, else the folder's)"
    )
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


def _serve(directory: str, host: str | None, port: int | None, service: str | None) -> int:
    import os
    import signal
    import threading

    from . import multiprocess
    from .sdk import shutdown_metrics

    exporters = "prometheus"
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
    ):
        exporters = "prometheus,otlp"
    try:
        setup = multiprocess.serve_metrics(
            directory,
            service,
            exporters=exporters,
            prometheus_host=host,
            prometheus_port=port,
            flush_on_signals=False,
        )
    except (multiprocess.MultiprocessError, ValueError) as exc:
        print(f"otel-aspects serve-metrics: {exc}", file=sys.stderr)
        return 2
    if setup.prometheus_port is None:
        print("otel-aspects serve-metrics: the Prometheus port could not be bound", file=sys.stderr)
        shutdown_metrics()
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(
        f"otel-aspects: serving the total of {setup.multiprocess_dir} on "
        f"http://{host or '127.0.0.1'}:{setup.prometheus_port}/metrics",
        flush=True,
    )
    while not stop.wait(3600):
        pass
    shutdown_metrics()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with *argv* (default ``sys.argv[1:]``); return the exit status.

    >>> main(["check", "config/metrics/my_service.yml"])  # doctest: +SKIP
    0
    """
    args = _parser().parse_args(argv)
    if args.command == "check":
        return _check(args.files)
    if args.command == "serve-metrics":
        return _serve(args.directory, args.host, args.port, args.service)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
