"""YAML-declared metrics: loading and validation.

A service declares its instruments in ``config/metrics/<service>.yml``::

    service_name: my_service
    counters:
      - name: requests_total
        description: Total requests
        unit: "1"
    histograms:
      - name: request_duration_seconds   # unit "s" and seconds buckets by default
        buckets: [0.01, 0.1, 1]

and loads it with :func:`load_metrics_config`::

    >>> config = load_metrics_config("my_service")          # doctest: +SKIP
    >>> config.metrics["requests_total"].capture             # doctest: +SKIP
    True

Configuration time fails loudly, but never loses more than it must: each bad
entry is reported (file, entry, key, problem, fix) and skipped, every valid entry
is kept.  With ``strict=True`` (or ``OTEL_ASPECTS_STRICT=1``) any problem raises
:class:`MetricsConfigError` listing all of them.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from ._warn import warn_once

__all__ = (
    "DEFAULT_SECONDS_BUCKETS",
    "KINDS",
    "SECTIONS",
    "MetricKind",
    "MetricSpec",
    "MetricsConfig",
    "MetricsConfigError",
    "clear_loaded_configs",
    "load_metrics_config",
    "loaded_configs",
    "validate_config_file",
)

logger = logging.getLogger(__name__)

MetricKind = Literal["counter", "histogram", "gauge", "up_down_counter"]

#: YAML section name -> instrument kind, in the order sections are read.
SECTIONS: dict[str, MetricKind] = {
    "counters": "counter",
    "histograms": "histogram",
    "gauges": "gauge",
    "up_down_counters": "up_down_counter",
}
KINDS: tuple[MetricKind, ...] = tuple(SECTIONS.values())

#: Histogram boundaries for durations in seconds (5 ms ... 10 s).  The SDK's own
#: defaults (0 ... 10000) are meant for milliseconds.
DEFAULT_SECONDS_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)

#: The OpenTelemetry instrument-name syntax (the API's own ``_name_regex``).
INSTRUMENT_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_./-]{0,254}")
_UNIT_RE = re.compile(r"[\x00-\x7F]{0,63}")

STRICT_ENV = "OTEL_ASPECTS_STRICT"
PATH_ENV = "OTEL_METRICS_CONFIG_PATH"

_TOP_KEYS = ("service_name", *SECTIONS)
_ENTRY_KEYS = ("name", "description", "unit", "capture", "max_series")
_HISTOGRAM_KEYS = (*_ENTRY_KEYS, "buckets")


class MetricsConfigError(ValueError):
    """A metrics config file has problems; ``errors`` lists every one of them."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors: tuple[str, ...] = tuple(errors)
        super().__init__(
            f"{len(self.errors)} problem(s) in the metrics config:\n"
            + "\n".join(f"  - {e}" for e in self.errors)
        )


@dataclass(frozen=True)
class MetricSpec:
    """One declared instrument.

    >>> MetricSpec("histogram", "latency_seconds", unit="s").buckets[:2]
    (0.005, 0.01)
    """

    kind: MetricKind
    name: str
    description: str = ""
    unit: str = "1"
    capture: bool = True
    buckets: tuple[float, ...] | None = None
    max_series: int | None = None

    def __post_init__(self) -> None:
        if self.kind == "histogram" and self.unit == "s" and self.buckets is None:
            object.__setattr__(self, "buckets", DEFAULT_SECONDS_BUCKETS)


@dataclass
class MetricsConfig:
    """The metrics of one service, in file order.

    >>> cfg = MetricsConfig("svc", {"hits": MetricSpec("counter", "hits")})
    >>> [s.name for s in cfg.counters]
    ['hits']
    """

    service_name: str
    metrics: dict[str, MetricSpec] = field(default_factory=dict)
    source: Path | None = None
    errors: tuple[str, ...] = ()

    def _of(self, kind: MetricKind) -> list[MetricSpec]:
        return [s for s in self.metrics.values() if s.kind == kind]

    @property
    def counters(self) -> list[MetricSpec]:
        """Counter specs, including ``capture: false`` ones."""
        return self._of("counter")

    @property
    def histograms(self) -> list[MetricSpec]:
        """Histogram specs, including ``capture: false`` ones."""
        return self._of("histogram")

    @property
    def gauges(self) -> list[MetricSpec]:
        """Gauge specs, including ``capture: false`` ones."""
        return self._of("gauge")

    @property
    def up_down_counters(self) -> list[MetricSpec]:
        """Up-down counter specs, including ``capture: false`` ones."""
        return self._of("up_down_counter")


# --------------------------------------------------------------------------- registry

_loaded_lock = threading.Lock()
_loaded: list[MetricsConfig] = []
#: Called with each newly remembered config (``sdk`` warns about configs loaded too late).
_listeners: list[Callable[[MetricsConfig], None]] = []


def _remember(config: MetricsConfig) -> None:
    with _loaded_lock:
        if any(c is config for c in _loaded):
            return
        _loaded.append(config)
    for listener in _listeners:
        try:
            listener(config)
        except Exception:  # a listener must never break config loading
            logger.debug("config listener %r failed", listener, exc_info=True)


def loaded_configs() -> tuple[MetricsConfig, ...]:
    """Every config loaded (or given to a client) so far, oldest first.

    ``setup_metrics`` reads it to build Views (``max_series``).
    """
    with _loaded_lock:
        return tuple(_loaded)


def clear_loaded_configs() -> None:
    """Forget the configs remembered by :func:`loaded_configs` (for tests)."""
    with _loaded_lock:
        _loaded.clear()


# --------------------------------------------------------------------------- validation


def _hint(key: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "allowed keys: " + ", ".join(allowed)


#: Bucket boundaries must stay below this (the SDK does float arithmetic on them).
_MAX_BUCKET = 1e300


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping.

    Plain ``safe_load`` keeps the last value: a second ``counters:`` section would
    silently replace the first, losing every metric in it.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: dict[object, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`, not a key
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice (lines {first} and "
                    f"{key_node.start_mark.line + 1}); merge them into one",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def bucket_problem(value: object) -> str | None:
    """What is wrong with *value* as histogram buckets, or ``None`` if it is fine."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return f"expected a list of numbers, got {type(value).__name__}"
    if not value:
        return "empty list; omit 'buckets' to use the defaults"
    previous = -math.inf
    for i, b in enumerate(value):
        if isinstance(b, bool) or not isinstance(b, int | float):
            return f"item {i} ({b!r}) is not a number"
        try:
            finite = math.isfinite(b) and abs(float(b)) < _MAX_BUCKET
        except OverflowError:  # an int too large for a float
            finite = False
        if not finite:
            shown = b if isinstance(b, float) or abs(b) < 10**20 else f"{str(b)[:12]}..."
            return f"item {i} ({shown}) is not finite or too large; use numbers below 1e300"
        if b <= previous:
            return f"item {i} ({b!r}) is not greater than the one before; sort them, no duplicates"
        previous = b
    return None


class _Collector:
    """Builds specs from a parsed document, gathering error messages."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []
        self.metrics: dict[str, MetricSpec] = {}
        self.declared_at: dict[str, str] = {}

    def error(self, where: str, msg: str) -> None:
        self.errors.append(f"{self.source}: {where}: {msg}")

    def document(self, doc: object) -> str | None:
        """Read a parsed YAML document; return its ``service_name`` if any."""
        if doc is None:
            return None
        if not isinstance(doc, Mapping):
            self.error(
                "top level",
                f"expected a mapping with keys {', '.join(_TOP_KEYS)}, "
                f"got a {type(doc).__name__}; put the entries under 'counters:' or "
                "'histograms:'",
            )
            return None
        service: str | None = None
        for key, value in doc.items():
            if key == "service_name":
                if isinstance(value, str):
                    service = value
                else:
                    self.error(
                        "key 'service_name'",
                        f"expected a string, got {value!r}; write service_name: my_service",
                    )
            elif key in SECTIONS:
                self.section(str(key), value)
            else:
                self.error(f"key {key!r}", f"unknown top-level key; {_hint(str(key), _TOP_KEYS)}")
        return service

    def section(self, section: str, value: object) -> None:
        if value is None:
            self.error(
                f"section {section!r}",
                "empty section (null); add '- name: ...' entries under it or remove the key",
            )
            return
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
            self.error(
                f"section {section!r}",
                f"expected a list of entries ('- name: ...'), got a {type(value).__name__}",
            )
            return
        for index, entry in enumerate(value):
            spec = self.entry(section, index, entry)
            if spec is not None:
                self.metrics[spec.name] = spec

    def entry(self, section: str, index: int, entry: object) -> MetricSpec | None:
        kind = SECTIONS[section]
        where = f"{section}[{index}]"
        if not isinstance(entry, Mapping):
            self.error(
                where,
                f"expected a mapping like '- name: my_metric', got {entry!r}; "
                "write each entry as '- name: ...' with its keys indented below",
            )
            return None
        name = entry.get("name")
        if name is None:
            self.error(where, "key 'name': missing; every entry needs '- name: my_metric'")
            return None
        if not isinstance(name, str) or INSTRUMENT_NAME_RE.fullmatch(name) is None:
            self.error(
                where,
                f"key 'name': {name!r} is not a valid OpenTelemetry instrument name; use a "
                "letter then up to 254 letters, digits, '_', '.', '/' or '-'",
            )
            return None
        where = f"{section}[{index}] {name!r}"
        ok = True
        allowed = _HISTOGRAM_KEYS if kind == "histogram" else _ENTRY_KEYS
        for key in entry:
            if key in allowed:
                continue
            if key == "buckets":
                self.error(where, "key 'buckets': only histograms take buckets; remove it")
            else:
                self.error(where, f"key {key!r}: unknown key; {_hint(str(key), allowed)}")
            ok = False

        description = entry.get("description", "")
        if description is None:
            description = ""
        if not isinstance(description, str):
            self.error(
                where, f"key 'description': expected a string, got {description!r}; quote it"
            )
            ok = False

        default_unit = "1"
        if kind == "histogram" and name.endswith("_seconds"):
            default_unit = "s"
        unit = entry.get("unit", default_unit)
        if isinstance(unit, int | float) and not isinstance(unit, bool):
            unit = str(unit)  # an unquoted `unit: 1`
        if not isinstance(unit, str) or _UNIT_RE.fullmatch(unit) is None:
            self.error(
                where,
                f"key 'unit': {unit!r} is not a valid unit; use an ASCII string of at most "
                '63 characters such as "1", "s", "By"',
            )
            ok = False

        capture = entry.get("capture", True)
        if not isinstance(capture, bool):
            self.error(
                where,
                f"key 'capture': expected a YAML boolean, got {capture!r} "
                f"({type(capture).__name__}); write capture: true or capture: false, "
                "without quotes",
            )
            ok = False

        buckets: tuple[float, ...] | None = None
        if "buckets" in entry and kind == "histogram":
            raw = entry["buckets"]
            problem = bucket_problem(raw)
            if problem is None:
                buckets = tuple(float(b) for b in raw)
            else:
                self.error(
                    where,
                    f"key 'buckets': {problem}; write e.g. buckets: [0.01, 0.1, 1]",
                )
                ok = False

        max_series = entry.get("max_series")
        if max_series is not None and (
            isinstance(max_series, bool) or not isinstance(max_series, int) or max_series < 1
        ):
            self.error(
                where,
                f"key 'max_series': expected a positive integer, got {max_series!r}; "
                "write e.g. max_series: 200",
            )
            ok = False

        if name in self.declared_at:
            self.error(
                where,
                f"key 'name': {name!r} is already declared at {self.declared_at[name]}; "
                "rename one of them or remove the duplicate",
            )
            return None
        self.declared_at[name] = f"{section}[{index}]"
        if not ok:
            return None
        return MetricSpec(
            kind=kind,
            name=name,
            description=str(description),
            unit=str(unit),
            capture=bool(capture),
            buckets=buckets,
            max_series=max_series,
        )


def _parse_file(path: Path) -> tuple[dict[str, MetricSpec], list[str], str | None]:
    collector = _Collector(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        collector.error("file", f"cannot be read ({exc}); check the path and its permissions")
        return {}, collector.errors, None
    try:
        doc = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        collector.error("YAML", f"{detail}; fix the syntax (indentation, quotes, colons)")
        return {}, collector.errors, None
    service = collector.document(doc)
    return collector.metrics, collector.errors, service


def validate_config_file(path: str | os.PathLike[str]) -> list[str]:
    """Return the problems of one config file, each as one message (empty: valid).

    >>> validate_config_file("config/metrics/my_service.yml")  # doctest: +SKIP
    []
    """
    p = Path(path)
    if not p.is_file():
        return [f"{p}: file: not found (or not a file); check the path"]
    _, errors, _ = _parse_file(p)
    return errors


# --------------------------------------------------------------------------- loading


def _strict_from_env() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _candidates(service_name: str, config_path: str | os.PathLike[str] | None) -> list[Path]:
    names = (f"{service_name}.yml", f"{service_name}.yaml")

    def expand(p: Path) -> list[Path]:
        return [p / n for n in names] if p.is_dir() else [p]

    if config_path is not None:
        return expand(Path(config_path).expanduser())
    places: list[Path] = []
    env = os.environ.get(PATH_ENV)
    if env:
        places += expand(Path(env).expanduser())
    places += [Path("config") / "metrics" / n for n in names]
    return places


def load_metrics_config(
    service_name: str,
    config_path: str | os.PathLike[str] | None = None,
    *,
    strict: bool | None = None,
) -> MetricsConfig:
    """Load the metrics config of *service_name*.

    Lookup order: *config_path* (a file, or a folder holding ``<service>.yml``);
    else ``$OTEL_METRICS_CONFIG_PATH`` (same forms) then
    ``./config/metrics/<service>.yml`` (``.yaml`` also tried).  A missing file
    logs one WARNING naming every place looked and gives an empty config.

    Problems are logged once each at ERROR and the bad entries skipped; with
    ``strict=True`` (default: ``$OTEL_ASPECTS_STRICT``) they raise
    :class:`MetricsConfigError` instead, as does a missing explicit *config_path*.

    >>> cfg = load_metrics_config("my_service")                   # doctest: +SKIP
    >>> cfg = load_metrics_config("svc", "deploy/metrics.yml", strict=True)  # doctest: +SKIP
    """
    if strict is None:
        strict = _strict_from_env()
    places = _candidates(service_name, config_path)
    found = next((p for p in places if p.is_file()), None)
    if found is None:
        looked = ", ".join(str(p.absolute()) for p in places)
        if strict and config_path is not None:
            raise MetricsConfigError([f"metrics config for {service_name!r} not found at {looked}"])
        warn_once(
            logger,
            ("config-missing", service_name, looked),
            "No metrics config for service %r: looked at %s. No metric will be recorded; "
            "create config/metrics/%s.yml or set %s.",
            service_name,
            looked,
            service_name,
            PATH_ENV,
        )
        config = MetricsConfig(service_name=service_name)
        _remember(config)
        return config

    metrics, errors, file_service = _parse_file(found)
    mismatch = None
    if file_service is not None and file_service != service_name:
        mismatch = (
            f"{found}: key 'service_name': the file declares {file_service!r} but it was "
            f"loaded for {service_name!r}; fix service_name or load the right file"
        )
        errors.append(mismatch)
    if errors and strict:
        raise MetricsConfigError(errors)
    for message in errors:
        level = logging.WARNING if message is mismatch else logging.ERROR
        warn_once(logger, ("config-error", message), "%s", message, level=level)
    config = MetricsConfig(
        service_name=service_name, metrics=metrics, source=found, errors=tuple(errors)
    )
    _remember(config)
    return config
