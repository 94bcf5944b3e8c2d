"""Label-value hygiene shared by the services.

Every label value the services record goes through one of these functions, so that

- the set of values per label is bounded: a value is kept only when it belongs to a
  known, bounded set (fixed vocabularies, or names registered in a capped registry),
  anything else becomes ``"unknown"`` / ``"other"``;
- no credential can ever reach a label: label values are never derived from request
  input other than by membership in such a set.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

__all__ = (
    "OTHER",
    "OUTCOMES",
    "UNKNOWN",
    "label_from",
    "one_of",
    "outcome",
)

#: The library's outcome convention (docs/DESIGN.md): one convention everywhere.
OUTCOMES: frozenset[str] = frozenset({"success", "failure", "cancelled"})
UNKNOWN = "unknown"
OTHER = "other"


def outcome(value: bool | str | None) -> str:
    """``True``/``"success"`` -> ``"success"``, ``"cancelled"`` -> ``"cancelled"``,
    anything else -> ``"failure"``."""
    if value is True:
        return "success"
    if isinstance(value, str) and value in OUTCOMES:
        return value
    return "failure"


def one_of(value: object, allowed: Collection[str], default: str = UNKNOWN) -> str:
    """*value* if it is one of *allowed*, else *default*."""
    if isinstance(value, str) and value in allowed:
        return value
    return default


def label_from(labels: Mapping[str, object], key: str, allowed: Collection[str]) -> str:
    """``labels[key]`` bounded by *allowed* (``"unknown"`` when absent or not allowed)."""
    return one_of(labels.get(key), allowed)
