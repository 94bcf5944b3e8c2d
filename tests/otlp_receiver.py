"""A loopback OTLP/HTTP receiver for tests: decodes what exporters send.

Start it on a free port, point an exporter at ``receiver.endpoint``, and read
back the decoded ``ExportMetricsServiceRequest`` / ``ExportLogsServiceRequest``
messages.  It can answer with an error status (``receiver.status = 503``, with
``receiver.retry_after = "30"`` a ``Retry-After`` header) or go
down and come back on the same port (``stop()`` / ``start()``) for outage tests.

Example::

    with OtlpReceiver() as rx:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = rx.endpoint
        ...                                  # export something
        rx.wait_for_metric("requests_total")
        points = rx.points("requests_total")  # [Point(attributes={...}, ...)]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

__all__ = ("OtlpReceiver", "Point", "any_value", "attributes_of")


def any_value(value: AnyValue) -> Any:
    """The Python value of an OTLP ``AnyValue``."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(any_value(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return getattr(value, kind)


def attributes_of(pairs: Any) -> dict[str, Any]:
    """A ``{key: value}`` dict from repeated ``KeyValue``."""
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in pairs:
        out[kv.key] = any_value(kv.value)
    return out


@dataclass(frozen=True)
class Point:
    """One decoded data point with its context.

    ``value`` is the number for sums and gauges; for histograms ``count``,
    ``sum``, ``bucket_counts`` and ``boundaries`` are set.
    """

    metric: str
    unit: str
    kind: str  # "sum" | "gauge" | "histogram"
    attributes: dict[str, Any]
    resource: dict[str, Any]
    value: float | None = None
    count: int | None = None
    sum: float | None = None
    bucket_counts: tuple[int, ...] = ()
    boundaries: tuple[float, ...] = ()
    monotonic: bool | None = None
    start_time_unix_nano: int = 0
    time_unix_nano: int = 0
    scope: str = ""  # the instrumentation scope (meter) name


class OtlpReceiver:
    """OTLP/HTTP receiver on ``127.0.0.1`` (``/v1/metrics`` and ``/v1/logs``).

    ``port=0`` picks a free port at the first :meth:`start`; later restarts reuse it.
    """

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.metrics_requests: list[ExportMetricsServiceRequest] = []
        self.logs_requests: list[ExportLogsServiceRequest] = []
        #: HTTP status to answer with; 200 means accept and record.
        self.status = 200
        #: ``Retry-After`` header sent with an error status, when not ``None``.
        self.retry_after: str | None = None
        #: Requests answered with an error status or received while failing.
        self.rejected = 0

    # -- lifecycle ---------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (stable across stop/start)."""
        return self._port

    @property
    def endpoint(self) -> str:
        """Base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``otlp_endpoint``."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def metrics_url(self) -> str:
        """Full URL for ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``."""
        return f"{self.endpoint}/v1/metrics"

    def start(self) -> OtlpReceiver:
        """Start serving (again); returns ``self``."""
        if self._server is not None:
            return self
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver._receive(self.path, body, self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        server.daemon_threads = True
        self._port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: connections are refused until :meth:`start`."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- receiving ---------------------------------------------------------

    def _receive(self, path: str, body: bytes, handler: BaseHTTPRequestHandler) -> None:
        status = self.status
        if status == 200:
            request: ExportMetricsServiceRequest | ExportLogsServiceRequest
            if path.rstrip("/").endswith("/v1/metrics"):
                request = ExportMetricsServiceRequest.FromString(body)
                with self._lock:
                    self.metrics_requests.append(request)
                    self._changed.notify_all()
            elif path.rstrip("/").endswith("/v1/logs"):
                request = ExportLogsServiceRequest.FromString(body)
                with self._lock:
                    self.logs_requests.append(request)
                    self._changed.notify_all()
            else:
                status = 404
        else:
            with self._lock:
                self.rejected += 1
                self._changed.notify_all()
        handler.send_response(status)
        if status != 200 and self.retry_after is not None:
            handler.send_header("Retry-After", self.retry_after)
        handler.send_header("Content-Type", "application/x-protobuf")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._lock:
            self.metrics_requests.clear()
            self.logs_requests.clear()
            self.rejected = 0

    # -- queries -----------------------------------------------------------

    def metrics(self, name: str) -> list[tuple[dict[str, Any], Metric]]:
        """Every received ``Metric`` called *name*, with its resource attributes."""
        return [(resource, metric) for resource, _scope, metric in self._scoped(name)]

    def _scoped(self, name: str) -> list[tuple[dict[str, Any], str, Metric]]:
        with self._lock:
            requests = list(self.metrics_requests)
        found = []
        for request in requests:
            for rm in request.resource_metrics:
                resource = attributes_of(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name == name:
                            found.append((resource, sm.scope.name, metric))
        return found

    def points(
        self, name: str, attributes: Mapping[str, Any] | None = None, *, latest: bool = False
    ) -> list[Point]:
        """Data points of *name* whose attributes include *attributes*.

        With ``latest=True`` only the last point per (resource instance, scope,
        attribute set) is kept: with cumulative temporality that is the current total.
        """
        out: list[Point] = []
        for resource, scope, metric in self._scoped(name):
            kind = metric.WhichOneof("data")
            assert kind is not None
            data = getattr(metric, kind)
            for dp in data.data_points:
                attrs = attributes_of(dp.attributes)
                if attributes is not None and any(attrs.get(k) != v for k, v in attributes.items()):
                    continue
                common: dict[str, Any] = {
                    "metric": name,
                    "unit": metric.unit,
                    "kind": kind,
                    "attributes": attrs,
                    "resource": resource,
                    "scope": scope,
                    "start_time_unix_nano": dp.start_time_unix_nano,
                    "time_unix_nano": dp.time_unix_nano,
                }
                if kind == "histogram":
                    out.append(
                        Point(
                            **common,
                            count=dp.count,
                            sum=dp.sum,
                            bucket_counts=tuple(dp.bucket_counts),
                            boundaries=tuple(dp.explicit_bounds),
                        )
                    )
                else:
                    value = dp.as_double if dp.WhichOneof("value") == "as_double" else dp.as_int
                    out.append(
                        Point(
                            **common,
                            value=value,
                            monotonic=data.is_monotonic if kind == "sum" else None,
                        )
                    )
        if latest:
            last: dict[tuple[Any, ...], Point] = {}
            for p in out:
                key = (
                    p.resource.get("service.instance.id"),
                    p.scope,
                    tuple(sorted(p.attributes.items())),
                )
                last[key] = p
            out = list(last.values())
        return out

    def total(self, name: str, attributes: Mapping[str, Any] | None = None) -> float:
        """Sum over instances of the latest cumulative value (sums) or count (histograms)."""
        total = 0.0
        for p in self.points(name, attributes, latest=True):
            total += p.count if p.kind == "histogram" and p.count is not None else p.value or 0
        return total

    def instance_ids(self, name: str) -> set[str]:
        """The ``service.instance.id`` values that sent *name*."""
        return {str(r.get("service.instance.id")) for r, _ in self.metrics(name)}

    def log_bodies(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, body) of every received log record."""
        with self._lock:
            requests = list(self.logs_requests)
        out = []
        for request in requests:
            for rl in request.resource_logs:
                resource = attributes_of(rl.resource.attributes)
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        out.append((resource, any_value(record.body)))
        return out

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        """Wait until ``predicate(self)`` is true; returns whether it became true."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                self._lock.release()
                try:
                    if predicate(self):
                        return True
                finally:
                    self._lock.acquire()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.1))

    def wait_for_metric(self, name: str, timeout: float = 10.0) -> bool:
        """Wait until a metric called *name* has been received."""
        return self.wait_for(lambda rx: bool(rx.metrics(name)), timeout)
