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
:class:`MetricsConfigError` listing all of them.  Messages stay short whatever the
file holds: every value they quote goes through :func:`~otel_aspects._warn.short_repr`,
a file over :data:`MAX_CONFIG_BYTES` is refused unread, and at most
:data:`MAX_REPORTED_ERRORS` problems are listed per file.

:func:`as_metrics_config` turns whatever a client is given as ``config=`` (a
:class:`MetricsConfig`, a mapping shaped like the YAML, a path, ``None``) into a
:class:`MetricsConfig`.  Every config loaded or given to a client is registered
(:func:`register_config`, :func:`loaded_configs`); :func:`on_config_registered`
subscribes to that.
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
from itertools import islice
from pathlib import Path
from typing import Literal

import yaml

from ._warn import BUDGET_CONFIG, short_repr, warn_once

__all__ = (
    "DEFAULT_SECONDS_BUCKETS",
    "KINDS",
    "MAPPING_SOURCE",
    "MAX_CONFIG_BYTES",
    "MAX_REPORTED_ERRORS",
    "SECTIONS",
    "MetricKind",
    "MetricSpec",
    "MetricsConfig",
    "MetricsConfigError",
    "as_metrics_config",
    "clear_loaded_configs",
    "did_you_mean",
    "load_metrics_config",
    "loaded_configs",
    "on_config_registered",
    "register_config",
    "strict_mode",
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

#: A config file larger than this (1 MiB) is refused without being parsed: the
#: largest real one is a few kB, and PyYAML needs about a second and 20 MB per MB.
MAX_CONFIG_BYTES = 1024 * 1024
#: Problems listed per file (or mapping); the rest are counted in one last message.
MAX_REPORTED_ERRORS = 200
#: How a config given as a mapping is named in messages, where a file gives its path.
MAPPING_SOURCE = "<mapping>"
#: A valid instrument name is at most 255 characters: quoted whole.
_NAME_LIMIT = 260

_TOP_KEYS = ("service_name", *SECTIONS)
_ENTRY_KEYS = ("name", "description", "unit", "capture", "max_series")
_HISTOGRAM_KEYS = (*_ENTRY_KEYS, "buckets")
_COMBINED_KEYS = (*_ENTRY_KEYS, "multiprocess")
#: How the processes' values combine in multi-process mode (``multiprocess:``), per
#: kind that may choose; counters and histograms always add up.
MULTIPROCESS_MODES: dict[str, tuple[str, ...]] = {
    "gauge": ("last", "sum", "max", "min", "live_sum"),
    "up_down_counter": ("live_sum", "sum", "max", "min"),
}


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
    #: Gauges and up-down counters: how processes combine in multi-process mode
    #: (:data:`MULTIPROCESS_MODES`; ``None``: the first, the kind's default).
    multiprocess: str | None = None

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
#: What :func:`on_config_registered` takes: called with each newly registered config.
ConfigListener = Callable[[MetricsConfig], None]
_listeners: list[ConfigListener] = []


def register_config(config: MetricsConfig) -> None:
    """Add *config* to :func:`loaded_configs` (once) and tell the listeners.

    :func:`load_metrics_config`, :func:`as_metrics_config` and every client call it;
    a config registered twice is listed once and announced once.  A listener that
    raises is logged at DEBUG and never breaks the registration.

    >>> register_config(MetricsConfig("svc"))
    """
    if not isinstance(config, MetricsConfig):
        raise TypeError(
            f"register_config() takes a MetricsConfig, got {type(config).__name__[:60]}: "
            f"{short_repr(config)}; load one with load_metrics_config() or as_metrics_config()"
        )
    with _loaded_lock:
        if any(c is config for c in _loaded):
            return
        _loaded.append(config)
        listeners = tuple(_listeners)
    for listener in listeners:
        try:
            listener(config)
        except Exception:  # a listener must never break config loading
            logger.debug("config listener %s failed", short_repr(listener), exc_info=True)


def on_config_registered(listener: ConfigListener) -> ConfigListener:
    """Call *listener* with each config registered from now on; returns *listener*.

    ``setup_metrics`` uses it to warn about configs that arrive after its Views were
    built.  Configs registered earlier are in :func:`loaded_configs`.  Registering
    the same listener twice has no effect.  Usable as a decorator.
    """
    with _loaded_lock:
        if listener not in _listeners:
            _listeners.append(listener)
    return listener


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


#: Characters of a name compared with the candidates, and candidates compared.
_MATCH_CHARS = 256
_MATCH_CANDIDATES = 10_000


def _closest(name: object, candidates: Iterable[object]) -> str | None:
    """The candidate closest to *name* (difflib, cutoff 0.6), or ``None``."""
    if not isinstance(name, str) or not name:
        return None
    try:
        pool = [c for c in islice(candidates, _MATCH_CANDIDATES) if isinstance(c, str)]
        if name in pool:
            return None
        close = difflib.get_close_matches(name[:_MATCH_CHARS], pool, n=1, cutoff=0.6)
    except Exception:  # a candidate iterable that raises
        return None
    return close[0] if close else None


def did_you_mean(name: object, candidates: Iterable[object]) -> str:
    """A hint naming the candidate closest to *name*, or ``""`` if none is close.

    Meant to be appended to a message about an undeclared name; *name* itself is
    never among the suggestions, and both are quoted in a short form.

    >>> did_you_mean("request_duraton_seconds", ["request_duration_seconds", "x"])
    " (did you mean 'request_duration_seconds'?)"
    >>> did_you_mean("zzz", ["request_duration_seconds"])
    ''
    """
    close = _closest(name, candidates)
    return f" (did you mean {short_repr(close, _NAME_LIMIT)}?)" if close is not None else ""


def _hint(key: object, allowed: Sequence[str]) -> str:
    close = _closest(key, allowed)
    if close is not None:
        return f"did you mean {close!r}?"
    return "allowed keys: " + ", ".join(allowed)


def _type_name(value: object) -> str:
    return type(value).__name__[:60]


#: Bucket boundaries must stay below this (the SDK does float arithmetic on them).
_MAX_BUCKET = 1e300


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping.

    Plain ``safe_load`` keeps the last value: a second ``counters:`` section would
    silently replace the first, losing every metric in it.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: dict[object, tuple[int, int]] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`, not a key
                continue
            key = self.construct_object(key_node, deep=deep)
            where = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            try:
                first = seen.setdefault(key, where)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first != where:  # (line, column): `{name: a, name: b}` is one line
                lines = (
                    f"line {first[0]}, columns {first[1]} and {where[1]}"
                    if first[0] == where[0]
                    else f"lines {first[0]} and {where[0]}"
                )
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {short_repr(key)} appears twice ({lines}); merge them into one",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def bucket_problem(value: object) -> str | None:
    """What is wrong with *value* as histogram buckets, or ``None`` if it is fine."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return f"expected a list of numbers, got {_type_name(value)}"
    if not value:
        return "empty list; omit 'buckets' to use the defaults"
    previous = -math.inf
    for i, b in enumerate(value):
        if isinstance(b, bool) or not isinstance(b, int | float):
            return f"item {i} ({short_repr(b)}) is not a number"
        try:
            finite = math.isfinite(b) and abs(float(b)) < _MAX_BUCKET
        except OverflowError:  # an int too large for a float
            finite = False
        if not finite:
            return (
                f"item {i} ({short_repr(b, 24)}) is not finite or too large; "
                "use numbers below 1e300"
            )
        if b <= previous:
            return (
                f"item {i} ({short_repr(b, 24)}) is not greater than the one before; "
                "sort them, no duplicates"
            )
        previous = b
    return None


class _Collector:
    """Builds specs from a parsed document, gathering error messages."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []
        self.unlisted = 0
        self.metrics: dict[str, MetricSpec] = {}
        self.declared_at: dict[str, str] = {}

    def error(self, where: str, msg: str) -> None:
        if len(self.errors) >= MAX_REPORTED_ERRORS:
            self.unlisted += 1
        else:
            self.errors.append(f"{self.source}: {where}: {msg}")

    def finish(self) -> list[str]:
        """The messages, with one last line counting those not listed."""
        if self.unlisted:
            what = "mapping" if self.source == MAPPING_SOURCE else "file"
            self.errors.append(
                f"{self.source}: {what}: {self.unlisted} more problem(s) not listed (only the "
                f"first {MAX_REPORTED_ERRORS} are); fix the ones above and check again"
            )
            self.unlisted = 0
        return self.errors

    def document(self, doc: object) -> str | None:
        """Read a parsed YAML document; return its ``service_name`` if any."""
        if doc is None:
            return None
        if not isinstance(doc, Mapping):
            self.error(
                "top level",
                f"expected a mapping with keys {', '.join(_TOP_KEYS)}, "
                f"got a {_type_name(doc)}; put the entries under 'counters:' or "
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
                        f"expected a string, got {short_repr(value)}; "
                        "write service_name: my_service",
                    )
            elif isinstance(key, str) and key in SECTIONS:
                self.section(key, value)
            else:
                self.error(
                    f"key {short_repr(key)}", f"unknown top-level key; {_hint(key, _TOP_KEYS)}"
                )
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
                f"expected a list of entries ('- name: ...'), got a {_type_name(value)}",
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
                f"expected a mapping like '- name: my_metric', got {short_repr(entry)}; "
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
                f"key 'name': {short_repr(name)} is not a valid OpenTelemetry instrument name; "
                "use a letter then up to 254 letters, digits, '_', '.', '/' or '-'",
            )
            return None
        where = f"{section}[{index}] {short_repr(name, _NAME_LIMIT)}"
        ok = True
        allowed = (
            _HISTOGRAM_KEYS
            if kind == "histogram"
            else _COMBINED_KEYS
            if kind in MULTIPROCESS_MODES
            else _ENTRY_KEYS
        )
        for key in entry:
            if isinstance(key, str) and key in allowed:
                continue
            if key == "buckets":
                self.error(where, "key 'buckets': only histograms take buckets; remove it")
            elif key == "multiprocess":
                self.error(
                    where,
                    "key 'multiprocess': counters and histograms always add up across "
                    "processes; only gauges and up_down_counters choose; remove it",
                )
            else:
                self.error(where, f"key {short_repr(key)}: unknown key; {_hint(key, allowed)}")
            ok = False

        description = entry.get("description", "")
        if description is None:
            description = ""
        if not isinstance(description, str):
            self.error(
                where,
                f"key 'description': expected a string, got {short_repr(description)}; quote it",
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
                f"key 'unit': {short_repr(unit)} is not a valid unit; use an ASCII string of "
                'at most 63 characters such as "1", "s", "By"',
            )
            ok = False

        capture = entry.get("capture", True)
        if not isinstance(capture, bool):
            self.error(
                where,
                f"key 'capture': expected a YAML boolean, got {short_repr(capture)} "
                f"({_type_name(capture)}); write capture: true or capture: false, "
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
                f"key 'max_series': expected a positive integer, got {short_repr(max_series)}; "
                "write e.g. max_series: 200",
            )
            ok = False

        multiprocess = entry.get("multiprocess")
        modes = MULTIPROCESS_MODES.get(kind, ())
        if multiprocess is not None and modes and multiprocess not in modes:
            self.error(
                where,
                f"key 'multiprocess': {short_repr(multiprocess)} is not a mode for {kind}s; "
                f"use one of {', '.join(modes)} (default {modes[0]})",
            )
            ok = False

        if name in self.declared_at:
            self.error(
                where,
                f"key 'name': {short_repr(name, _NAME_LIMIT)} is already declared at "
                f"{self.declared_at[name]}; rename one of them or remove the duplicate",
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
            multiprocess=multiprocess if modes else None,
        )


def _squeeze(text: str, limit: int = 600) -> str:
    """*text* on one line, at most *limit* characters, ending in ``...`` if cut.

    Only the first ``2 * limit`` characters are looked at (bounded work on a huge
    text); a text longer than that is cut even if they collapse to fewer.
    """
    head = " ".join(text[: limit * 2].split())
    if len(head) <= limit and len(text) <= limit * 2:
        return head
    return head[: limit - 3] + "..."


def _read_text(path: Path, collector: _Collector) -> str | None:
    """The file's text, or ``None`` after reporting why it cannot be used."""
    too_big = (
        f"over the limit of {MAX_CONFIG_BYTES} bytes for a metrics config (MAX_CONFIG_BYTES) "
        "and not read; a real one is a few kB: check that this is the right file, or split "
        "it into one file per service"
    )
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            collector.error("file", f"{size} bytes is {too_big}")
            return None
        with path.open("rb") as stream:  # bounded: a file growing meanwhile is not read whole
            data = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        collector.error(
            "file", f"cannot be read ({_squeeze(str(exc))}); check the path and its permissions"
        )
        return None
    if len(data) > MAX_CONFIG_BYTES:
        collector.error("file", f"more than {MAX_CONFIG_BYTES} bytes is {too_big}")
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        collector.error("file", f"is not UTF-8 text ({_squeeze(str(exc))}); save it as UTF-8")
        return None


def _parse_file(path: Path) -> tuple[dict[str, MetricSpec], list[str], str | None]:
    collector = _Collector(str(path))
    text = _read_text(path, collector)
    if text is None:
        return {}, collector.finish(), None
    try:
        doc = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        collector.error(
            "YAML", f"{_squeeze(str(exc))}; fix the syntax (indentation, quotes, colons)"
        )
        return {}, collector.finish(), None
    except RecursionError:
        collector.error(
            "YAML",
            "nested too deeply to be read; a metrics config has three levels (section, "
            "entry, key): look for runaway brackets or indentation",
        )
        return {}, collector.finish(), None
    except Exception as exc:  # PyYAML's constructors: an int over 4300 digits, a bad date
        collector.error(
            "YAML",
            f"a value cannot be read ({type(exc).__name__}: {_squeeze(str(exc), 200)}); "
            "fix it, or quote it to make it a string",
        )
        return {}, collector.finish(), None
    service = collector.document(doc)
    return collector.metrics, collector.finish(), service


def _check_file(path: str | os.PathLike[str]) -> tuple[dict[str, MetricSpec], list[str]]:
    """The specs and the problems of one file (the CLI's check, without logging)."""
    p = Path(path)
    if not p.is_file():
        return {}, [f"{p}: file: not found (or not a file); check the path"]
    metrics, errors, _ = _parse_file(p)
    return metrics, errors


def validate_config_file(path: str | os.PathLike[str]) -> list[str]:
    """Return the problems of one config file, each as one message (empty: valid).

    >>> validate_config_file("config/metrics/my_service.yml")  # doctest: +SKIP
    []
    """
    return _check_file(path)[1]


# --------------------------------------------------------------------------- loading


def strict_mode() -> bool:
    """Whether ``$OTEL_ASPECTS_STRICT`` asks for strict mode (``1``, ``true``, ``yes``, ``on``).

    Read at each call.  In strict mode configuration problems raise instead of
    being logged.
    """
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


def _finish(
    service_name: str,
    metrics: dict[str, MetricSpec],
    errors: list[str],
    declared_service: str | None,
    *,
    label: str,
    source: Path | None,
    strict: bool,
) -> MetricsConfig:
    """Report *errors* (raise if *strict*, else log once each) and register the config."""
    mismatch = None
    if declared_service is not None and declared_service != service_name:
        what = "file" if source is not None else "mapping"
        mismatch = (
            f"{label}: key 'service_name': the {what} declares {short_repr(declared_service)} "
            f"but it was loaded for {short_repr(service_name)}; fix service_name or load "
            "the right one"
        )
        errors.append(mismatch)
    if errors and strict:
        raise MetricsConfigError(errors)
    for message in errors:
        level = logging.WARNING if message is mismatch else logging.ERROR
        warn_once(
            logger, ("config-error", message), "%s", message, level=level, budget=BUDGET_CONFIG
        )
    config = MetricsConfig(
        service_name=service_name, metrics=metrics, source=source, errors=tuple(errors)
    )
    register_config(config)
    return config


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
    logs one WARNING naming every place looked and gives an empty config.  A file
    over :data:`MAX_CONFIG_BYTES` is refused (an error) without being parsed.

    Problems are logged once each at ERROR and the bad entries skipped; with
    ``strict=True`` (default: :func:`strict_mode`) they raise
    :class:`MetricsConfigError` instead, as does a missing explicit *config_path*.

    >>> cfg = load_metrics_config("my_service")                   # doctest: +SKIP
    >>> cfg = load_metrics_config("svc", "deploy/metrics.yml", strict=True)  # doctest: +SKIP
    """
    if strict is None:
        strict = strict_mode()
    places = _candidates(service_name, config_path)
    found = next((p for p in places if p.is_file()), None)
    if found is None:
        looked = ", ".join(str(p.absolute()) for p in places)
        if strict and config_path is not None:
            raise MetricsConfigError(
                [f"metrics config for {short_repr(service_name)} not found at {looked}"]
            )
        warn_once(
            logger,
            ("config-missing", service_name, looked),
            "No metrics config for service %s: looked at %s. No metric will be recorded; "
            "create config/metrics/%s.yml or set %s.",
            short_repr(service_name),
            looked,
            str(service_name)[:_NAME_LIMIT],
            PATH_ENV,
            budget=BUDGET_CONFIG,
        )
        config = MetricsConfig(service_name=service_name)
        register_config(config)
        return config

    metrics, errors, file_service = _parse_file(found)
    return _finish(
        service_name, metrics, errors, file_service, label=str(found), source=found, strict=strict
    )


def as_metrics_config(
    value: object, service_name: str, *, strict: bool | None = None
) -> MetricsConfig:
    """The :class:`MetricsConfig` meant by *value*, what a client takes as ``config=``.

    - ``None``: :func:`load_metrics_config` of *service_name* (the usual lookup);
    - a :class:`MetricsConfig`: itself;
    - a mapping shaped like the YAML file (``{"counters": [{"name": "hits"}]}``):
      validated exactly as a parsed file, with the same messages naming
      ``<mapping>`` where a file gives its path, and the same *strict* rule;
    - a path (``str`` or ``os.PathLike``): :func:`load_metrics_config` of that path.

    Anything else raises :class:`TypeError` saying what is accepted.  The result is
    registered (:func:`loaded_configs`).

    >>> as_metrics_config({"counters": [{"name": "hits_total"}]}, "svc").counters[0].name
    'hits_total'
    """
    if value is None:
        return load_metrics_config(service_name, strict=strict)
    if isinstance(value, MetricsConfig):
        register_config(value)
        return value
    if isinstance(value, str | os.PathLike):
        try:
            path = os.fspath(value)
        except Exception as exc:
            raise TypeError(
                f"config path {short_repr(value)} cannot be read as a path "
                f"({type(exc).__name__}: {_squeeze(str(exc), 200)}); pass a str or a pathlib.Path"
            ) from None
        if not isinstance(path, str):
            raise TypeError(
                f"config path {short_repr(path)} is {_type_name(path)}, not str; "
                "pass the path as a str or a pathlib.Path"
            )
        return load_metrics_config(service_name, path, strict=strict)
    if isinstance(value, Mapping):
        if strict is None:
            strict = strict_mode()
        collector = _Collector(MAPPING_SOURCE)
        try:
            declared = collector.document(value)
        except Exception as exc:  # a user Mapping whose methods raise
            collector.error(
                "top level",
                f"cannot be read ({type(exc).__name__}: {_squeeze(str(exc), 200)}); "
                "pass a plain dict",
            )
            declared = None
        return _finish(
            service_name,
            collector.metrics,
            collector.finish(),
            declared,
            label=MAPPING_SOURCE,
            source=None,
            strict=strict,
        )
    raise TypeError(
        "config must be a MetricsConfig, a mapping shaped like the YAML file "
        "(e.g. {'counters': [{'name': 'requests_total'}]}), a path (str or os.PathLike) "
        f"or None; got {_type_name(value)}: {short_repr(value)}"
    )
