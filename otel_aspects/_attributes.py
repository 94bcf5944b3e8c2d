"""Coercion of attribute mappings to ones OpenTelemetry accepts.

:func:`clean_attributes` never raises.  A ``dict`` with ``str`` keys and
``str``/``bool``/``int``/``float`` values (no NaN; keys non-empty; keys and
string values at most :data:`MAX_VALUE_LENGTH` characters) is returned as is; anything else is
coerced, and each distinct cause is logged once (``warn_once``):

- ``None`` -> ``{}``; a non-mapping -> ``{}``;
- a non-``str`` key -> ``str(key)``; an empty key is dropped;
- a ``None`` value is dropped;
- a ``str``/``int``/``float`` subclass (enums) -> the plain value, silently;
- a float NaN -> ``"nan"`` (NaN never equals itself, so each NaN would make a
  new time series);
- a list/tuple of one primitive type -> a tuple (at most
  :data:`MAX_SEQUENCE_LENGTH` items);
- any other value (nested mappings, mixed sequences, objects, bytes) -> a short
  string, at most :data:`MAX_VALUE_LENGTH` characters;
- strings (values and keys) longer than :data:`MAX_VALUE_LENGTH` are truncated.

>>> clean_attributes({"route": "/a", 1: None, "obj": {"x": 1}}, "m")
{'route': '/a', 'obj': "{'x': 1}"}
"""

from __future__ import annotations

import logging
import reprlib
from collections.abc import Mapping
from typing import Any

from ._values import INT64_MAX, INT64_MIN
from ._warn import short_repr, warn_once

__all__ = ("MAX_SEQUENCE_LENGTH", "MAX_VALUE_LENGTH", "clean_attributes")

logger = logging.getLogger("otel_aspects.attributes")

#: Longest string kept for an attribute key or value (longer ones are cut).
MAX_VALUE_LENGTH = 256
#: Most items kept in a sequence attribute value.
MAX_SEQUENCE_LENGTH = 32

AttributeValue = str | bool | int | float | tuple[str, ...] | tuple[int, ...] | tuple[float, ...]
_PRIMITIVES = frozenset((str, bool, int, float))

_repr = reprlib.Repr()
_repr.maxlevel = 2
_repr.maxdict = _repr.maxlist = _repr.maxtuple = _repr.maxset = 8
_repr.maxstring = _repr.maxother = 64


def clean_attributes(attributes: object, metric_name: str) -> dict[str, Any]:
    """Return an OpenTelemetry-valid attribute dict for *attributes* (never raises)."""
    if attributes is None:
        return {}
    if type(attributes) is dict:
        for key, value in attributes.items():
            cls = value.__class__
            if (
                key.__class__ is not str
                or cls not in _PRIMITIVES
                or (cls is str and (len(value) > MAX_VALUE_LENGTH or not value.isascii()))
                or (cls is float and value != value)
                or (cls is int and not INT64_MIN <= value <= INT64_MAX)
                or not 0 < len(key) <= MAX_VALUE_LENGTH
                or not key.isascii()
            ):
                break
        else:
            return attributes
    try:
        return _slow(attributes, metric_name)
    except Exception as exc:  # a Mapping whose iteration fails, and the like
        warn_once(
            logger,
            ("attr-error", metric_name, type(exc).__name__),
            "otel_aspects: attributes for metric %r could not be read (%s: %s); "
            "recorded without attributes",
            metric_name,
            type(exc).__name__,
            exc,
            budget="labels",
        )
        return {}


def _slow(attributes: object, metric_name: str) -> dict[str, Any]:
    if not isinstance(attributes, Mapping):
        warn_once(
            logger,
            ("attr-type", metric_name, type(attributes).__name__),
            "otel_aspects: attributes for metric %r must be a mapping, got %s; "
            "recorded without attributes",
            metric_name,
            type(attributes).__name__,
            budget="labels",
        )
        return {}
    cleaned: dict[str, Any] = {}
    for key, value in attributes.items():
        if key.__class__ is not str:
            if isinstance(key, str):
                key = str.__str__(key)
            else:
                warn_once(
                    logger,
                    ("attr-key-type", metric_name, type(key).__name__),
                    "otel_aspects: attribute key of type %s on metric %r converted to str",
                    type(key).__name__,
                    metric_name,
                    budget="labels",
                )
                key = _short(key)
        key = _utf8(key, "key", metric_name)
        if not key:
            warn_once(
                logger,
                ("attr-key-empty", metric_name),
                "otel_aspects: empty attribute key on metric %r dropped",
                metric_name,
                budget="labels",
            )
            continue
        if len(key) > MAX_VALUE_LENGTH:
            warn_once(
                logger,
                ("attr-key-long", metric_name),
                "otel_aspects: attribute key longer than %d characters on metric %r truncated",
                MAX_VALUE_LENGTH,
                metric_name,
                budget="labels",
            )
            key = key[:MAX_VALUE_LENGTH]
        if value is None:
            warn_once(
                logger,
                ("attr-none", metric_name, key),
                "otel_aspects: attribute %r of metric %r is None; dropped",
                key,
                metric_name,
                budget="labels",
            )
            continue
        cleaned[key] = _value(value, key, metric_name)
    return cleaned


def _value(value: object, key: str, metric_name: str) -> AttributeValue:
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return _string(str.__str__(value), key, metric_name)
    if isinstance(value, int):
        number = int(value)
        if INT64_MIN <= number <= INT64_MAX:
            return number
        warn_once(
            logger,
            ("attr-int-range", metric_name, key),
            "otel_aspects: attribute %s of metric %s is an integer beyond int64; recorded "
            "as a string (exporters cannot carry it)",
            short_repr(key),
            short_repr(metric_name),
            budget="labels",
        )
        return _short(number)
    if isinstance(value, float):
        return "nan" if value != value else float(value)
    if isinstance(value, list | tuple):
        sequence = _sequence(value)
        if sequence is not None:
            if len(sequence) > MAX_SEQUENCE_LENGTH:
                warn_once(
                    logger,
                    ("attr-seq-long", metric_name, key),
                    "otel_aspects: attribute %r of metric %r has more than %d items; truncated",
                    key,
                    metric_name,
                    MAX_SEQUENCE_LENGTH,
                    budget="labels",
                )
                sequence = sequence[:MAX_SEQUENCE_LENGTH]
            if (
                sequence
                and type(sequence[0]) is int
                and not all(INT64_MIN <= item <= INT64_MAX for item in sequence)
            ):
                # One item beyond int64: the whole (homogeneous) sequence as strings.
                _value(max(sequence, key=abs), key, metric_name)  # its one warning
                return tuple(_short(item) for item in sequence)
            return tuple(_string(s, key, metric_name) if type(s) is str else s for s in sequence)
    warn_once(
        logger,
        ("attr-value-type", metric_name, key, type(value).__name__),
        "otel_aspects: attribute %r of metric %r has a value of type %s; converted to a "
        "string of at most %d characters",
        key,
        metric_name,
        type(value).__name__,
        MAX_VALUE_LENGTH,
        budget="labels",
    )
    return _short(value)


def _sequence(value: list[Any] | tuple[Any, ...]) -> Any:
    """A tuple if *value* holds items of one primitive type (no NaN), else ``None``."""
    if not value:
        return ()
    first = type(value[0])
    if first not in _PRIMITIVES or any(type(v) is not first for v in value):
        return None
    if first is float and any(v != v for v in value):
        return None
    return tuple(value)


def _utf8(text: str, what: str, metric_name: str) -> str:
    """*text* if it encodes as UTF-8; else with each lone surrogate replaced (U+FFFD).

    Python strings may hold lone surrogates (``json.loads('"\\ud800"')``); no exporter
    can encode them, and one would break every later scrape or export.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        warn_once(
            logger,
            ("attr-utf8", metric_name, what),
            "otel_aspects: an attribute %s of metric %s is not valid Unicode (a lone "
            "surrogate); the invalid characters are replaced with U+FFFD",
            what,
            short_repr(metric_name),
            budget="labels",
        )
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _string(value: str, key: str, metric_name: str) -> str:
    value = _utf8(value, "value", metric_name)
    if len(value) > MAX_VALUE_LENGTH:
        warn_once(
            logger,
            ("attr-value-long", metric_name, key),
            "otel_aspects: attribute %r of metric %r longer than %d characters; truncated",
            key,
            metric_name,
            MAX_VALUE_LENGTH,
            budget="labels",
        )
        return value[:MAX_VALUE_LENGTH]
    return value


def _short(value: object) -> str:
    """A bounded string for any object (never raises)."""
    try:
        if isinstance(value, Mapping | list | tuple | set | frozenset):
            text = _repr.repr(value)
        elif isinstance(value, bytes | bytearray):
            text = bytes(value[:MAX_VALUE_LENGTH]).decode("utf-8", "replace")
        else:
            text = str(value)
    except Exception:  # a __str__ that raises, or an int beyond Python's digit limit
        text = short_repr(value)
    return _utf8(text[:MAX_VALUE_LENGTH], "value", "")
