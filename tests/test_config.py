"""Tests for otel_aspects.config: loading, validation, lookup, error policy, bounded
messages, as_metrics_config, did_you_mean, strict_mode and the config registry."""

from __future__ import annotations

import logging
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from itertools import pairwise
from pathlib import Path

import pytest
import test_default_buckets
import yaml
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_aspects import config as config_module
from otel_aspects.client import OTelMetricsClient, create_metrics_client
from otel_aspects.config import (
    DEFAULT_SECONDS_BUCKETS,
    MAPPING_SOURCE,
    MAX_CONFIG_BYTES,
    MAX_REPORTED_ERRORS,
    MetricsConfig,
    MetricsConfigError,
    MetricSpec,
    as_metrics_config,
    clear_loaded_configs,
    did_you_mean,
    load_metrics_config,
    loaded_configs,
    on_config_registered,
    register_config,
    strict_mode,
    validate_config_file,
)
from otel_aspects.testing import counter_value


def write(tmp_path: Path, text: str, name: str = "svc.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OTEL_METRICS_CONFIG_PATH", raising=False)
    monkeypatch.delenv("OTEL_ASPECTS_STRICT", raising=False)
    monkeypatch.chdir(tmp_path)


SEED = """\
service_name: svc
counters:
  - name: requests_total
    description: Total number of requests
    unit: "1"
    capture: true
  - name: errors_total
    capture: false
histograms:
  - name: request_duration_seconds
    description: Request duration in seconds
    unit: "s"
gauges:
  - name: queue_depth
up_down_counters:
  - name: in_flight
    max_series: 50
"""


class TestValidFile:
    def test_seed_format_loads(self, tmp_path: Path) -> None:
        """The seed's YAML format loads every section in file order."""
        cfg = load_metrics_config("svc", write(tmp_path, SEED))
        assert list(cfg.metrics) == [
            "requests_total",
            "errors_total",
            "request_duration_seconds",
            "queue_depth",
            "in_flight",
        ]
        assert cfg.errors == ()
        assert cfg.source == tmp_path / "svc.yml"
        assert [s.name for s in cfg.counters] == ["requests_total", "errors_total"]
        assert [s.name for s in cfg.histograms] == ["request_duration_seconds"]
        assert [s.name for s in cfg.gauges] == ["queue_depth"]
        assert cfg.up_down_counters[0].max_series == 50
        assert cfg.metrics["errors_total"].capture is False
        assert cfg.metrics["requests_total"].description == "Total number of requests"

    def test_defaults(self, tmp_path: Path) -> None:
        """Unit defaults to "1", capture to true, description to ""."""
        cfg = load_metrics_config("svc", write(tmp_path, "counters:\n  - name: a\n"))
        assert cfg.metrics["a"] == MetricSpec("counter", "a", "", "1", True, None, None)

    def test_seconds_histogram_gets_seconds_buckets(self, tmp_path: Path) -> None:
        """A histogram in seconds without buckets gets DEFAULT_SECONDS_BUCKETS."""
        path = write(
            tmp_path,
            """\
            histograms:
              - name: a_seconds
              - name: b
                unit: s
              - name: c
                unit: ms
              - name: d_seconds
                buckets: [1, 2.5, 10]
            """,
        )
        m = load_metrics_config("svc", path).metrics
        assert m["a_seconds"].unit == "s"
        assert m["a_seconds"].buckets == DEFAULT_SECONDS_BUCKETS
        assert m["b"].buckets == DEFAULT_SECONDS_BUCKETS
        assert m["c"].buckets is None
        assert m["d_seconds"].buckets == (1.0, 2.5, 10.0)
        assert DEFAULT_SECONDS_BUCKETS == test_default_buckets.EXPECTED  # by value, every edge

    def test_unquoted_unit_number_is_accepted(self, tmp_path: Path) -> None:
        """`unit: 1` (a YAML int) means the unit "1"."""
        cfg = load_metrics_config("svc", write(tmp_path, "counters:\n  - name: a\n    unit: 1\n"))
        assert cfg.metrics["a"].unit == "1"
        assert cfg.errors == ()

    def test_empty_file_is_an_empty_config(self, tmp_path: Path) -> None:
        """An empty file is valid and declares nothing."""
        cfg = load_metrics_config("svc", write(tmp_path, ""))
        assert cfg.metrics == {} and cfg.errors == ()

    def test_loaded_configs_remembers_each_load(self, tmp_path: Path) -> None:
        """Every loaded config is listed by loaded_configs(), oldest first."""
        a = load_metrics_config("svc", write(tmp_path, SEED))
        b = load_metrics_config("other")
        assert loaded_configs() == (a, b)


class TestErrors:
    def test_string_false_capture_is_rejected(self, tmp_path: Path) -> None:
        """PITFALL: capture: 'false' (a string) must not register the metric."""
        path = write(tmp_path, "counters:\n  - name: a\n    capture: 'false'\n  - name: b\n")
        cfg = load_metrics_config("svc", path)
        assert "a" not in cfg.metrics
        assert "b" in cfg.metrics
        (message,) = cfg.errors
        assert "capture" in message and "'false'" in message and "without quotes" in message

    @pytest.mark.parametrize(
        ("text", "kept"),
        [
            ("counters:\nhistograms:\n  - name: h_seconds\n", ["h_seconds"]),
            ("counters:\n  - description: x\n  - name: b\nhistograms:\n  - name: h\n", ["b", "h"]),
            ("counters:\n  - just_a_string\n  - name: b\n", ["b"]),
            ("counters:\n  - name: 9bad\n  - name: b\n", ["b"]),
            ("counters: {name: a}\nhistograms:\n  - name: h\n", ["h"]),
            ("- name: a\n- name: b\n", []),
        ],
        ids=["empty-section", "no-name", "non-mapping", "bad-name", "section-not-list", "list"],
    )
    def test_one_bad_entry_keeps_the_rest(self, tmp_path: Path, text: str, kept: list[str]) -> None:
        """PITFALL: a bad entry is an error for that entry only; valid entries survive."""
        cfg = load_metrics_config("svc", write(tmp_path, text))
        assert list(cfg.metrics) == kept
        assert len(cfg.errors) == 1

    def test_typo_key_suggests_the_right_one(self, tmp_path: Path) -> None:
        """An unknown key like `captur:` is an error with a did-you-mean hint."""
        path = write(tmp_path, "counters:\n  - name: a\n    captur: false\n")
        cfg = load_metrics_config("svc", path)
        assert cfg.metrics == {}
        (message,) = cfg.errors
        assert "'captur'" in message and "did you mean 'capture'" in message

    def test_unknown_top_level_key(self, tmp_path: Path) -> None:
        """A misspelt section is reported with a hint, and the others are kept."""
        path = write(tmp_path, "countres:\n  - name: a\nhistograms:\n  - name: h\n")
        cfg = load_metrics_config("svc", path)
        assert list(cfg.metrics) == ["h"]
        assert "did you mean 'counters'" in cfg.errors[0]

    def test_duplicate_name_across_sections(self, tmp_path: Path) -> None:
        """One name declared twice, even in two sections, is an error; the first is kept."""
        path = write(tmp_path, "counters:\n  - name: a\nhistograms:\n  - name: a\n")
        cfg = load_metrics_config("svc", path)
        assert cfg.metrics["a"].kind == "counter"
        assert "already declared at counters[0]" in cfg.errors[0]

    @pytest.mark.parametrize(
        "buckets",
        ["[]", "[1, 1]", "[2, 1]", "[1, .inf]", "[1, .nan]", "[1, x]", "[true, 2]", "5", "'1,2'"],
    )
    def test_bad_buckets(self, tmp_path: Path, buckets: str) -> None:
        """Buckets must be a non-empty, strictly ascending list of finite numbers."""
        path = write(tmp_path, f"histograms:\n  - name: h\n    buckets: {buckets}\n")
        cfg = load_metrics_config("svc", path)
        assert cfg.metrics == {}
        assert "key 'buckets'" in cfg.errors[0]

    def test_buckets_on_a_counter(self, tmp_path: Path) -> None:
        """Only histograms take buckets."""
        path = write(tmp_path, "counters:\n  - name: a\n    buckets: [1, 2]\n")
        cfg = load_metrics_config("svc", path)
        assert cfg.metrics == {}
        assert "only histograms take buckets" in cfg.errors[0]

    @pytest.mark.parametrize("value", ["0", "-3", "true", "1.5", "many"])
    def test_bad_max_series(self, tmp_path: Path, value: str) -> None:
        """max_series must be a positive integer."""
        path = write(tmp_path, f"counters:\n  - name: a\n    max_series: {value}\n")
        assert load_metrics_config("svc", path).metrics == {}

    @pytest.mark.parametrize(
        "line", ["unit: [s]", "unit: 'é'", "description: [x]", "capture: 1", "capture: null"]
    )
    def test_bad_values(self, tmp_path: Path, line: str) -> None:
        """Wrongly typed values drop the entry with a message naming the key."""
        path = write(tmp_path, f"counters:\n  - name: a\n    {line}\n")
        cfg = load_metrics_config("svc", path)
        assert cfg.metrics == {}
        assert f"key '{line.split(':')[0]}'" in cfg.errors[0]

    def test_message_names_file_entry_key_problem_and_fix(self, tmp_path: Path) -> None:
        """Each message says where (file, section[index], name, key), what and how to fix."""
        path = write(tmp_path, "counters:\n  - name: ok\n  - name: a\n    capture: 'no'\n")
        (message,) = validate_config_file(path)
        assert message.startswith(f"{path}: counters[1] 'a': key 'capture':")
        assert "write capture: true or capture: false" in message

    def test_yaml_syntax_error(self, tmp_path: Path) -> None:
        """Broken YAML gives one message with the file and an empty config."""
        path = write(tmp_path, "counters:\n  - name: [a\n")
        cfg = load_metrics_config("svc", path)
        assert cfg.metrics == {}
        assert cfg.errors[0].startswith(f"{path}: YAML:")

    def test_safe_load_only(self, tmp_path: Path) -> None:
        """Python-object tags are refused (yaml.safe_load)."""
        path = write(tmp_path, "counters: !!python/object/apply:os.system ['true']\n")
        assert load_metrics_config("svc", path).errors

    def test_errors_logged_once_at_error(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Each problem is logged at ERROR, once even when the file is loaded twice."""
        path = write(tmp_path, "counters:\n  - name: a\n    captur: true\n  - {}\n")
        with caplog.at_level(logging.DEBUG, logger="otel_aspects"):
            load_metrics_config("svc", path)
            load_metrics_config("svc", path)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 2

    def test_strict_raises_listing_all(self, tmp_path: Path) -> None:
        """strict=True raises MetricsConfigError (a ValueError) with every problem."""
        path = write(tmp_path, "counters:\n  - name: a\n    captur: true\n  - {}\n")
        with pytest.raises(MetricsConfigError) as info:
            load_metrics_config("svc", path, strict=True)
        assert isinstance(info.value, ValueError)
        assert len(info.value.errors) == 2
        assert "captur" in str(info.value) and "counters[1]" in str(info.value)

    def test_strict_from_environment(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """OTEL_ASPECTS_STRICT=1 turns strict mode on; strict=False overrides it."""
        path = write(tmp_path, "counters:\n")
        monkeypatch.setenv("OTEL_ASPECTS_STRICT", "1")
        with pytest.raises(MetricsConfigError):
            load_metrics_config("svc", path)
        assert load_metrics_config("svc", path, strict=False).errors

    def test_service_name_mismatch_is_reported_but_kept(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A file declaring another service logs a WARNING and still loads."""
        path = write(tmp_path, "service_name: other\ncounters:\n  - name: a\n")
        with caplog.at_level(logging.WARNING, logger="otel_aspects"):
            cfg = load_metrics_config("svc", path)
        assert "a" in cfg.metrics
        assert any("'other'" in r.getMessage() for r in caplog.records)
        assert all(r.levelno == logging.WARNING for r in caplog.records)


class TestLookup:
    def test_missing_file_warns_naming_every_place(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """PITFALL: a missing config is one WARNING listing each path tried, not a debug line."""
        monkeypatch.setenv("OTEL_METRICS_CONFIG_PATH", str(tmp_path / "elsewhere"))
        with caplog.at_level(logging.DEBUG, logger="otel_aspects"):
            cfg = load_metrics_config("svc")
            load_metrics_config("svc")
        assert cfg.metrics == {} and cfg.source is None
        (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert record.levelno == logging.WARNING
        text = record.getMessage()
        assert str(tmp_path / "elsewhere") in text
        assert str(tmp_path / "config" / "metrics" / "svc.yml") in text
        assert str(tmp_path / "config" / "metrics" / "svc.yaml") in text

    def test_explicit_path_wins(self, tmp_path: Path) -> None:
        """An explicit path is used even if the default place has a file."""
        (tmp_path / "config" / "metrics").mkdir(parents=True)
        write(tmp_path / "config" / "metrics", "counters:\n  - name: default\n")
        cfg = load_metrics_config("svc", write(tmp_path, "counters:\n  - name: explicit\n"))
        assert list(cfg.metrics) == ["explicit"]

    def test_default_place(self, tmp_path: Path) -> None:
        """./config/metrics/<service>.yml is found from the working directory."""
        (tmp_path / "config" / "metrics").mkdir(parents=True)
        write(tmp_path / "config" / "metrics", "counters:\n  - name: default\n")
        assert list(load_metrics_config("svc").metrics) == ["default"]

    def test_env_file_and_folder(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """OTEL_METRICS_CONFIG_PATH may be a file, or a folder holding <service>.yaml."""
        folder = tmp_path / "conf"
        folder.mkdir()
        path = write(folder, "counters:\n  - name: from_env\n", name="svc.yaml")
        monkeypatch.setenv("OTEL_METRICS_CONFIG_PATH", str(path))
        assert list(load_metrics_config("svc").metrics) == ["from_env"]
        monkeypatch.setenv("OTEL_METRICS_CONFIG_PATH", str(folder))
        assert list(load_metrics_config("svc").metrics) == ["from_env"]

    def test_strict_missing_explicit_path_raises(self, tmp_path: Path) -> None:
        """In strict mode an explicit path that does not exist is an error."""
        with pytest.raises(MetricsConfigError, match="not found"):
            load_metrics_config("svc", tmp_path / "nope.yml", strict=True)


class TestModel:
    def test_spec_is_frozen(self) -> None:
        """MetricSpec is immutable."""
        spec = MetricSpec("counter", "a")
        with pytest.raises(AttributeError):
            spec.name = "b"  # type: ignore[misc]

    def test_config_properties_include_disabled(self) -> None:
        """The per-kind properties list capture: false specs too."""
        cfg = MetricsConfig("svc", {"a": MetricSpec("counter", "a", capture=False)})
        assert cfg.counters == [cfg.metrics["a"]]
        assert cfg.histograms == [] == cfg.gauges == cfg.up_down_counters

    def test_validate_missing_file(self, tmp_path: Path) -> None:
        """validate_config_file reports a missing file instead of raising."""
        (message,) = validate_config_file(tmp_path / "nope.yml")
        assert "not found" in message


class TestHostileFiles:
    def test_duplicate_section_is_an_error_not_a_silent_overwrite(self, tmp_path: Path) -> None:
        """A second `counters:` key used to replace the first one without a word."""
        path = write(
            tmp_path,
            """\
            counters:
              - name: c1
            histograms:
              - name: h1_seconds
            counters:
              - name: c2
            """,
        )
        errors = validate_config_file(path)
        assert len(errors) == 1
        assert "'counters' appears twice (lines 1 and 5)" in errors[0]
        assert str(path) in errors[0]

    def test_duplicate_key_inside_an_entry_is_an_error(self, tmp_path: Path) -> None:
        """`name:` given twice in one entry names both lines."""
        path = write(tmp_path, "counters:\n  - name: c1\n    name: c2\n")
        (error,) = validate_config_file(path)
        assert "'name' appears twice (lines 2 and 3)" in error

    def test_anchors_and_merge_keys_still_load(self, tmp_path: Path) -> None:
        """YAML merge keys are not duplicates: shared settings through an anchor work."""
        path = write(
            tmp_path,
            """\
            counters:
              - &base {name: a_total, max_series: 7}
              - <<: *base
                name: b_total
            """,
        )
        config = load_metrics_config("svc", path, strict=True)
        assert config.metrics["b_total"].max_series == 7

    @pytest.mark.parametrize("bucket", ["1.0e+400", "9" * 400, "-1.0e+309"])
    def test_huge_bucket_is_an_entry_error(self, tmp_path: Path, bucket: str) -> None:
        """A bucket too large for a float is reported, never an OverflowError."""
        path = write(
            tmp_path, f"histograms:\n  - name: h_seconds\n    buckets: [-2, 1, {bucket}]\n"
        )
        (error,) = validate_config_file(path)
        assert "histograms[0] 'h_seconds': key 'buckets'" in error
        assert "not finite or too large" in error

    def test_home_relative_path_is_expanded(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """`~/...` means the home folder, as a shell would read it."""
        monkeypatch.setenv("HOME", str(tmp_path))
        write(tmp_path, "counters:\n  - name: home_total\n", name="home.yml")
        assert "home_total" in load_metrics_config("home", "~/home.yml", strict=True).metrics
        monkeypatch.setenv("OTEL_METRICS_CONFIG_PATH", "~")
        assert "home_total" in load_metrics_config("home").metrics


# --------------------------------------------------------------------------- bounded messages


def alias_bomb(levels: int = 8) -> str:
    """A "billion laughs" file: each level lists nine aliases of the one before (~350 bytes)."""
    names = "abcdefghijk"[:levels]
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for before, name in pairwise(names):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{before}"] * 9) + "]")
    lines.append("counters: [" + ",".join([f"*{names[-1]}"] * 9) + "]")
    return "\n".join(lines) + "\n"


class _Bytes(logging.Handler):
    """Counts the bytes of every formatted record (what a real log file would get)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.total = 0
        self.longest = 0
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        size = len(self.format(record).encode())
        self.total += size
        self.longest = max(self.longest, size)
        self.records += 1


@pytest.fixture
def logged() -> Iterator[_Bytes]:
    """Every otel_aspects log record, at every level, measured."""
    handler = _Bytes()
    log = logging.getLogger("otel_aspects")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield handler
    log.removeHandler(handler)
    log.setLevel(level)


class TestBoundedMessages:
    @pytest.mark.parametrize("levels", [5, 8])
    def test_alias_bomb_logs_little_and_returns_quickly(
        self, tmp_path: Path, levels: int, logged: _Bytes
    ) -> None:
        """Issue 9 item 6: a 350-byte alias bomb wrote 34 MB of ERROR lines (`got {entry!r}`
        walked every shared list); now each value is quoted in a bounded form."""
        path = write(tmp_path, alias_bomb(levels))
        assert path.stat().st_size < 400
        start = time.perf_counter()
        cfg = load_metrics_config("svc", path)
        assert time.perf_counter() - start < 1.0
        assert cfg.metrics == {}
        assert len(cfg.errors) == levels + 9  # l0.. unknown keys, nine bad entries
        assert logged.records == len(cfg.errors)
        assert logged.total < 10 * 1024 and logged.longest < 600
        assert all(len(e) < 600 for e in cfg.errors)

    def test_bomb_in_every_value_gives_bounded_messages(self, tmp_path: Path) -> None:
        """Every key whose value a message quotes gets the bomb: each message stays short."""
        bomb = alias_bomb(8).replace("counters: [", "x: [")
        text = (
            bomb
            + "service_name: *h\n"
            + "counters:\n"
            + "  - *h\n"
            + "  - name: *h\n"
            + "  - {name: a, description: *h, unit: *h, capture: *h, max_series: *h}\n"
            + "histograms:\n"
            + "  - {name: h, buckets: *h}\n"
            + "  - {name: h2, buckets: [1, *h]}\n"
            + "gauges: *h\n"
        )
        path = write(tmp_path, text)
        start = time.perf_counter()
        errors = validate_config_file(path)
        assert time.perf_counter() - start < 1.0
        keys = "service_name", "name", "description", "unit", "capture", "max_series", "buckets"
        for key in keys:
            assert any(f"key '{key}'" in e for e in errors), key
        assert sum(len(e) for e in errors) < 10 * 1024
        assert max(len(e) for e in errors) < 600

    def test_long_metric_name_is_quoted_short(self, tmp_path: Path, logged: _Bytes) -> None:
        """A 1 MB name used to be echoed whole; now its start, end and length are shown."""
        name = "n" + "a" * 900_000 + "z"
        path = write(tmp_path, f"counters:\n  - name: {name}\n  - name: ok\n")
        cfg = load_metrics_config("svc", path)
        assert list(cfg.metrics) == ["ok"]
        (error,) = cfg.errors
        assert len(error) < 400
        assert "'naaaa" in error and "aaz' (900002 characters)" in error
        assert "is not a valid OpenTelemetry instrument name" in error
        assert logged.longest < 600
        cfg = as_metrics_config({"counters": [{"name": "b" * 1_048_576}]}, "svc")
        assert "(1048576 characters)" in cfg.errors[0] and len(cfg.errors[0]) < 400

    def test_long_key_is_quoted_short(self, tmp_path: Path) -> None:
        """A long unknown key is shortened too, at top level and inside an entry."""
        key = "k" * 100_000
        # explicit keys (`? key`): a plain key is limited to 1024 characters by YAML
        path = write(tmp_path, f"? {key}\n: 1\ncounters:\n  - name: a\n    ? {key}\n    : 1\n")
        errors = validate_config_file(path)
        assert len(errors) == 2
        assert all(len(e) < 500 and "(100000 characters)" in e for e in errors)

    def test_duplicate_long_key_is_quoted_short(self, tmp_path: Path) -> None:
        """The duplicate-key message of the YAML loader quotes the key short as well."""
        key = "d" * 100_000
        (error,) = validate_config_file(write(tmp_path, f"? {key}\n: 1\n? {key}\n: 2\n"))
        assert "appears twice (lines 1 and 3)" in error and len(error) < 1000

    def test_file_over_the_size_cap_is_refused_unread(self, tmp_path: Path) -> None:
        """Issue 9 item 6: a 50 MB file took 67 s and 979 MB to parse; over MAX_CONFIG_BYTES
        a file is refused with its size, the limit and the fix, before any parsing."""
        path = tmp_path / "svc.yml"
        line = "# " + "c" * 97 + "\n"
        path.write_text(line * (MAX_CONFIG_BYTES // len(line) + 1))
        size = path.stat().st_size
        assert size > MAX_CONFIG_BYTES == 1024 * 1024
        start = time.perf_counter()
        (error,) = validate_config_file(path)
        assert time.perf_counter() - start < 0.5
        assert error.startswith(f"{path}: file: {size} bytes is over the limit of 1048576 bytes")
        assert "MAX_CONFIG_BYTES" in error and "check that this is the right file" in error
        assert load_metrics_config("svc", path).errors == (error,)
        with pytest.raises(MetricsConfigError, match="over the limit"):
            load_metrics_config("svc", path, strict=True)

    def test_size_cap_boundary(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A file of exactly MAX_CONFIG_BYTES is read; one byte more is refused."""
        monkeypatch.setattr(config_module, "MAX_CONFIG_BYTES", 200)
        body = "counters:\n  - name: a\n"
        path = write(tmp_path, body + "#" * (199 - len(body)) + "\n")
        assert path.stat().st_size == 200
        assert list(load_metrics_config("svc", path, strict=True).metrics) == ["a"]
        path.write_text(path.read_text() + "\n")
        (error,) = validate_config_file(path)
        assert "201 bytes is over the limit of 200 bytes" in error

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("counters:\n  - name: a\n    max_series: " + "9" * 5000 + "\n", "ValueError"),
            ("counters: " + "[" * 1500 + "]" * 1500 + "\n", "nested too deeply"),
            ("counters:\n  - name: a\n    description: 2001-13-45\n", "ValueError"),
        ],
        ids=["int-over-4300-digits", "deep-nesting", "impossible-date"],
    )
    def test_values_pyyaml_cannot_build_are_errors_not_crashes(
        self, tmp_path: Path, text: str, expected: str
    ) -> None:
        """PyYAML raises ValueError / RecursionError (not YAMLError) on these: the loader
        used to let them escape; now each is one bounded error naming the file."""
        path = write(tmp_path, text)
        cfg = load_metrics_config("svc", path)
        (error,) = cfg.errors
        assert error.startswith(f"{path}: YAML: ") and expected in error and len(error) < 600

    def test_problems_listed_per_file_are_capped(self, tmp_path: Path) -> None:
        """A file with many bad entries lists MAX_REPORTED_ERRORS of them and counts the rest."""
        extra = 57
        path = write(tmp_path, "counters:\n" + "  - 1\n" * (MAX_REPORTED_ERRORS + extra))
        errors = validate_config_file(path)
        assert len(errors) == MAX_REPORTED_ERRORS + 1
        assert errors[-1] == (
            f"{path}: file: {extra} more problem(s) not listed (only the first "
            f"{MAX_REPORTED_ERRORS} are); fix the ones above and check again"
        )
        cfg = as_metrics_config({"gauges": [1] * (MAX_REPORTED_ERRORS + 1)}, "svc")
        assert len(cfg.errors) == MAX_REPORTED_ERRORS + 1
        assert cfg.errors[-1].startswith("<mapping>: mapping: 1 more problem(s) not listed")

    def test_config_flood_does_not_silence_record_time_warnings(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Issue 9 item 7: after more than 1,100 config problems, a negative increment at
        record time is still logged (config problems have their own warning budget)."""
        for i in range(6):
            load_metrics_config(f"s{i}", write(tmp_path, "counters:\n" + f"  - {i}\n" * 200))
        client = OTelMetricsClient("svc", MetricsConfig("svc"), meter_provider=MeterProvider())
        client.create_counter("hits_total")
        with caplog.at_level(logging.WARNING, logger="otel_aspects"):
            client.record_counter("hits_total", -1)
        assert any("negative" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- as_metrics_config

BAD_YAML = """\
service_name: svc
countres:
  - name: a
counters:
  - name: ok_total
  - name: b
    captur: true
  - 7
  - name: c
    capture: 'no'
histograms:
  - name: h_seconds
    buckets: [2, 1]
  - name: 9bad
gauges:
"""


class TestAsMetricsConfig:
    def test_none_loads_by_service_name(self, tmp_path: Path) -> None:
        """None means the usual lookup (./config/metrics/<service>.yml here)."""
        (tmp_path / "config" / "metrics").mkdir(parents=True)
        write(tmp_path / "config" / "metrics", "counters:\n  - name: default\n")
        cfg = as_metrics_config(None, "svc")
        assert list(cfg.metrics) == ["default"]
        assert cfg in loaded_configs()

    def test_metrics_config_is_returned_as_is(self) -> None:
        """A MetricsConfig is itself, and registered."""
        given = MetricsConfig("svc", {"a": MetricSpec("counter", "a")})
        assert as_metrics_config(given, "svc") is given
        assert loaded_configs() == (given,)

    @pytest.mark.parametrize("as_path", [str, Path], ids=["str", "Path"])
    def test_path(self, tmp_path: Path, as_path: Callable[[Path], object]) -> None:
        """A str or os.PathLike is loaded with load_metrics_config."""
        path = write(tmp_path, SEED)
        cfg = as_metrics_config(as_path(path), "svc")
        assert cfg.source == path and len(cfg.metrics) == 5

    def test_mapping_gives_the_same_config_as_the_file(self, tmp_path: Path) -> None:
        """A mapping shaped like the YAML gives the same specs as that YAML file."""
        from_file = load_metrics_config("svc", write(tmp_path, SEED))
        from_mapping = as_metrics_config(yaml.safe_load(SEED), "svc")
        assert from_mapping.metrics == from_file.metrics
        assert from_mapping.source is None and from_mapping.errors == ()
        assert from_mapping in loaded_configs()

    def test_mapping_is_validated_with_the_file_messages(self, tmp_path: Path) -> None:
        """Same messages as for the file, `<mapping>` where the file gives its path."""
        path = write(tmp_path, BAD_YAML)
        from_file = load_metrics_config("svc", path)
        from_mapping = as_metrics_config(yaml.safe_load(BAD_YAML), "svc")
        assert len(from_file.errors) == 7
        assert list(from_mapping.errors) == [
            e.replace(str(path), MAPPING_SOURCE) for e in from_file.errors
        ]
        assert list(from_mapping.metrics) == list(from_file.metrics) == ["ok_total"]
        assert from_mapping.errors[0].startswith("<mapping>: key 'countres': unknown top-level")

    def test_mapping_errors_are_logged_once_at_error(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """As for a file: each problem one ERROR line, once."""
        mapping = {"counters": [{"name": "a", "captur": True}]}
        with caplog.at_level(logging.DEBUG, logger="otel_aspects"):
            as_metrics_config(mapping, "svc")
            as_metrics_config(mapping, "svc")
        (record,) = caplog.records
        assert record.levelno == logging.ERROR
        assert record.getMessage().startswith("<mapping>: counters[0] 'a': key 'captur'")

    def test_mapping_strict(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """strict=True, or OTEL_ASPECTS_STRICT=1, raises on a bad mapping; strict=False wins."""
        mapping = {"counters": None}
        with pytest.raises(MetricsConfigError, match="<mapping>: section 'counters'"):
            as_metrics_config(mapping, "svc", strict=True)
        monkeypatch.setenv("OTEL_ASPECTS_STRICT", "1")
        with pytest.raises(MetricsConfigError):
            as_metrics_config(mapping, "svc")
        assert as_metrics_config(mapping, "svc", strict=False).errors
        assert as_metrics_config({"counters": [{"name": "a"}]}, "svc").errors == ()

    def test_mapping_service_name_mismatch_warns(self, caplog: pytest.LogCaptureFixture) -> None:
        """A mapping declaring another service is reported at WARNING and used."""
        with caplog.at_level(logging.WARNING, logger="otel_aspects"):
            cfg = as_metrics_config({"service_name": "other", "gauges": [{"name": "g"}]}, "svc")
        assert "g" in cfg.metrics
        (record,) = caplog.records
        assert record.levelno == logging.WARNING
        assert record.getMessage() == (
            "<mapping>: key 'service_name': the mapping declares 'other' but it was loaded "
            "for 'svc'; fix service_name or load the right one"
        )

    def test_mapping_with_non_string_keys_and_tuples(self) -> None:
        """Whatever a Python mapping holds gives messages, not exceptions."""
        cfg = as_metrics_config(
            {1: "x", "counters": ({"name": "a"}, {("t",): 1, "name": "b"})}, "svc"
        )
        assert list(cfg.metrics) == ["a"]
        assert cfg.errors[0].startswith("<mapping>: key 1: unknown top-level key")
        assert cfg.errors[1].startswith("<mapping>: counters[1] 'b': key ('t',): unknown key")

    def test_mapping_whose_methods_raise_is_an_error(self) -> None:
        """A user Mapping that raises while read is reported as a config problem."""

        class Broken(Mapping[str, object]):
            def __getitem__(self, key: str) -> object:
                raise KeyError(key)

            def __iter__(self) -> Iterator[str]:
                raise RuntimeError("cannot iterate")

            def __len__(self) -> int:
                return 1

        cfg = as_metrics_config(Broken(), "svc")
        (error,) = cfg.errors
        assert error == (
            "<mapping>: top level: cannot be read (RuntimeError: cannot iterate); pass a plain dict"
        )

    @pytest.mark.parametrize(
        "value",
        [[{"name": "a"}], 42, b"config/metrics/svc.yml", object(), list(range(1_000_000))],
        ids=["list", "int", "bytes", "object", "huge-list"],
    )
    def test_anything_else_is_a_type_error(self, value: object) -> None:
        """Other types raise TypeError naming the type and what is accepted, in short."""
        with pytest.raises(TypeError) as info:
            as_metrics_config(value, "svc")
        message = str(info.value)
        assert message.startswith(
            "config must be a MetricsConfig, a mapping shaped like the YAML file"
        )
        assert f"got {type(value).__name__}: " in message
        assert "a path (str or os.PathLike) or None" in message
        assert len(message) < 400

    def test_bytes_path_is_a_type_error(self) -> None:
        """An os.PathLike giving bytes is refused with a hint to use str."""

        class BytesPath:
            def __fspath__(self) -> bytes:
                return b"svc.yml"

        with pytest.raises(TypeError, match="not str; pass the path as a str"):
            as_metrics_config(BytesPath(), "svc")

    def test_through_create_metrics_client(
        self, meter_provider: MeterProvider, metrics_reader: InMemoryMetricReader
    ) -> None:
        """Issue 9 item 8: config= a dict used to raise AttributeError ('dict' object has no
        attribute 'metrics'); now it is validated and used; a wrong type is a TypeError."""
        mapping = {"counters": [{"name": "hits_total"}, {"name": "off_total", "capture": False}]}
        client = create_metrics_client("svc", mapping, meter_provider=meter_provider)
        client.record_counter("hits_total", 3)
        client.record_counter("off_total", 1)
        assert counter_value(metrics_reader, "hits_total") == 3
        assert not client.is_enabled("off_total")
        with pytest.raises(TypeError, match="got list: "):
            create_metrics_client("svc", [mapping], meter_provider=meter_provider)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- helpers


class TestDidYouMean:
    def test_close_name_is_suggested(self) -> None:
        """A typo gets the declared name it is closest to."""
        names = ["request_duration_seconds", "requests_total", "queue_depth"]
        assert (
            did_you_mean("request_duraton_seconds", names)
            == " (did you mean 'request_duration_seconds'?)"
        )
        assert did_you_mean("requests_totl", iter(names)) == " (did you mean 'requests_total'?)"

    @pytest.mark.parametrize(
        ("name", "candidates"),
        [
            ("zzz", ["request_duration_seconds"]),
            ("requests_total", ["requests_total", "requests_totals"]),
            ("a", []),
            ("", ["a"]),
            (None, ["none"]),
            (42, ["42"]),
        ],
        ids=["nothing-close", "exact", "no-candidates", "empty", "none", "int"],
    )
    def test_no_suggestion(self, name: object, candidates: list[object]) -> None:
        """Nothing close, the name itself, or a name that is not a string: no hint."""
        assert did_you_mean(name, candidates) == ""

    def test_bounded(self) -> None:
        """A huge name, or a great many candidates, stay cheap; the hint stays short."""
        start = time.perf_counter()
        assert did_you_mean("requests_total" + "x" * 1_000_000, ["requests_total"]) == ""
        hint = did_you_mean("h" * 250 + "x", ["h" * 255, 7, None])
        assert time.perf_counter() - start < 0.5
        assert hint == f" (did you mean {'h' * 255!r}?)"
        many = [f"metric_{i}_total" for i in range(50_000)]
        start = time.perf_counter()
        did_you_mean("metric_12_totl", many)
        assert time.perf_counter() - start < 2.0


class TestStrictMode:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("1", True),
            ("true", True),
            (" YES ", True),
            ("on", True),
            ("0", False),
            ("false", False),
            ("", False),
            ("2", False),
        ],
    )
    def test_values(self, monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
        """OTEL_ASPECTS_STRICT: 1/true/yes/on (any case, spaces ignored) turn it on."""
        monkeypatch.setenv("OTEL_ASPECTS_STRICT", value)
        assert strict_mode() is expected

    def test_unset_and_read_each_call(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Off when unset; read at each call, as load_metrics_config reads it."""
        assert strict_mode() is False
        monkeypatch.setenv("OTEL_ASPECTS_STRICT", "1")
        assert strict_mode() is True


class TestRegistry:
    @pytest.fixture(autouse=True)
    def _own_listeners(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(config_module, "_listeners", [])

    def test_register_config_is_idempotent(self) -> None:
        """A config registered twice is listed once."""
        cfg = MetricsConfig("svc")
        register_config(cfg)
        register_config(cfg)
        assert loaded_configs() == (cfg,)
        clear_loaded_configs()
        assert loaded_configs() == ()

    def test_listener_sees_each_new_config_once(self, tmp_path: Path) -> None:
        """on_config_registered: called for each config registered afterwards, once."""
        before = register_config(MetricsConfig("early")) or loaded_configs()[0]
        seen: list[MetricsConfig] = []
        assert on_config_registered(seen.append) == seen.append
        on_config_registered(seen.append)  # twice: no effect
        loaded = load_metrics_config("svc", write(tmp_path, SEED))
        given = MetricsConfig("other")
        create_metrics_client("other", given, meter_provider=MeterProvider())
        register_config(given)
        assert seen == [loaded, given]
        assert before not in seen

    def test_failing_listener_does_not_break_loading(self, tmp_path: Path) -> None:
        """A listener that raises is skipped; the next one still runs."""
        seen: list[str] = []

        @on_config_registered
        def broken(config: MetricsConfig) -> None:
            raise RuntimeError("listener bug")

        on_config_registered(lambda config: seen.append(config.service_name))
        cfg = load_metrics_config("svc", write(tmp_path, SEED), strict=True)
        assert seen == ["svc"] and cfg in loaded_configs()

    def test_register_config_refuses_other_types(self) -> None:
        """Only MetricsConfig objects are registered."""
        with pytest.raises(
            TypeError, match="register_config\\(\\) takes a MetricsConfig, got dict"
        ):
            register_config({"counters": []})  # type: ignore[arg-type]
