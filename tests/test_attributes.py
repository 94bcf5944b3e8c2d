"""otel_aspects._attributes.clean_attributes at its edges: limits, the fast path, warnings.

Written against the survivors of a mutation run (docs/MUTATION.md): each limit is
checked on both sides (exactly at it: kept, silent; one past it: cut, one warning),
and the fast path is checked to hand back the very dict it was given.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from otel_aspects._attributes import MAX_SEQUENCE_LENGTH, MAX_VALUE_LENGTH, clean_attributes


def test_limits_are_the_documented_ones() -> None:
    assert (MAX_VALUE_LENGTH, MAX_SEQUENCE_LENGTH) == (256, 32)


def test_fast_path_hands_back_the_same_dict(caplog: pytest.LogCaptureFixture) -> None:
    """Keys and strings of exactly 256 characters, bool/int/float: the dict itself, silently."""
    attrs = {"k" * 256: "v" * 256, "b": True, "i": -3, "f": 0.5, "inf": math.inf}
    with caplog.at_level(logging.DEBUG, logger="otel_aspects"):
        assert clean_attributes(attrs, "m") is attrs
    assert caplog.records == []


@pytest.mark.parametrize(
    "attrs",
    [
        {"k" * 257: "v"},
        {"k": "v" * 257},
        {"": "v"},
        {"k": math.nan},
        {"k": None},
        {"k": [1, 2]},
        {1: "v"},
    ],
    ids=["long-key", "long-value", "empty-key", "nan", "none", "list", "int-key"],
)
def test_anything_else_leaves_the_fast_path(attrs: dict[Any, Any]) -> None:
    """Each of these needs cleaning: a new dict, never the caller's."""
    assert clean_attributes(attrs, "m") is not attrs


def test_cut_keys_and_values_warn_once_per_cause(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_aspects"):
        assert clean_attributes({"k" * 257: 1}, "m") == {"k" * 256: 1}
        assert clean_attributes({"k" * 258: 1, "j" * 300: 2}, "m") == {"k" * 256: 1, "j" * 256: 2}
        assert clean_attributes({"a": "v" * 257, "b": None}, "m") == {"a": "v" * 256}
        assert clean_attributes({"a": "v" * 300}, "m") == {"a": "v" * 256}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages  # key cut, value cut, None dropped: once each
    assert "key longer than 256" in messages[0]
    assert "'a'" in messages[1] and "truncated" in messages[1]
    assert "'b'" in messages[2] and "None" in messages[2]


def test_strings_at_the_limit_are_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    """A 256-character string inside a sequence, or beside a value that needs cleaning,
    goes through the slow path: kept whole and not reported as truncated."""
    key = "k" * 256
    with caplog.at_level(logging.WARNING, logger="otel_aspects"):
        out = clean_attributes({"s": ["x" * 256, "y"], "t": "z" * 256, "n": math.nan, key: 1}, "m")
    assert out == {"s": ("x" * 256, "y"), "t": "z" * 256, "n": "nan", key: 1}
    assert [r.getMessage() for r in caplog.records] == []


def test_sequence_limit(caplog: pytest.LogCaptureFixture) -> None:
    """32 items are kept, silently; 33 are cut to 32 with one warning; short ones are silent."""
    with caplog.at_level(logging.WARNING, logger="otel_aspects"):
        assert clean_attributes({"a": list(range(32))}, "m") == {"a": tuple(range(32))}
        assert clean_attributes({"a": [1, 2, 3]}, "m") == {"a": (1, 2, 3)}
        assert caplog.records == []
        assert clean_attributes({"a": list(range(33))}, "m") == {"a": tuple(range(32))}
        assert clean_attributes({"a": ["x" * 257]}, "m") == {"a": ("x" * 256,)}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "more than 32 items" in messages[0], messages
    assert "truncated" in messages[1]


def test_float_sequences_and_nan() -> None:
    """Finite floats make a tuple; a NaN anywhere makes the sequence a string."""
    assert clean_attributes({"a": [1.5, 2.5]}, "m") == {"a": (1.5, 2.5)}
    assert clean_attributes({"a": (math.inf, 0.0)}, "m") == {"a": (math.inf, 0.0)}
    out = clean_attributes({"a": [1.5, math.nan]}, "m")
    assert out == {"a": "[1.5, nan]"}
    assert clean_attributes({"a": [math.nan]}, "m") == {"a": "[nan]"}
    assert clean_attributes({"a": []}, "m") == {"a": ()}
    assert clean_attributes({"a": [1, "x"]}, "m") == {"a": "[1, 'x']"}  # mixed: a string
    assert clean_attributes({"a": [True, 1]}, "m") == {"a": "[True, 1]"}  # bool is not int


def test_empty_keys_are_dropped_and_values_kept_in_order() -> None:
    assert clean_attributes({"": 1, "a": 2, None: 3}, "m") == {"a": 2, "None": 3}


class Color(enum.Enum):
    RED = "red"


class Shade(enum.StrEnum):
    DARK = "dark"


class Level(enum.IntEnum):
    HIGH = 3


class Ratio(float):
    pass


class Name(str):
    pass


def test_subclasses_become_plain_values(caplog: pytest.LogCaptureFixture) -> None:
    """str/int/float subclasses (enums) give the plain value silently; bool stays bool."""
    with caplog.at_level(logging.WARNING, logger="otel_aspects"):
        out = clean_attributes(
            {Name("k"): Shade.DARK, "l": Level.HIGH, "r": Ratio(0.25), "b": False}, "m"
        )
    assert out == {"k": "dark", "l": 3, "r": 0.25, "b": False}
    assert [type(v) for v in out.values()] == [str, int, float, bool]
    assert [type(k) for k in out] == [str, str, str, str]
    assert caplog.records == []
    # A plain Enum is no primitive: a string, with a warning.
    assert clean_attributes({"c": Color.RED}, "m") == {"c": "Color.RED"}


def test_non_str_keys_are_converted_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_aspects"):
        assert clean_attributes({1: "a", 2: "b"}, "m") == {"1": "a", "2": "b"}
        assert clean_attributes({(1, 2): "a"}, "m") == {"(1, 2)": "a"}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "int" in messages[0] and "tuple" in messages[1], messages


def test_other_values_become_bounded_strings() -> None:
    assert clean_attributes({"d": {"x": 1}}, "m") == {"d": "{'x': 1}"}
    assert clean_attributes({"b": b"abc"}, "m") == {"b": "abc"}
    assert clean_attributes({"b": bytearray(b"\xff")}, "m") == {"b": "\ufffd"}
    assert clean_attributes({"b": b"x" * 300}, "m") == {"b": "x" * 256}
    long_set = clean_attributes({"s": set(range(100))}, "m")["s"]
    assert isinstance(long_set, str) and len(long_set) <= 256 and "..." in long_set
    assert len(clean_attributes({"o": "o" * 1000 + "!"}, "m")["o"]) == 256

    class Loud:
        def __str__(self) -> str:
            return "L" * 1000

    assert clean_attributes({"o": Loud()}, "m") == {"o": "L" * 256}

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError

    (shown,) = clean_attributes({"o": Broken()}, "m").values()  # a bounded repr instead
    assert isinstance(shown, str) and "Broken" in shown and len(shown) <= 256


class Unreadable(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise OSError("gone")

    def __len__(self) -> int:
        return 1


def test_bad_containers(caplog: pytest.LogCaptureFixture) -> None:
    """None: nothing, silently; not a mapping, or a mapping that cannot be read: nothing,
    one warning each."""
    with caplog.at_level(logging.WARNING, logger="otel_aspects"):
        assert clean_attributes(None, "m") == {}
        assert caplog.records == []
        assert clean_attributes(["a", "b"], "m") == {}
        assert clean_attributes(Unreadable(), "m") == {}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "must be a mapping, got list" in messages[0]
    assert "could not be read (OSError: gone)" in messages[1]


def test_dict_subclass_takes_the_slow_path() -> None:
    """Only a plain dict is handed back as is; a subclass gets a plain copy."""

    class Attrs(dict[str, Any]):
        pass

    attrs = Attrs(a=1)
    out = clean_attributes(attrs, "m")
    assert out == {"a": 1} and type(out) is dict


class Long:
    def __repr__(self) -> str:
        return "o" * 70


def test_nested_values_are_abbreviated_like_this() -> None:
    """The bounded repr of a value that is no primitive: at most 8 items per container,
    2 levels deep, 64 characters per string or other object inside."""
    y = "y" * 29 + "..." + "y" * 30

    def short(value: object) -> object:
        return clean_attributes({"a": value}, "m")["a"]

    assert short([*range(9), "x"]) == "[0, 1, 2, 3, 4, 5, 6, 7, ...]"
    assert (
        short({i: i for i in range(9)}) == "{0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, ...}"
    )
    assert short((1, "x", *range(8))) == "(1, 'x', 0, 1, 2, 3, 4, 5, ...)"
    assert short(set(range(9))) == "{0, 1, 2, 3, 4, 5, 6, 7, ...}"
    assert short([1, "x", [2, [3, [4]]]]) == "[1, 'x', [2, [...]]]"
    assert short([1, "y" * 70]) == f"[1, '{y}']"
    assert short([1, Long()]) == "[1, " + "o" * 30 + "..." + "o" * 31 + "]"


def test_int64_bounds_both_sides() -> None:
    """Ints within int64 stay ints (the extremes included); one past either end becomes
    a string, in a sequence too (post-merge mutation survivors)."""
    lo, hi = -(2**63), 2**63 - 1
    extremes = {"a": lo, "b": hi}
    assert clean_attributes(extremes, "m") is extremes  # still the fast path
    slow = clean_attributes({"a": lo, "b": hi, "c": Level.HIGH, "n": None}, "m")  # slow path
    assert slow == {"a": lo, "b": hi, "c": 3} and [type(v) for v in slow.values()] == [int] * 3
    assert clean_attributes({"a": lo - 1, "n": None}, "m") == {"a": str(lo - 1)}
    out = clean_attributes({"a": lo - 1, "b": hi + 1}, "m")
    assert out == {"a": str(lo - 1), "b": str(hi + 1)}
    assert clean_attributes({"s": [lo, hi]}, "m") == {"s": (lo, hi)}
    assert clean_attributes({"s": [lo - 1, 1]}, "m") == {"s": (str(lo - 1), "1")}


def test_lone_surrogates_are_replaced(caplog: pytest.LogCaptureFixture) -> None:
    """No exporter can encode a lone surrogate: U+FFFD instead, one warning; other
    non-ASCII text is kept as is, silently."""
    with caplog.at_level(logging.WARNING, logger="otel_aspects"):
        assert clean_attributes({"k": "caf\u00e9"}, "m") == {"k": "caf\u00e9"}
        assert caplog.records == []
        assert clean_attributes({"k": "a\ud800b"}, "m") == {"k": "a\ufffdb"}
        assert clean_attributes({"k\udfff": 1}, "m") == {"k\ufffd": 1}
    assert len(caplog.records) == 2
