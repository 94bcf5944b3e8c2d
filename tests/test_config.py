"""Tests for otel_aspects.config: loading, validation, lookup, error policy."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
import test_default_buckets

from otel_aspects.config import (
    DEFAULT_SECONDS_BUCKETS,
    MetricsConfig,
    MetricsConfigError,
    MetricSpec,
    load_metrics_config,
    loaded_configs,
    validate_config_file,
)


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
