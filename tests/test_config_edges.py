"""otel_aspects.config at its edges: exact messages and boundaries (mutation survivors,
docs/MUTATION.md)."""

from __future__ import annotations

import logging
import os
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from otel_aspects import config as config_module
from otel_aspects.config import (
    MetricsConfigError,
    bucket_problem,
    did_you_mean,
    load_metrics_config,
    loaded_configs,
    validate_config_file,
)


def write(tmp_path: Path, text: str, name: str = "svc.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def one_error(tmp_path: Path, text: str) -> str:
    errors = validate_config_file(write(tmp_path, text))
    assert len(errors) == 1, errors
    return errors[0]


class TestMessages:
    def test_unknown_key_without_a_close_match_lists_the_allowed_keys(self, tmp_path: Path) -> None:
        message = one_error(tmp_path, "counters:\n  - name: a\n    zzz: 1\n")
        assert message.endswith(
            "key 'zzz': unknown key; allowed keys: name, description, unit, capture, max_series"
        )
        top = one_error(tmp_path, "qqqqqq: 1\n")
        assert top.endswith(
            "unknown top-level key; allowed keys: service_name, counters, histograms, gauges, "
            "up_down_counters"
        )

    def test_an_unknown_key_sorting_before_buckets_is_not_called_buckets(
        self, tmp_path: Path
    ) -> None:
        """Only the key ``buckets`` gets the "only histograms" message."""
        message = one_error(tmp_path, "counters:\n  - name: a\n    aaa: 1\n")
        assert "key 'aaa': unknown key" in message and "only histograms" not in message
        message = one_error(tmp_path, "counters:\n  - name: a\n    buckets: [1]\n")
        assert "key 'buckets': only histograms take buckets" in message

    @pytest.mark.parametrize("section", ["counters", "gauges", "up_down_counters"])
    def test_only_histograms_take_buckets(self, tmp_path: Path, section: str) -> None:
        message = one_error(tmp_path, f"{section}:\n  - name: a\n    buckets: [1, 2]\n")
        assert "only histograms take buckets" in message
        assert load_metrics_config("svc", tmp_path / "svc.yml").metrics == {}

    def test_duplicate_key_names_both_lines(self, tmp_path: Path) -> None:
        message = one_error(tmp_path, "counters:\n  - name: a\n    unit: s\n    name: b\n")
        assert "key 'name' appears twice (lines 2 and 4); merge them into one" in message

    def test_duplicate_non_string_keys_are_found_too(self, tmp_path: Path) -> None:
        """Integer (and other non-string) keys given twice are duplicates as well."""
        message = one_error(tmp_path, "counters:\n  - name: a\n    1: x\n    1: y\n")
        assert "key 1 appears twice (lines 3 and 4)" in message

    def test_duplicate_key_within_one_line(self, tmp_path: Path) -> None:
        message = one_error(tmp_path, "counters: [{name: a, name: b}]\n")
        assert "key 'name' appears twice" in message

    def test_a_duplicate_after_an_unhashable_key_is_still_reported(self, tmp_path: Path) -> None:
        message = one_error(tmp_path, "? [a, b]\n: 1\ncounters: []\ncounters: []\n")
        assert "key 'counters' appears twice (lines 3 and 4)" in message

    @pytest.mark.parametrize("declared", ["aaa", "zzz"])
    def test_service_name_mismatch_whichever_way_it_sorts(
        self, tmp_path: Path, declared: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        path = write(tmp_path, f"service_name: {declared}\ncounters:\n  - name: a\n")
        with caplog.at_level(logging.WARNING, logger="otel_aspects"):
            cfg = load_metrics_config("svc", path)
        assert list(cfg.metrics) == ["a"]  # the file is still used
        assert len(cfg.errors) == 1 and f"declares {declared!r}" in cfg.errors[0]
        assert [r.levelno for r in caplog.records] == [logging.WARNING]


class TestSections:
    @pytest.mark.parametrize(("value", "kind"), [("5", "int"), ("abc", "str"), ("{a: 1}", "dict")])
    def test_a_section_that_is_not_a_list(self, tmp_path: Path, value: str, kind: str) -> None:
        message = one_error(tmp_path, f"counters: {value}\n")
        assert message.endswith(
            f"section 'counters': expected a list of entries ('- name: ...'), got a {kind}"
        )

    def test_a_self_referencing_anchor_is_reported_at_its_key(self, tmp_path: Path) -> None:
        """Mappings are built lazily (``deep=False``): a recursive alias is a bad value of
        one key, not an unreadable file."""
        message = one_error(tmp_path, "counters: &x\n  - name: a\n    description: *x\n")
        assert "counters[0] 'a': key 'description': expected a string" in message

    def test_duplicates_after_a_merge_key_are_still_found(self, tmp_path: Path) -> None:
        text = """\
            counters:
              - &shared
                name: a
                unit: s
              - <<: *shared
                name: b
                unit: ms
                unit: s
            """
        message = one_error(tmp_path, text)
        assert "key 'unit' appears twice (lines 7 and 8)" in message


class TestUnits:
    def test_default_unit_depends_on_kind_and_name(self, tmp_path: Path) -> None:
        """Seconds only for a histogram named *_seconds: not for a *_seconds counter,
        not for any other histogram (no seconds buckets on a *_bytes histogram)."""
        path = write(
            tmp_path,
            """\
            counters:
              - name: wait_seconds
            up_down_counters:
              - name: busy_seconds
            histograms:
              - name: size_bytes
              - name: latency_seconds
            """,
        )
        m = load_metrics_config("svc", path).metrics
        assert (m["wait_seconds"].unit, m["wait_seconds"].buckets) == ("1", None)
        assert (m["busy_seconds"].unit, m["busy_seconds"].buckets) == ("1", None)
        assert (m["size_bytes"].unit, m["size_bytes"].buckets) == ("1", None)
        assert m["latency_seconds"].unit == "s" and m["latency_seconds"].buckets is not None
        assert m["latency_seconds"].buckets[4] == 0.075


class TestLimits:
    def test_max_series_one_is_valid(self, tmp_path: Path) -> None:
        path = write(tmp_path, "counters:\n  - name: a\n    max_series: 1\n")
        assert load_metrics_config("svc", path, strict=True).metrics["a"].max_series == 1
        assert "positive integer" in one_error(
            tmp_path, "counters:\n  - name: a\n    max_series: 0\n"
        )

    def test_bucket_bound_is_exclusive(self) -> None:
        assert bucket_problem([9.9e299]) is None
        for too_big in (1e300, 1e305, -1e300):
            problem = bucket_problem([too_big])
            assert problem is not None and "not finite or too large" in problem, too_big

    def test_bucket_problems_show_the_value_briefly(self) -> None:
        assert bucket_problem([float("inf")]) == (
            "item 0 (inf) is not finite or too large; use numbers below 1e300"
        )
        assert bucket_problem([1, 1e301]) == (
            "item 1 (1e+301) is not finite or too large; use numbers below 1e300"
        )
        for huge in (10**300, 10**400):  # a 301- or 401-digit int: quoted briefly
            problem = bucket_problem([huge])
            assert problem is not None
            shown = problem.removeprefix("item 0 (").split(")")[0]
            assert (
                problem == f"item 0 ({shown}) is not finite or too large; use numbers below 1e300"
            )
            assert shown.startswith("1000") and "..." in shown and len(shown) <= 30, shown


class TestLoading:
    def test_signature(self, tmp_path: Path) -> None:
        """config_path may be given by name; strict only by name."""
        path = write(tmp_path, "counters:\n  - name: a\n")
        assert list(load_metrics_config("svc", config_path=path).metrics) == ["a"]
        assert list(load_metrics_config(service_name="svc", config_path=path).metrics) == ["a"]
        with pytest.raises(TypeError):
            load_metrics_config("svc", path, True)  # type: ignore[misc]

    def test_missing_explicit_path_raises_only_when_strict(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        missing = tmp_path / "nope.yml"
        with caplog.at_level(logging.WARNING, logger="otel_aspects"):
            cfg = load_metrics_config("svc", missing)
        assert cfg.metrics == {} and cfg.source is None
        assert len(caplog.records) == 1 and "No metrics config" in caplog.records[0].getMessage()
        with pytest.raises(MetricsConfigError, match="not found"):
            load_metrics_config("svc", missing, strict=True)
        # strict, but no explicit path: the default lookup finding nothing is not an error
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("OTEL_METRICS_CONFIG_PATH", raising=False)
        assert load_metrics_config("svc", strict=True).metrics == {}

    def test_each_load_is_remembered_the_same_object_once(self, tmp_path: Path) -> None:
        path = write(tmp_path, "counters:\n  - name: a\n")
        first = load_metrics_config("svc", path)
        second = load_metrics_config("svc", path)
        assert first == second and first is not second
        assert loaded_configs() == (first, second)
        assert loaded_configs()[1] is second
        config_module.register_config(first)  # given again (to a client): not twice
        assert len(loaded_configs()) == 2

    def test_a_failing_listener_never_breaks_loading(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def boom(config: object) -> None:
            raise RuntimeError("listener bug")

        monkeypatch.setattr(config_module, "_listeners", [boom])
        path = write(tmp_path, "counters:\n  - name: a\n")
        with caplog.at_level(logging.DEBUG, logger="otel_aspects"):
            cfg = load_metrics_config("svc", path)
        assert list(cfg.metrics) == ["a"]
        failed = [r for r in caplog.records if "listener" in r.getMessage()]
        assert len(failed) == 1 and failed[0].levelno == logging.DEBUG
        assert failed[0].exc_info is not None and failed[0].exc_info[0] is RuntimeError


class TestUnreadableFiles:
    def test_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "svc.yml"
        path.write_bytes(b"counters:\n  - name: caf\xe9\n")
        (message,) = validate_config_file(path)
        assert "file: is not UTF-8 text (" in message and "save it as UTF-8" in message
        assert load_metrics_config("svc", path).metrics == {}

    def test_os_error_while_reading(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        path = write(tmp_path, "counters:\n  - name: a\n")

        def denied(self: Path, *args: object, **kwargs: object) -> str:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(Path, "read_text", denied)
        monkeypatch.setattr(Path, "read_bytes", denied)
        monkeypatch.setattr(Path, "open", denied)
        (message,) = validate_config_file(path)
        assert "file: cannot be read ([Errno 13] Permission denied)" in message


class TestBoundedMessages:
    """main's bounds on what a message quotes and on what is read (post-merge survivors)."""

    def test_squeeze_keeps_messages_to_their_limit(self) -> None:
        text = "word " * 400
        assert config_module._squeeze(text) == " ".join(text.split())[:597] + "..."
        assert len(config_module._squeeze(text)) == 600
        assert len(config_module._squeeze(text, 200)) == 200
        assert config_module._squeeze("a\n  b\tc") == "a b c"
        assert config_module._squeeze("x" * 600) == "x" * 600  # at the limit: whole

    def test_a_file_that_grew_past_the_limit_after_stat_is_not_read_whole(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = write(tmp_path, "counters:\n  - name: a\n" + "#" * config_module.MAX_CONFIG_BYTES)
        real_stat = Path.stat

        def small_stat(self: Path, *args: object, **kwargs: object) -> object:
            st = real_stat(self)
            if self != path:
                return st
            fields = list(st)
            fields[6] = 10  # st_size: the file looked small when it was checked
            return type(st)(fields)

        monkeypatch.setattr(Path, "stat", small_stat)
        (message,) = validate_config_file(path)
        assert f"more than {config_module.MAX_CONFIG_BYTES} bytes" in message


def test_at_most_200_problems_are_listed_then_one_count(tmp_path: Path) -> None:
    entries = "".join(f"  - name: 'bad name {i}'\n" for i in range(203))
    errors = validate_config_file(write(tmp_path, "counters:\n" + entries))
    assert config_module.MAX_REPORTED_ERRORS == 200
    assert len(errors) == 201
    assert all("is not a valid OpenTelemetry instrument name" in e for e in errors[:200])
    assert "3 more problem(s) not listed (only the first 200 are)" in errors[200]
    exactly = "".join(f"  - name: 'bad name {i}'\n" for i in range(200))
    assert len(validate_config_file(write(tmp_path, "counters:\n" + exactly))) == 200


class TestOpenSurvivors:
    """The survivors of the re-run on main's message bounds (docs/MUTATION.md, "merged")."""

    def test_a_long_service_name_is_cut_to_260_characters_in_the_hint(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A valid instrument name (255 characters) is quoted whole; longer text is cut."""
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("OTEL_METRICS_CONFIG_PATH", raising=False)
        with caplog.at_level(logging.WARNING, logger="otel_aspects"):
            load_metrics_config("s" * 1000)
        (record,) = caplog.records
        assert "create config/metrics/" + "s" * 260 + ".yml or set" in record.getMessage()

    def test_type_names_are_cut_to_60_characters(self) -> None:
        long_named = type("T" * 100, (), {})
        with pytest.raises(TypeError) as raised:
            config_module.register_config(long_named())  # type: ignore[arg-type]
        assert f"takes a MetricsConfig, got {'T' * 60}: <" in str(raised.value)
        with pytest.raises(TypeError) as raised:
            config_module.as_metrics_config(long_named(), "svc")
        assert f"or None; got {'T' * 60}: <" in str(raised.value)

    def test_bucket_values_are_quoted_in_24_characters(self) -> None:
        """24 characters: the longest float repr, shown whole; a longer int is cut."""
        assert bucket_problem([-1.7976931348623157e308]) == (
            "item 0 (-1.7976931348623157e+308) is not finite or too large; use numbers below 1e300"
        )
        assert bucket_problem([0.0, -2.2250738585072014e-308]) == (
            "item 1 (-2.2250738585072014e-308) is not greater than the one before; "
            "sort them, no duplicates"
        )
        # 302 digits: 10 from the start, "...", 11 from the end (24 characters)
        digits = str(2**1000)
        assert bucket_problem([2**1000]) == (
            f"item 0 ({digits[:10]}...{digits[-11:]}) is not finite or too large; "
            "use numbers below 1e300"
        )
        assert bucket_problem([10**31, 123456789012345678901234567890]) == (
            "item 1 (1234567890...01234567890) is not greater than the one before; "
            "sort them, no duplicates"
        )

    def test_the_overflow_line_of_a_relative_path_says_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The default lookup gives a relative path ("config/...", sorting after "<mapping>")."""
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("OTEL_METRICS_CONFIG_PATH", raising=False)
        (tmp_path / "config" / "metrics").mkdir(parents=True)
        entries = "".join(f"  - name: 'bad name {i}'\n" for i in range(201))
        (tmp_path / "config" / "metrics" / "svc.yml").write_text("counters:\n" + entries)
        with pytest.raises(MetricsConfigError) as raised:
            load_metrics_config("svc", strict=True)
        assert raised.value.errors[-1].startswith(
            "config/metrics/svc.yml: file: 1 more problem(s) not listed"
        )

    def test_squeeze_marks_every_cut_even_after_whitespace(self) -> None:
        """Runs of whitespace count as one space; the first 1200 characters are looked at,
        and a text cut there ends in "..." however little of it is left."""
        squeeze = config_module._squeeze
        assert squeeze(" " * 100 + "x" * 700) == "x" * 597 + "..."
        assert squeeze(" " * 1000 + "x" * 700) == "x" * 200 + "..."
        assert squeeze(" " * 1200 + "lost") == "..."
        assert squeeze(" " * 1100 + "kept") == "kept"
        assert squeeze(" " * 600 + "y" * 600) == "y" * 600  # 1200 characters: all looked at

    def test_a_yaml_value_that_cannot_be_read_is_quoted_in_200_characters(
        self, tmp_path: Path
    ) -> None:
        message = one_error(tmp_path, "counters: !!float " + "z" * 500 + "\n")
        reason = "could not convert string to float: '" + "z" * 500 + "'"
        assert f"a value cannot be read (ValueError: {reason[:197]}...); fix it" in message

    def test_as_metrics_config_signature(self) -> None:
        """value and service_name may be given by name; strict only by name."""
        cfg = config_module.as_metrics_config(
            value={"counters": [{"name": "a"}]}, service_name="svc"
        )
        assert list(cfg.metrics) == ["a"]
        with pytest.raises(TypeError):
            config_module.as_metrics_config({}, "svc", True)  # type: ignore[misc]

    def test_a_path_whose_fspath_raises_is_a_type_error(self) -> None:
        class BadPath(os.PathLike[str]):
            def __fspath__(self) -> str:
                raise RuntimeError("x" * 500)

        with pytest.raises(TypeError) as raised:
            config_module.as_metrics_config(BadPath(), "svc")
        assert f"cannot be read as a path (RuntimeError: {'x' * 197}...); pass a str" in str(
            raised.value
        )

    def test_a_mapping_that_raises_is_reported_in_200_characters(self) -> None:
        class BadMapping(Mapping[str, object]):
            def __getitem__(self, key: str) -> object:
                raise RuntimeError("y" * 500)

            def __iter__(self) -> Iterator[str]:
                raise RuntimeError("y" * 500)

            def __len__(self) -> int:
                return 1

        with pytest.raises(MetricsConfigError) as raised:
            config_module.as_metrics_config(BadMapping(), "svc", strict=True)
        assert raised.value.errors == (
            f"<mapping>: top level: cannot be read (RuntimeError: {'y' * 197}...); "
            "pass a plain dict",
        )


class TestDidYouMean:
    """did_you_mean's bounds: the characters and candidates it compares (open survivors)."""

    #: 400 distinct characters: difflib's "popular element" heuristic drops none of them.
    CHARS = "".join(chr(0x4E00 + i) for i in range(400))

    def test_only_the_first_256_characters_of_a_name_are_compared(self) -> None:
        """difflib's ratio is 2 * matches / total length; cutoff 0.6."""
        c = self.CHARS
        # 110 matching of 256 compared: 220 / 366 >= 0.6; of 257: 220 / 367 < 0.6
        assert did_you_mean(c[:257], [c[:110]]) == f" (did you mean {c[:110]!r}?)"
        # the 256th character is the 110th match: 220 / 366; without it 218 / 365 < 0.6
        name, candidate = c[:255] + c[399], c[:109] + c[399]
        assert did_you_mean(name, [candidate]) == f" (did you mean {candidate!r}?)"

    def test_only_the_first_10000_candidates_are_compared(self) -> None:
        far = [f"zz{i:05d}" for i in range(9999)]
        assert did_you_mean("requests_totl", [*far, "requests_total"]) == (
            " (did you mean 'requests_total'?)"
        )
        assert did_you_mean("requests_totl", [*far, "x", "requests_total"]) == ""

    def test_a_name_that_is_not_a_str_gets_no_hint(self) -> None:
        """Not even a sequence of characters, which difflib would happily compare."""
        candidates = ["request_duration_seconds"]
        assert did_you_mean("request_duraton_seconds", candidates) != ""
        assert did_you_mean(tuple("request_duraton_seconds"), candidates) == ""
        assert did_you_mean(list("request_duraton_seconds"), candidates) == ""

    def test_candidates_that_raise_give_no_hint(self) -> None:
        def broken() -> Iterator[str]:
            yield "requests_total"
            raise RuntimeError("a broken iterable")

        assert did_you_mean("requests_totl", broken()) == ""
