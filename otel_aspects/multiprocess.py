"""Multi-process mode: one metrics view for all the workers of a pre-forking server.

Switched on by ``setup_metrics(..., multiprocess_dir=DIR)`` or
``OTEL_ASPECTS_MULTIPROCESS_DIR``.  Every process then writes its series into a
file of its own in ``DIR`` on every measurement (:mod:`otel_aspects.mpseries`,
format in :mod:`otel_aspects.mpfile`), and exports none of them itself.  One
process exports the total of all of them, live and dead: the one set up with
``aggregate=True`` -- :func:`serve_metrics`, which the gunicorn hooks
(:mod:`otel_aspects.gunicorn`) and ``otel-aspects serve-metrics DIR`` call.
Its readers (Prometheus on one port, OTLP under one ``service.instance.id``
kept in the folder) get what the SDK's would for that total, in their own
temporality.

* :func:`prepare` checks the folder at setup: it exists and is writable, and its
  marker file (``otel_aspects.json``) names the same service; the first process
  writes the marker, with the ``service.instance.id`` the exporting process uses.
* :class:`Collector` reads every file: counters and histograms add; gauges and
  up-down counters combine as their YAML ``multiprocess:`` mode says
  (``config.MULTIPROCESS_MODES``).
* :func:`compact` folds the files of dead processes (a process holds a lock on
  its file while it lives) into one archive, atomically: the archive names the
  files it absorbed, is renamed into place, and only then are they deleted; a
  reader opens the archive first and skips the files it names, and starts again
  if a file it listed vanished -- so a collection sees every count exactly once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from opentelemetry.sdk.metrics._internal.exemplar import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from . import mpfile
from ._warn import short_repr, warn_once
from .mpfile import ARCHIVE_NAME, SUFFIX, WORKER_PREFIX, FileFormatError, Meta, Parsed

__all__ = (
    "ENV_VAR",
    "MARKER_NAME",
    "Collector",
    "Folder",
    "MultiprocessError",
    "compact",
    "prepare",
    "prometheus_registry",
    "read_totals",
    "serve_metrics",
)

logger = logging.getLogger("otel_aspects.multiprocess")

#: The environment variable that switches multi-process mode on.
ENV_VAR: Final = "OTEL_ASPECTS_MULTIPROCESS_DIR"
MARKER_NAME: Final = "otel_aspects.json"
MARKER_FORMAT: Final = 1
_COMPACT_LOCK: Final = ".compact.lock"
#: Seconds between two compactions in the exporting process.
COMPACT_INTERVAL_SECONDS: Final = 2.0
_DELTA = AggregationTemporality.DELTA
_INF = float("inf")
_OVERFLOW: Final = {"otel.metric.overflow": True}
_OVERFLOW_KEY: Final = mpfile.attributes_json(_OVERFLOW)


class MultiprocessError(ValueError):
    """The multi-process folder cannot be used (the message says why and what to do)."""


# --------------------------------------------------------------------------
# The folder
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Folder:
    """A checked multi-process folder of one service."""

    path: Path
    service_name: str
    #: The ``service.instance.id`` the exporting process uses: one for the folder's life.
    instance_id: str

    def process_files(self) -> list[str]:
        return sorted(
            name
            for name in os.listdir(self.path)
            if name.startswith(WORKER_PREFIX) and name.endswith(SUFFIX)
        )


def prepare(
    directory: str | os.PathLike[str], service_name: str, *, create: bool = False
) -> Folder:
    """Check *directory* for *service_name*'s multi-process files; write its marker.

    Raises :class:`MultiprocessError` when it is missing (unless *create*), not a
    folder, not writable, or marked for another service or a newer format.
    """
    path = Path(os.fspath(directory)).expanduser()
    shown = short_repr(str(path))
    if not path.exists():
        if not create:
            raise MultiprocessError(
                f"multiprocess_dir {shown} does not exist; create it before the server "
                "starts (mkdir -p), on a local file system such as tmpfs"
            )
        path.mkdir(parents=True, exist_ok=True)
    if not path.is_dir():
        raise MultiprocessError(f"multiprocess_dir {shown} is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise MultiprocessError(
            f"multiprocess_dir {shown} is not writable by this process (uid {os.getuid()}); "
            "give the server's user write access to it"
        )
    marker = path / MARKER_NAME
    data = _read_marker(marker)
    if data is None:
        data = {
            "format": MARKER_FORMAT,
            "service": service_name,
            "instance_id": str(uuid.uuid4()),
            "created": time.time(),
        }
        temporary = path / f".{MARKER_NAME}.{os.getpid()}.new"
        temporary.write_text(json.dumps(data))
        try:
            os.link(temporary, marker)  # fails if another process wrote one first
        except FileExistsError:
            data = _read_marker(marker) or data
        finally:
            temporary.unlink(missing_ok=True)
    if data.get("format") != MARKER_FORMAT:
        raise MultiprocessError(
            f"multiprocess_dir {shown} was written by another version of otel_aspects "
            f"(marker format {short_repr(data.get('format'))}); give this deployment an "
            "empty folder"
        )
    if data.get("service") != service_name:
        raise MultiprocessError(
            f"multiprocess_dir {shown} belongs to service {short_repr(data.get('service'))}, "
            f"not {short_repr(service_name)}; give each service a folder of its own"
        )
    return Folder(path, service_name, str(data.get("instance_id") or uuid.uuid4()))


def _read_marker(marker: Path) -> dict[str, Any] | None:
    try:
        text = marker.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MultiprocessError(f"cannot read {short_repr(str(marker))}: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise MultiprocessError(
            f"{short_repr(str(marker))} is not an otel_aspects marker; give the service an "
            "empty folder of its own"
        )
    return data


_EXPORTER_LOCK: Final = ".exporter.lock"
#: The folders this process exports (a lock held on each), by resolved path.
_claims: dict[str, int] = {}


def claim_export(folder: Folder) -> None:
    """Make this process the one that exports *folder*: a lock it holds for its life.

    Raises :class:`MultiprocessError` when another live process exports it: two
    exporters would send every count twice under one ``service.instance.id``.
    """
    key = str(folder.path.resolve())
    if key in _claims:
        return
    fd = os.open(folder.path / _EXPORTER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 20, 0).decode("ascii", "replace").strip()
        other = other if other.isdigit() else short_repr(other, 24)
        os.close(fd)
        raise MultiprocessError(
            f"multiprocess_dir {short_repr(str(folder.path))} is already exported by another "
            f"process (pid {other}); run one exporter per folder (the "
            "gunicorn hook, or one otel-aspects serve-metrics), else every count is exported "
            "twice"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
    _claims[key] = fd


def _release_claims_in_child() -> None:
    # The lock stays with the parent (its descriptor); the child just lets go of its copy.
    for fd in _claims.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _claims.clear()


os.register_at_fork(after_in_child=_release_claims_in_child)


def stale_report(folder: Folder) -> str | None:
    """What a folder holds from an earlier run (no process of it alive), or ``None``."""
    names = folder.process_files()
    archive = (folder.path / ARCHIVE_NAME).exists()
    if not names and not archive:
        return None
    if any(_alive(folder.path / name) for name in names):
        return None
    return (
        f"multiprocess_dir {short_repr(str(folder.path))} holds the counts of an earlier run "
        f"({len(names)} process file(s){', an archive' if archive else ''}, no process of it "
        "alive): counters continue from them. Empty the folder when deploying "
        "(rm -rf DIR/*) for counters to start again from zero"
    )


def _alive(path: Path) -> bool:
    """Whether the process that writes *path* still lives (it holds the file's lock)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


# --------------------------------------------------------------------------
# Reading the folder: totals over every file
# --------------------------------------------------------------------------


class _Total:
    """One series' total over the files read so far."""

    __slots__ = ("attributes", "exemplars", "extra", "meta", "n", "start", "value")

    def __init__(self, meta: Meta, attributes: dict[str, Any]) -> None:
        self.meta = meta
        self.attributes = attributes
        self.n = 0
        self.value: int | float = 0
        self.start = 0
        #: gauge: [time]; histogram: [min, max, counts]
        self.extra: list[Any] = []
        self.exemplars: dict[int, mpfile.ExemplarTuple] = {}

    def add(
        self,
        n: int,
        value: int | float,
        start: int,
        extra: list[Any],
        exemplars: Iterable[tuple[int, mpfile.ExemplarTuple]],
    ) -> None:
        meta = self.meta
        first = self.n == 0 and not self.extra
        self.start = start if first or (start and start < self.start) else self.start
        mode = meta.mode
        if first:
            self.value, self.extra = value, extra
        elif meta.kind == "histogram":
            low, high, counts = self.extra
            self.value += value
            self.extra = [
                min(low, extra[0]),
                max(high, extra[1]),
                [a + b for a, b in zip(counts, extra[2], strict=True)],
            ]
        elif mode in ("sum", "live_sum"):
            self.value += value
        elif mode == "max":
            self.value = max(self.value, value)
        elif mode == "min":
            self.value = min(self.value, value)
        elif mode == "last" and extra and extra[0] >= self.extra[0]:
            self.value, self.extra = value, extra
        self.n += n
        for slot, exemplar in exemplars:
            kept = self.exemplars.get(slot)
            if kept is None or exemplar[1] >= kept[1]:
                self.exemplars[slot] = exemplar


class _Cache:
    """What was parsed of each file: only new records are parsed.

    A file is the same one as last time when its name, inode and header (creation
    time and pid) are: a replaced archive may get the inode of one deleted earlier.
    """

    def __init__(self) -> None:
        self.files: dict[str, tuple[tuple[int, bytes], Parsed]] = {}

    def read(self, path: Path) -> tuple[Parsed, bytes, bool] | None:
        """``(parsed, bytes, alive)`` of *path*, or ``None`` if it vanished."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FileFormatError(f"{path.name}: cannot be opened ({exc.strerror})") from exc
        try:
            stat = os.fstat(fd)
            inode = stat.st_ino
            header = os.pread(fd, mpfile.HEADER_SIZE, 0)
            used = int.from_bytes(header[16:24], "little") if len(header) >= 24 else 0
            # Never more than the file holds (a damaged header may say anything).
            data = os.pread(fd, min(max(used, mpfile.HEADER_SIZE), stat.st_size), 0)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                alive = False
            except BlockingIOError:
                alive = True
        except OSError as exc:  # a folder, a device, an unreadable file
            raise FileFormatError(f"{path.name}: cannot be read ({exc.strerror})") from exc
        finally:
            os.close(fd)
        name = path.name
        identity = (inode, bytes(header[24:40]))
        cached = self.files.get(name)
        parsed = cached[1] if cached is not None and cached[0] == identity else None
        parsed = mpfile.read(data, name, parsed)
        self.files[name] = (identity, parsed)
        return parsed, data, alive

    def forget_missing(self, names: set[str]) -> None:
        for name in [n for n in self.files if n not in names]:
            del self.files[name]


class Totals(dict[tuple[tuple[object, ...], bytes], _Total]):
    """Every series' total by (instrument identity, attributes), and the attribute sets
    per instrument (the overflow series left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: dict[tuple[object, ...], int] = {}

    def new(self, meta: Meta, key: bytes, attributes: dict[str, Any]) -> _Total:
        total = self[meta.identity, key] = _Total(meta, attributes)
        if key != _OVERFLOW_KEY:
            self.sizes[meta.identity] = self.sizes.get(meta.identity, 0) + 1
        return total


def _add_file(
    totals: Totals,
    metas: dict[tuple[object, ...], Meta],
    parsed: Parsed,
    data: bytes,
    alive: bool,
    *,
    name: str,
) -> None:
    """Add one file's series to *totals*: past an instrument's ``max_series`` attribute
    sets over all files, new ones go to the overflow series, as in one process."""
    for at, meta, key, attributes in parsed.series:
        known = metas.setdefault(meta.identity, meta)
        if known != meta:
            warn_once(
                logger,
                ("mp-conflict", meta.name, meta.mode, meta.bounds),
                "otel_aspects: %s %s in %s differs from the same instrument in other files "
                "(buckets, max_series or multiprocess mode: %s vs %s); its series there are "
                "left out. Restart every worker after changing the YAML",
                meta.kind,
                short_repr(meta.name),
                name,
                short_repr((meta.mode, meta.bounds, meta.max_series)),
                short_repr((known.mode, known.bounds, known.max_series)),
                budget="config",
            )
            continue
        if meta.mode == "live_sum" and not alive:
            continue
        n, value, start, extra = mpfile.values(data, at, meta)
        if n == 0:
            continue
        total = totals.get((meta.identity, key))
        if total is None:
            limit = meta.max_series
            if (
                limit is not None
                and key != _OVERFLOW_KEY
                and totals.sizes.get(meta.identity, 0) >= limit
            ):
                key, attributes = _OVERFLOW_KEY, dict(_OVERFLOW)
                total = totals.get((meta.identity, key))
            if total is None:
                total = totals.new(meta, key, attributes)
        total.add(n, value, start, extra, mpfile.exemplars(data, at, meta))


def _archive_identity(path: Path) -> tuple[int, bytes] | None:
    """Which archive is in place: its inode and header (a new one for every compaction)."""
    try:
        fd = os.open(path / ARCHIVE_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return os.fstat(fd).st_ino, os.pread(fd, mpfile.HEADER_SIZE, 0)
    finally:
        os.close(fd)


def read_totals(path: Path, cache: _Cache | None = None) -> Totals:
    """Every series' total over the folder at *path*: the archive and every file it
    has not absorbed, each exactly once.

    A compaction installs a new archive before it deletes the files it absorbed;
    so when the archive in place is the same before and after the files were read,
    no file was absorbed meanwhile, and each count was read exactly once.
    Otherwise the read starts again.
    """
    cache = cache or _Cache()
    for _attempt in range(50):
        totals = Totals()
        metas: dict[tuple[object, ...], Meta] = {}
        before = _archive_identity(path)
        archive = _read_or_warn(cache, path / ARCHIVE_NAME)
        absorbed: set[str] = set()
        if archive is not None:
            parsed, data, _ = archive
            absorbed = set(parsed.absorbed)
            _add_file(totals, metas, parsed, data, True, name=ARCHIVE_NAME)
        names = [
            n
            for n in os.listdir(path)
            if n.startswith(WORKER_PREFIX) and n.endswith(SUFFIX) and n not in absorbed
        ]
        vanished = False
        files = []
        for name in names:
            try:
                found = cache.read(path / name)
            except FileFormatError as exc:
                _warn_format(exc)
                continue
            if found is None:
                vanished = True  # compacted meanwhile: the new archive has it
                break
            files.append((found[0].created, name, found))
        if vanished:
            continue
        # Oldest first: past max_series the attribute sets kept are the earliest ones.
        for _created, name, (parsed, data, alive) in sorted(files, key=lambda f: f[:2]):
            _add_file(totals, metas, parsed, data, alive, name=name)
        if _archive_identity(path) == before:
            cache.forget_missing({*names, ARCHIVE_NAME})
            return totals
    raise RuntimeError("the multi-process folder kept changing while it was read")


def _read_or_warn(cache: _Cache, path: Path) -> tuple[Parsed, bytes, bool] | None:
    try:
        return cache.read(path)
    except FileFormatError as exc:
        _warn_format(exc)
        return None


def _warn_format(exc: FileFormatError) -> None:
    warn_once(
        logger,
        ("mp-format", str(exc)[:80]),
        "otel_aspects: %s; that file is left out",
        exc,
        level=logging.ERROR,
        budget="config",
    )


# --------------------------------------------------------------------------
# Compaction
# --------------------------------------------------------------------------


def compact(directory: str | os.PathLike[str], *, wait: bool = False) -> int:
    """Fold the files of dead processes into the archive; the number folded.

    Safe to run at any time, from any process, while others record and collect:
    one compaction at a time (a lock file; with *wait* this one waits for another
    in progress, else it returns 0 at once), and readers see each count once.
    A damaged file is moved aside (``NAME.damaged``) with one ERROR.
    """
    path = Path(os.fspath(directory))
    lock_fd = os.open(path / _COMPACT_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return 0  # another process is compacting
        return _compact_locked(path)
    finally:
        os.close(lock_fd)


def _compact_locked(path: Path) -> int:
    cache = _Cache()
    archive = _read_or_warn(cache, path / ARCHIVE_NAME)
    if archive is None and (path / ARCHIVE_NAME).exists():
        _move_aside(path / ARCHIVE_NAME)  # unreadable: a new archive starts
    absorbed: set[str] = set(archive[0].absorbed) if archive is not None else set()
    listing = set(os.listdir(path))
    dead: list[tuple[str, int]] = []
    try:
        for name in sorted(listing):
            if name.startswith(f".{WORKER_PREFIX}") and name.endswith(".new"):
                _remove_if_abandoned(path / name)  # a process died creating its file
                continue
            if not (name.startswith(WORKER_PREFIX) and name.endswith(SUFFIX)) or name in absorbed:
                continue
            fd = os.open(path / name, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            dead.append((name, fd))
        if not dead:
            return 0
        totals = Totals()
        metas: dict[tuple[object, ...], Meta] = {}
        if archive is not None:
            _add_file(totals, metas, archive[0], archive[1], True, name=ARCHIVE_NAME)
        found = []
        for name, fd in dead:
            try:
                data = os.pread(fd, os.fstat(fd).st_size, 0)
                parsed = mpfile.read(data, name)
            except (OSError, FileFormatError) as exc:
                _warn_format(
                    exc
                    if isinstance(exc, FileFormatError)
                    else FileFormatError(f"{name}: cannot be read ({exc})")
                )
                _move_aside(path / name)
                continue
            found.append((parsed.created, name, parsed, data))
        folded = []
        for _created, name, parsed, data in sorted(found, key=lambda f: f[:2]):
            _add_file(totals, metas, parsed, data, False, name=name)
            folded.append(name)
        # Names of files deleted by an earlier compaction are dropped: no reader that
        # opens the new archive can list them any more.
        keep = {n for n in absorbed if n in listing}
        _write_archive(path, totals, sorted(keep | set(folded)))
        for name in folded:
            (path / name).unlink(missing_ok=True)
        return len(folded)
    finally:
        for _name, fd in dead:
            os.close(fd)


def _move_aside(path: Path) -> None:
    """Rename a damaged file out of the way (kept for a look, never read again)."""
    try:
        os.replace(path, path.with_name(path.name + ".damaged"))
    except OSError:
        logger.debug("otel_aspects: cannot move %s aside", path, exc_info=True)


#: A file being created is renamed within milliseconds; older, it was abandoned.
_ABANDONED_SECONDS = 60.0


def _remove_if_abandoned(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        if time.time() - os.fstat(fd).st_mtime < _ABANDONED_SECONDS:
            return
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return
    finally:
        os.close(fd)
    path.unlink(missing_ok=True)


def _write_archive(path: Path, totals: Totals, absorbed: list[str]) -> None:
    out = bytearray(mpfile.new_header(mpfile.ROLE_ARCHIVE, os.getpid()))
    ids: dict[tuple[object, ...], int] = {}
    for total in totals.values():
        meta = total.meta
        ident = ids.get(meta.identity)
        if ident is None:
            ident = ids[meta.identity] = len(ids) + 1
            payload = json.dumps(meta.to_json(), separators=(",", ":")).encode("ascii")
            out += mpfile.encode_record(mpfile.INSTRUMENT, ident, payload)
        record = bytearray(
            mpfile.encode_record(
                mpfile.SERIES, ident, mpfile.attributes_json(total.attributes), meta.words()
            )
        )
        words = mpfile.Words(memoryview(record)[len(record) - meta.words() * 8 :])
        _fill(words, total)
        out += record
    out += mpfile.encode_record(
        mpfile.ABSORBED, 0, json.dumps(absorbed, separators=(",", ":")).encode("ascii")
    )
    out[mpfile.USED_OFFSET : mpfile.USED_OFFSET + 8] = len(out).to_bytes(8, "little")
    temporary = path / f".{ARCHIVE_NAME}.{os.getpid()}.new"
    with open(temporary, "wb") as stream:
        stream.write(out)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path / ARCHIVE_NAME)


def _fill(words: mpfile.Words, total: _Total) -> None:
    q, d = words.q, words.d
    meta = total.meta
    q[mpfile.N] = total.n
    if total.value.__class__ is int:
        q[mpfile.ISUM] = total.value
    else:
        d[mpfile.FSUM] = total.value
        q[mpfile.FLAGS] = 1
    q[mpfile.START] = total.start
    if meta.kind == "gauge":
        q[mpfile.TIME] = total.extra[0]
    elif meta.kind == "histogram":
        low, high, counts = total.extra
        d[mpfile.MIN], d[mpfile.MAX] = low, high
        for i, count in enumerate(counts):
            q[mpfile.BUCKETS + i] = count
    for slot, (value, at, span, trace) in total.exemplars.items():
        mpfile.write_exemplar(words, meta, slot, value, at, span, trace)


# --------------------------------------------------------------------------
# Collection: the folder's totals -> each reader's points
# --------------------------------------------------------------------------


SeriesKey = tuple[tuple[object, ...], bytes]


class _ReaderState:
    __slots__ = ("drop", "given", "last", "live", "previous", "temporality")

    def __init__(self, reader: Any, baseline: dict[SeriesKey, tuple[Any, ...]]) -> None:
        from .bridge import preferences

        self.temporality, self.drop = preferences(reader)
        #: Delta: each series' (n, value, counts) at the previous collection; at first the
        #: totals when the exporter started (a restarted exporter sends no total again).
        self.previous: dict[SeriesKey, tuple[Any, ...]] = dict(baseline)
        #: ``live_sum`` series given to this reader: one that vanishes (its processes
        #: died) gets a last point back to 0.
        self.live: dict[SeriesKey, _Total] = {}
        #: Previous collection time per instrument (a delta point's start).
        self.last: dict[tuple[object, ...], int] = {}
        self.given: dict[tuple[tuple[object, ...], bytes, int], int] = {}


class Collector:
    """Collects the total of every process's file in a folder, for one process's readers.

    Only in the process that made it (a forked child collects nothing: its parent
    exports), and it compacts the folder every :data:`COMPACT_INTERVAL_SECONDS`
    in a background thread while it lives.
    """

    def __init__(self, folder: Folder, *, compact_interval: float = COMPACT_INTERVAL_SECONDS):
        self.folder = folder
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._cache = _Cache()
        self._readers: weakref.WeakKeyDictionary[Any, _ReaderState] = weakref.WeakKeyDictionary()
        self._stop = threading.Event()
        self._interval = compact_interval
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._scopes: dict[tuple[str, str | None, str | None], InstrumentationScope] = {}
        self._missing_reported = False
        self._baseline = {
            key: (t.n, t.value, t.extra[2] if t.meta.kind == "histogram" else None)
            for key, t in self._read().items()
        }

    def start_compacting(self) -> None:
        if self._thread is None and self._interval > 0:
            self._thread = threading.Thread(
                target=self._compact_loop, name="otel-aspects-compact", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def compact_soon(self) -> None:
        """Have the background thread compact now (gunicorn's ``child_exit``: the master's
        loop must not wait for it)."""
        self._wake.set()

    def _compact_loop(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set() or os.getpid() != self.pid:
                return
            self.compact_now()

    def compact_now(self, *, wait: bool = False) -> int:
        """Fold dead processes' files now (*wait*: after a compaction in progress)."""
        try:
            return compact(self.folder.path, wait=wait)
        except Exception as exc:  # never let a compaction problem stop collection
            warn_once(
                logger,
                ("mp-compact", type(exc).__name__),
                "otel_aspects: compacting %s failed (%s: %s); retried later",
                short_repr(str(self.folder.path)),
                type(exc).__name__,
                short_repr(exc),
                budget="hooks",
            )
            return 0

    def _read(self) -> Totals:
        try:
            return read_totals(self.folder.path, self._cache)
        except FileNotFoundError:
            # The folder was deleted (a tmp cleaner, a deploy): make it again, so that
            # workers started from now on record; what it held is gone.
            if not self._missing_reported:
                self._missing_reported = True
                logger.error(
                    "otel_aspects: the multi-process folder %s was deleted while in use; "
                    "made again. The counts it held are lost; keep it out of reach of "
                    "tmp cleaners (e.g. under /run)",
                    short_repr(str(self.folder.path)),
                )
            prepare(self.folder.path, self.folder.service_name, create=True)
            return Totals()

    def collect(self, reader: Any, now: int) -> dict[InstrumentationScope, list[Metric]]:
        """The metrics *reader* gets now (the engine's bridge calls this)."""
        if os.getpid() != self.pid:
            return {}
        with self._lock:
            totals = self._read()
            state = self._readers.get(reader)
            if state is None:
                state = self._readers[reader] = _ReaderState(reader, self._baseline)
            return self._metrics(totals, state, now)

    def _scope(self, key: tuple[str, str | None, str | None]) -> InstrumentationScope:
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._scopes[key] = InstrumentationScope(*key)
        return scope

    def _metrics(
        self, totals: Totals, state: _ReaderState, now: int
    ) -> dict[InstrumentationScope, list[Metric]]:
        from .bridge import metric_of

        by_instrument: dict[tuple[object, ...], list[tuple[bytes, _Total]]] = {}
        for (identity, key), total in totals.items():
            if total.meta.kind not in state.drop:
                by_instrument.setdefault(identity, []).append((key, total))
        # live_sum series whose every process died: a last point back to 0 (once).
        gone: dict[tuple[object, ...], list[tuple[bytes, _Total]]] = {}
        for series_key in [k for k in state.live if k not in totals]:
            gone.setdefault(series_key[0], []).append((series_key[1], state.live.pop(series_key)))
        out: dict[InstrumentationScope, list[Metric]] = {}
        for identity in {**by_instrument, **gone}:
            rows = by_instrument.get(identity, [])
            meta = (rows or gone[identity])[0][1].meta
            delta = state.temporality[meta.kind] is _DELTA
            previous = state.last.get(identity)
            state.last[identity] = now
            points = [
                point
                for key, total in rows
                if (point := _point(total, (identity, key), state, delta, previous, now))
                is not None
            ]
            for key, total in gone.get(identity, ()):
                before = state.previous.pop((identity, key), None)
                points.append(_back_to_zero(total, before, delta, previous, now))
            if meta.mode == "live_sum":
                for key, total in rows:
                    state.live[identity, key] = total
            if points:
                out.setdefault(self._scope(meta.scope), []).append(metric_of(meta, points, delta))
        return out


def _back_to_zero(
    total: _Total, before: tuple[Any, ...] | None, delta: bool, previous: int | None, now: int
) -> NumberDataPoint:
    """The point of a live_sum series whose processes all died: 0 (a delta: minus what
    was given)."""
    if total.meta.kind == "gauge":
        return NumberDataPoint(total.attributes, None, now, 0, [])  # type: ignore[arg-type]
    value = -before[1] if delta and before is not None else 0
    start = previous if delta and previous is not None else total.start
    return NumberDataPoint(total.attributes, start, now, value, [])


def _point(
    total: _Total,
    key: tuple[tuple[object, ...], bytes],
    state: _ReaderState,
    delta: bool,
    previous: int | None,
    now: int,
) -> NumberDataPoint | HistogramDataPoint | None:
    meta = total.meta
    exemplars = _exemplars(total, key, state)
    if meta.kind == "gauge":
        return NumberDataPoint(
            attributes=total.attributes,
            start_time_unix_nano=None,  # type: ignore[arg-type]
            time_unix_nano=now,
            value=total.value,
            exemplars=exemplars,
        )
    n, value = total.n, total.value
    counts = total.extra[2] if meta.kind == "histogram" else None
    start = total.start
    if delta:
        before = state.previous.get(key)
        state.previous[key] = (n, value, counts)
        if before is not None:
            if before[0] == n and before[1] == value:
                return None  # nothing measured since this reader's last collection
            n, value = n - before[0], value - before[1]
            if counts is not None:
                counts = [a - b for a, b in zip(counts, before[2], strict=True)]
        if previous is not None:
            start = previous
    if meta.kind == "histogram":
        low, high, _ = total.extra
        return HistogramDataPoint(
            attributes=total.attributes,
            start_time_unix_nano=start,
            time_unix_nano=now,
            count=n,
            sum=value,
            bucket_counts=tuple(counts or ()),
            explicit_bounds=meta.bounds or (),
            min=low,
            max=high,
            exemplars=exemplars,
        )
    return NumberDataPoint(
        attributes=total.attributes,
        start_time_unix_nano=start,
        time_unix_nano=now,
        value=value,
        exemplars=exemplars,
    )


def _exemplars(
    total: _Total, key: tuple[tuple[object, ...], bytes], state: _ReaderState
) -> list[Exemplar]:
    out = []
    for slot, (value, at, span, trace) in sorted(total.exemplars.items()):
        if state.given.get((*key, slot)) == at:
            continue  # each exemplar is given once, as the SDK's reservoirs are emptied
        state.given[(*key, slot)] = at
        out.append(
            Exemplar(
                {} if total.attributes else None,
                value,
                at,
                span or None,
                trace or None,
            )
        )
    return out


def nothing(reader: Any, now: int) -> dict[InstrumentationScope, list[Metric]]:
    """What a process that does not export the folder collects of the engine's series."""
    return {}


# --------------------------------------------------------------------------
# The exporting process
# --------------------------------------------------------------------------


def serve_metrics(
    directory: str | os.PathLike[str] | None = None,
    service_name: str | None = None,
    **setup_kwargs: Any,
) -> Any:
    """Export the total of every process in *directory*: ``setup_metrics`` with
    ``aggregate=True``.  Returns the :class:`~otel_aspects.MetricsSetup`.

    *directory* defaults to ``OTEL_ASPECTS_MULTIPROCESS_DIR`` (created if missing);
    *service_name* to ``OTEL_SERVICE_NAME``, else the name in the folder's marker.
    Exporters as for ``setup_metrics`` (e.g. ``exporters="prometheus"``,
    ``prometheus_port=9464``, ``OTEL_EXPORTER_OTLP_ENDPOINT``).  The variable is
    set for child processes, so workers forked or started later record into the
    same folder.
    """
    from .sdk import setup_metrics

    raw = os.fspath(directory) if directory is not None else os.environ.get(ENV_VAR, "").strip()
    if not raw:
        raise MultiprocessError(
            f"serve_metrics needs a folder: pass it, or set {ENV_VAR} (the workers' folder)"
        )
    path = Path(raw).expanduser().absolute()
    name = service_name or os.environ.get("OTEL_SERVICE_NAME", "").strip()
    if not name and path.is_dir():
        marker = _read_marker(path / MARKER_NAME)
        name = str(marker.get("service", "")) if marker else ""
    if not name:
        raise MultiprocessError(
            f"serve_metrics: no service name for {short_repr(str(path))}: pass service_name= "
            "(--service), or set OTEL_SERVICE_NAME"
        )
    path.mkdir(parents=True, exist_ok=True)
    os.environ[ENV_VAR] = str(path)
    return setup_metrics(name, multiprocess_dir=path, aggregate=True, **setup_kwargs)


_registries: dict[tuple[int, str], Any] = {}
_registries_lock = threading.Lock()
_providers: list[Any] = []


def prometheus_registry(folder: Folder) -> Any:
    """A ``prometheus_client`` registry whose every collection is *folder*'s total.

    For serving the whole server's metrics from any process, e.g. ``/metrics`` on a
    worker's own port (:mod:`otel_aspects.exposition`): a private SDK provider with
    a Prometheus reader, whose engine store collects the folder (the resource is the
    folder's service and ``service.instance.id``).  One per process and folder.
    """
    key = (os.getpid(), str(folder.path))
    with _registries_lock:
        registry = _registries.get(key)
        if registry is not None:
            return registry
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import Resource
        from prometheus_client import CollectorRegistry

        from . import engine

        registry = CollectorRegistry(auto_describe=True)
        provider = MeterProvider(
            metric_readers=[PrometheusMetricReader(registry=registry)],
            resource=Resource.create(
                {"service.name": folder.service_name, "service.instance.id": folder.instance_id}
            ),
            shutdown_on_exit=False,
        )
        store = engine.store_for(provider)
        assert store is not None
        collector = Collector(folder, compact_interval=0)
        store.use_files(None, collector.collect)
        store.new_generation()
        _providers.append(provider)  # alive while the process is: stores hold it weakly
        _registries[key] = registry
        return registry
