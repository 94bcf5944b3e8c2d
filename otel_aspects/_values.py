"""Metric values: what OpenTelemetry can export, and why anything else is dropped.

>>> checked_value(3, non_negative=True)
3
>>> checked_value(float("nan"), non_negative=False)
'not finite'
>>> checked_value(-1, non_negative=True)
'negative'
"""

from __future__ import annotations

import math
import numbers

__all__ = ("INT64_MAX", "INT64_MIN", "checked_value")

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def checked_value(value: object, *, non_negative: bool) -> int | float | str:
    """*value* as a plain ``int`` or ``float``, or a short reason why it is dropped.

    ``bool``, strings and ``None`` are not numbers; NaN and infinities are not
    finite; integers beyond int64 cannot be exported; counters and histograms
    take no negative values.  Other ``numbers.Real`` (``Fraction``, numpy scalars)
    are converted; ``Decimal`` is no ``numbers.Real`` and is dropped.  Never raises.
    """
    try:
        number = _number(value)
    except Exception:  # a number type whose comparisons or conversions misbehave
        return "not convertible"
    if isinstance(number, str):
        return number
    if non_negative and number < 0:
        return "negative"
    return number


def _number(value: object) -> int | float | str:
    cls = value.__class__
    if cls is float:
        return value if math.isfinite(value) else "not finite"  # type: ignore[arg-type, return-value]
    if cls is int:
        return value if INT64_MIN <= value <= INT64_MAX else "out of int64 range"  # type: ignore[operator, return-value]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return "of type " + type(value).__name__
    try:
        number: int | float = int(value) if isinstance(value, numbers.Integral) else float(value)
    except Exception:  # OverflowError, ValueError, TypeError, or a broken __float__
        return "not convertible"
    if number.__class__ not in (int, float):  # a __float__/__int__ returning a subclass
        return "not convertible"
    return _number(number)
