"""The multi-process file format: a memory-mapped file per process, and an archive.

In multi-process mode (:mod:`otel_aspects.multiprocess`) every process writes
its series into a file of its own in the shared folder, on every measurement
(write-through: a process killed with SIGKILL loses nothing it recorded);
whoever collects reads every file and adds them up.  This module is the format
and the two sides of it: :class:`WorkerFile` (the writer) and :func:`read`
(the reader).

Layout, little-endian, every field 8-byte aligned.  Header, 64 bytes::

     0  magic    8s  b"OTELAMP\\0"
     8  version  u32 FORMAT_VERSION
    12  role     u32 0 a process's file, 1 the archive
    16  used     u64 end of the last complete record (written last)
    24  created  u64 time_ns at creation
    32  pid      u64 the writing process

Then records, from offset 64, each ``u32 length`` (the whole record, a multiple
of 8), ``u32 type``, ``u32 id``, ``u32 n``, ``n`` bytes of JSON, zero padding to 8:

* ``INSTRUMENT``: *id* numbers the instrument in this file; the JSON is its
  identity and shape (:class:`Meta`).
* ``SERIES``: *id* is its instrument's; the JSON its attributes (a sorted list
  of ``[key, value]``: JSON keeps ``1``, ``1.0`` and ``true`` apart).  Then the
  value words (below).
* ``ABSORBED`` (archive only): the JSON lists the files compacted into it.

Value words of a series (int64 ``q``, or float64 ``d``, in place)::

    0 N      q  measurements (a histogram's: unused, its count is the sum of its buckets)
    1 ISUM   q  integer part of the sum (a gauge: its value when an int)
    2 FSUM   d  float part of the sum (a gauge: its value when a float)
    3 FLAGS  q  1: a float was measured (a gauge: its value is the float)
    4 START  q  time_ns of the first measurement
    gauge:      5 TIME (time_ns of the last set), then 1 exemplar slot
    sum:        then 1 exemplar slot
    histogram:  5 MIN d, 6 MAX d, 7.. one count per bucket (q), then one
                exemplar slot per bucket

An exemplar slot is :data:`EXEMPLAR_WORDS` words: ``begin`` (time_ns), the
value (``q`` or ``d``), 1 if it is a float, span id, trace id (high, low), and
``end`` (the same time_ns).  The writer zeroes ``end``, writes the fields, then
``begin``, then ``end``; a reader keeps a slot only when ``begin == end != 0``,
so a torn one is skipped, never exported.

A record becomes visible when ``used`` moves past it, after its words are
written; value words change in place, one aligned 8-byte store each, so a
reader sees each word's old or new value, never a mix.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import struct
import threading
import time
import uuid
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

__all__ = (
    "FORMAT_VERSION",
    "FileFormatError",
    "Meta",
    "WorkerFile",
    "read",
)

MAGIC: Final = b"OTELAMP\x00"
FORMAT_VERSION: Final = 1
ROLE_WORKER, ROLE_ARCHIVE = 0, 1
HEADER = struct.Struct("<8sIIQQQ")
HEADER_SIZE: Final = 64
USED_OFFSET: Final = 16
RECORD = struct.Struct("<IIII")
INSTRUMENT, SERIES, ABSORBED = 1, 2, 3

N, ISUM, FSUM, FLAGS, START = 0, 1, 2, 3, 4
TIME = 5  # gauges
MIN, MAX, BUCKETS = 5, 6, 7  # histograms
EXEMPLAR_WORDS: Final = 7
EX_BEGIN, EX_VALUE, EX_FLOAT, EX_SPAN, EX_TRACE_HI, EX_TRACE_LO, EX_END = range(7)

#: A process's file starts this big (sparse) and doubles when full.
INITIAL_SIZE: Final = 1 << 16
KINDS: Final = ("counter", "up_down_counter", "gauge", "histogram")
MODES: Final = ("sum", "max", "min", "last", "live_sum")
WORKER_PREFIX: Final = "process-"
SUFFIX: Final = ".otelmp"
ARCHIVE_NAME: Final = "archive" + SUFFIX

_INF = float("inf")
_WORD = 8


class FileFormatError(ValueError):
    """A file in the folder is not one this version can read (named in the message)."""


@dataclass(frozen=True)
class Meta:
    """An instrument as the files know it: its identity, and how processes combine."""

    kind: str
    name: str
    unit: str
    description: str
    scope: tuple[str, str | None, str | None]
    bounds: tuple[float, ...] | None
    #: How processes combine (``sum`` for counters and histograms).
    mode: str
    #: Attribute sets kept over all processes (the YAML's ``max_series``), then overflow.
    max_series: int | None = None

    @property
    def identity(self) -> tuple[object, ...]:
        """The SDK's identity of an instrument (one metric per identity)."""
        return (self.scope, self.kind, self.name.lower(), self.unit, self.description)

    def words(self) -> int:
        """The value words of one of its series."""
        if self.kind == "histogram":
            buckets = len(self.bounds or ()) + 1
            return BUCKETS + buckets + buckets * EXEMPLAR_WORDS
        return (TIME + 1 if self.kind == "gauge" else START + 1) + EXEMPLAR_WORDS

    def exemplar_base(self) -> int:
        """The word of its first exemplar slot."""
        if self.kind == "histogram":
            return BUCKETS + len(self.bounds or ()) + 1
        return TIME + 1 if self.kind == "gauge" else START + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "unit": self.unit,
            "description": self.description,
            "scope": list(self.scope),
            "bounds": None if self.bounds is None else list(self.bounds),
            "mode": self.mode,
            "max_series": self.max_series,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Meta:
        """The instrument of a file's record; ``ValueError`` when it is not one."""
        scope = data["scope"]
        bounds = data.get("bounds")
        if data["kind"] not in KINDS or data["mode"] not in MODES:
            raise ValueError("unknown kind or mode")
        if data["kind"] == "histogram" and (
            not isinstance(bounds, list)
            or not all(isinstance(b, int | float) for b in bounds)
            or any(not a < b for a, b in pairwise(bounds))
        ):
            raise ValueError("histogram bounds are not increasing numbers")
        if not isinstance(scope, list) or len(scope) != 3:
            raise ValueError("bad scope")
        max_series = data.get("max_series")
        if max_series is not None and (not isinstance(max_series, int) or max_series < 1):
            raise ValueError("bad max_series")
        return cls(
            kind=str(data["kind"]),
            name=str(data["name"]),
            unit=str(data["unit"]),
            description=str(data["description"]),
            scope=(str(scope[0]), scope[1], scope[2]),
            bounds=None if bounds is None else tuple(float(b) for b in bounds),
            mode=str(data["mode"]),
            max_series=max_series,
        )


def attributes_json(attributes: dict[str, Any]) -> bytes:
    """The canonical bytes of *attributes*: equal sets give equal bytes."""
    items = sorted(
        ([k, list(v) if isinstance(v, tuple) else v] for k, v in attributes.items()),
        key=lambda item: item[0],
    )
    return json.dumps(items, separators=(",", ":")).encode("ascii")


_PRIMITIVES = (str, bool, int, float)


def attributes_from_json(raw: bytes) -> dict[str, Any]:
    """The attributes of a series record; ``ValueError`` when they are not attributes."""
    out: dict[str, Any] = {}
    for key, value in json.loads(raw):
        if not isinstance(key, str):
            raise ValueError("an attribute key is not a string")
        if isinstance(value, list):
            if not all(isinstance(v, _PRIMITIVES) for v in value):
                raise ValueError("an attribute value is not a primitive")
            value = tuple(value)
        elif not isinstance(value, _PRIMITIVES):
            raise ValueError("an attribute value is not a primitive")
        out[key] = value
    return out


def _padded(n: int) -> int:
    return (n + _WORD - 1) // _WORD * _WORD


def encode_record(kind: int, ident: int, payload: bytes, words: int = 0) -> bytes:
    """One record: header, JSON *payload*, padding and *words* zeroed value words."""
    body = RECORD.size + len(payload)
    length = _padded(body) + words * _WORD
    return RECORD.pack(length, kind, ident, len(payload)) + payload + bytes(length - body)


def new_header(role: int, pid: int) -> bytearray:
    header = bytearray(HEADER_SIZE)
    HEADER.pack_into(header, 0, MAGIC, FORMAT_VERSION, role, HEADER_SIZE, time.time_ns(), pid)
    return header


# --------------------------------------------------------------------------
# Writing: one file per process
# --------------------------------------------------------------------------


class Words:
    """The value words of one series in a :class:`WorkerFile`: int and float views."""

    __slots__ = ("d", "q", "u")

    def __init__(self, view: memoryview) -> None:
        self.q = view.cast("q")
        self.d = view.cast("d")
        self.u = view.cast("Q")


class WorkerFile:
    """This process's file in *directory*: created on first use, locked while alive.

    The process holds an exclusive ``flock`` on it for its whole life; the kernel
    drops the lock when the process dies however it dies, which is how a
    collector tells a dead process's file (final: it can be compacted) from a
    live one.  The file is created under a temporary name, locked, then renamed,
    so no one ever sees it unlocked while its process lives.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pid = os.getpid()
        self.lock = threading.Lock()
        name = f"{WORKER_PREFIX}{self.pid}-{uuid.uuid4().hex[:12]}{SUFFIX}"
        self.path = directory / name
        temporary = directory / f".{name}.new"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, INITIAL_SIZE)
            self._maps = [mmap.mmap(fd, INITIAL_SIZE)]
            self._maps[0][:HEADER_SIZE] = new_header(ROLE_WORKER, self.pid)
            os.rename(temporary, self.path)
        except BaseException:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        self.fd = fd
        self.size = INITIAL_SIZE
        self.used = HEADER_SIZE
        self._used = memoryview(self._maps[0])[USED_OFFSET : USED_OFFSET + 8].cast("Q")
        self._ids: dict[tuple[object, ...], int] = {}

    def instrument(self, meta: Meta) -> int:
        """The id of *meta* in this file (its record written the first time)."""
        with self.lock:
            ident = self._ids.get(meta.identity)
            if ident is None:
                ident = len(self._ids) + 1
                payload = json.dumps(meta.to_json(), separators=(",", ":")).encode("ascii")
                self._append(encode_record(INSTRUMENT, ident, payload))
                self._ids[meta.identity] = ident
            return ident

    def series(self, meta: Meta, attributes: dict[str, Any]) -> Words:
        """A new series of *meta* with *attributes*: its words, ready to be written."""
        ident = self.instrument(meta)
        words = meta.words()
        record = bytearray(encode_record(SERIES, ident, attributes_json(attributes), words))
        first = len(record) - words * _WORD
        values = memoryview(record)[first:]
        struct.pack_into("<q", values, START * _WORD, time.time_ns())
        if meta.kind == "histogram":
            struct.pack_into("<dd", values, MIN * _WORD, _INF, -_INF)
        with self.lock:
            view = self._append(bytes(record))
        return Words(view[first:])

    def _append(self, record: bytes) -> memoryview:
        """Write *record* at the end and publish it (lock held); its bytes in the map."""
        start = self.used
        end = start + len(record)
        if end > self.size:
            self._grow(end)
        mapped = self._maps[-1]
        mapped[start:end] = record
        self.used = end
        self._used[0] = end  # published: the record is complete
        return memoryview(mapped)[start:end]

    def _grow(self, needed: int) -> None:
        size = self.size
        while size < needed:
            size *= 2
        os.ftruncate(self.fd, size)
        # A new map of the whole file; the older maps stay valid (the file only
        # grows) for the series that write through them.
        self._maps.append(mmap.mmap(self.fd, size))
        self.size = size
        self._used = memoryview(self._maps[-1])[USED_OFFSET : USED_OFFSET + 8].cast("Q")

    def close_inherited(self) -> None:
        """In a forked child: drop this (the parent's) file descriptor and its lock share."""
        try:
            os.close(self.fd)
        except OSError:
            pass


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


@dataclass
class Parsed:
    """What :func:`read` found in one file, kept to read only new records next time."""

    role: int
    created: int
    pid: int
    upto: int
    metas: dict[int, Meta]
    #: (offset of the value words, meta, canonical attributes, attributes)
    series: list[tuple[int, Meta, bytes, dict[str, Any]]]
    absorbed: tuple[str, ...] = ()


def read(data: bytes, name: str, parsed: Parsed | None = None) -> Parsed:
    """Parse the records of file *name* from its bytes *data* (from *parsed* on).

    Raises :class:`FileFormatError` for a file of another format or version.
    """
    if len(data) < HEADER_SIZE:
        raise FileFormatError(f"{name}: shorter than a header ({len(data)} bytes)")
    magic, version, role, used, created, pid = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise FileFormatError(f"{name}: not an otel_aspects multi-process file")
    if version != FORMAT_VERSION:
        raise FileFormatError(
            f"{name}: format version {version}, this otel_aspects reads version "
            f"{FORMAT_VERSION}; empty the folder when deploying a new version"
        )
    if not HEADER_SIZE <= used <= len(data):
        raise FileFormatError(
            f"{name}: truncated or damaged: its header says {used} bytes, it has {len(data)}"
        )
    if parsed is None:
        parsed = Parsed(role, created, pid, HEADER_SIZE, {}, [])
    offset = parsed.upto
    try:
        while offset < used:
            length, kind, ident, n = RECORD.unpack_from(data, offset)
            body = offset + RECORD.size + n
            if length % _WORD or body > offset + length or offset + length > used:
                raise ValueError("bad record length")
            payload = bytes(data[offset + RECORD.size : body])
            if kind == INSTRUMENT:
                parsed.metas[ident] = Meta.from_json(json.loads(payload))
            elif kind == SERIES:
                meta = parsed.metas[ident]
                words_at = offset + length - meta.words() * _WORD
                if words_at < _padded(body):
                    raise ValueError("series words overlap its attributes")
                parsed.series.append((words_at, meta, payload, attributes_from_json(payload)))
            elif kind == ABSORBED:
                absorbed = json.loads(payload)
                if not all(isinstance(item, str) for item in absorbed):
                    raise ValueError("absorbed names are not strings")
                parsed.absorbed = tuple(absorbed)
            else:
                raise ValueError(f"unknown record type {kind}")
            offset += length
    except (ValueError, KeyError, TypeError, IndexError, struct.error) as exc:
        raise FileFormatError(
            f"{name}: damaged at offset {offset} ({type(exc).__name__}: {str(exc)[:60]})"
        ) from exc
    parsed.upto = offset
    return parsed


def values(data: bytes, at: int, meta: Meta) -> tuple[int, int | float, int, list[Any]]:
    """``(n, value, start, extra)`` of the series whose words are at *at* in *data*.

    *value* is the sum (a gauge: its value); *extra* is ``[time]`` for a gauge and
    ``[min, max, counts]`` for a histogram.
    """
    n, isum, fsum, flags, start = struct.unpack_from("<qqdqq", data, at)
    if meta.kind == "gauge":
        value: int | float = fsum if flags & 1 else isum
        return n, value, start, [struct.unpack_from("<q", data, at + TIME * _WORD)[0]]
    value = isum + fsum if flags & 1 else isum
    if meta.kind == "histogram":
        buckets = len(meta.bounds or ()) + 1
        low, high = struct.unpack_from("<dd", data, at + MIN * _WORD)
        counts = list(struct.unpack_from(f"<{buckets}q", data, at + BUCKETS * _WORD))
        return sum(counts), value, start, [low, high, counts]
    return n, value, start, []


ExemplarTuple = tuple[int | float, int, int, int]


def exemplars(data: bytes, at: int, meta: Meta) -> Iterator[tuple[int, ExemplarTuple]]:
    """``(slot, (value, time_ns, span_id, trace_id))`` of each complete exemplar slot."""
    slots = len(meta.bounds or ()) + 1 if meta.kind == "histogram" else 1
    base = at + meta.exemplar_base() * _WORD
    for slot in range(slots):
        where = base + slot * EXEMPLAR_WORDS * _WORD
        begin, ivalue, is_float, span, hi, lo, end = struct.unpack_from("<qqqQQQq", data, where)
        if begin == 0 or begin != end:
            continue
        value: int | float = (
            struct.unpack_from("<d", data, where + EX_VALUE * _WORD)[0] if is_float else ivalue
        )
        yield slot, (value, begin, span, (hi << 64) | lo)


def write_exemplar(
    words: Words, meta: Meta, slot: int, value: int | float, at: int, span: int, trace: int
) -> None:
    """Write an exemplar into *slot* of a series (the caller holds the writer's lock)."""
    base = meta.exemplar_base() + slot * EXEMPLAR_WORDS
    q = words.q
    q[base + EX_END] = 0
    if value.__class__ is int:
        q[base + EX_VALUE] = value
        q[base + EX_FLOAT] = 0
    else:
        words.d[base + EX_VALUE] = float(value)
        q[base + EX_FLOAT] = 1
    u = words.u
    u[base + EX_SPAN] = span
    u[base + EX_TRACE_HI] = trace >> 64
    u[base + EX_TRACE_LO] = trace & 0xFFFFFFFFFFFFFFFF
    q[base + EX_BEGIN] = at
    q[base + EX_END] = at


def observe(words: Words, bounds: tuple[float, ...], value: int | float) -> int:
    """Add one measurement to a histogram's words (writer's lock held); its bucket."""
    q, d = words.q, words.d
    index = bisect_left(bounds, value)
    if value.__class__ is int:
        try:
            q[ISUM] += value
        except (OverflowError, ValueError):  # past int64: the float part takes it
            d[FSUM] += value
            q[FLAGS] = 1
    else:
        d[FSUM] += value
        q[FLAGS] = 1
    if value < d[MIN]:
        d[MIN] = value
    if value > d[MAX]:
        d[MAX] = value
    q[BUCKETS + index] += 1
    return index


def add(words: Words, value: int | float) -> None:
    """Add one measurement to a sum's words (writer's lock held)."""
    q = words.q
    q[N] += 1
    if value.__class__ is int:
        try:
            q[ISUM] += value
            return
        except (OverflowError, ValueError):  # past int64: the float part takes it
            pass
    words.d[FSUM] += value
    q[FLAGS] = 1


def set_gauge(words: Words, value: int | float) -> None:
    """Set a gauge's words to *value* (writer's lock held)."""
    q = words.q
    if value.__class__ is int:
        q[ISUM] = value
        q[FLAGS] = 0
    else:
        words.d[FSUM] = value
        q[FLAGS] = 1
    q[TIME] = time.time_ns()
    q[N] += 1
