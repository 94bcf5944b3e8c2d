"""Tests for the `otel-aspects check` command line."""

from __future__ import annotations

import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest

from otel_aspects.cli import main
from otel_aspects.config import MAX_CONFIG_BYTES, MAX_REPORTED_ERRORS, validate_config_file


def test_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid file prints an ok line and exits 0."""
    path = tmp_path / "svc.yml"
    path.write_text("counters:\n  - name: a\nhistograms:\n  - name: b_seconds\n")
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out == f"ok: {path} (2 metrics)\n"


def test_invalid_file_prints_loader_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid file exits 1 and prints exactly the loader's messages."""
    good = tmp_path / "good.yml"
    good.write_text("counters:\n  - name: a\n")
    bad = tmp_path / "bad.yml"
    bad.write_text("counters:\n  - name: a\n    capture: 'false'\n  - name: b\n    captur: 1\n")
    assert main(["check", str(good), str(bad)]) == 1
    out = capsys.readouterr()
    assert out.out == f"ok: {good} (1 metrics)\n"
    assert out.err.splitlines() == validate_config_file(bad)
    assert len(out.err.splitlines()) == 2


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file is a problem (exit 1), not a crash."""
    assert main(["check", str(tmp_path / "nope.yml")]) == 1
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["check"], ["lint", "x.yml"]])
def test_usage_errors_exit_2(argv: list[str]) -> None:
    """Missing or unknown commands and arguments exit 2."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_python_dash_m(tmp_path: Path) -> None:
    """`python -m otel_aspects check FILE` runs the same command."""
    path = tmp_path / "svc.yml"
    path.write_text("counters:\n")
    result = subprocess.run(
        [sys.executable, "-m", "otel_aspects", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "empty section" in result.stderr


def _alias_bomb(levels: int) -> str:
    """A "billion laughs" file (~350 bytes for 8 levels): each level aliases the one before."""
    names = "abcdefghijk"[:levels]
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for before, name in pairwise(names):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{before}"] * 9) + "]")
    lines.append("counters: [" + ",".join([f"*{names[-1]}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [5, 8])
def test_alias_bomb_gives_bounded_stderr(tmp_path: Path, levels: int) -> None:
    """Issue 9 item 6: `otel-aspects check` on a 400-byte alias bomb wrote 312 MB to stderr;
    now one short line per problem, quickly."""
    path = tmp_path / "bomb.yml"
    path.write_text(_alias_bomb(levels))
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "otel_aspects", "check", str(path)],
        capture_output=True,
        timeout=60,
    )
    assert time.perf_counter() - start < 20
    assert result.returncode == 1 and result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == levels + 9
    assert len(result.stderr) < 10 * 1024
    assert all("got [[" in line for line in lines[levels:])


def test_oversized_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file over MAX_CONFIG_BYTES is one message (size, limit, fix) and exit 1, unparsed."""
    path = tmp_path / "big.yml"
    path.write_text("#" * MAX_CONFIG_BYTES + "\n")
    start = time.perf_counter()
    assert main(["check", str(path)]) == 1
    assert time.perf_counter() - start < 0.5
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (
        f"{path}: file: {MAX_CONFIG_BYTES + 1} bytes is over the limit of {MAX_CONFIG_BYTES} "
        "bytes for a metrics config (MAX_CONFIG_BYTES) and not read; a real one is a few kB: "
        "check that this is the right file, or split it into one file per service\n"
    )


def test_many_problems_are_capped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """At most MAX_REPORTED_ERRORS lines per file, then one line counting the rest."""
    path = tmp_path / "many.yml"
    path.write_text("counters:\n" + "  - x\n" * (MAX_REPORTED_ERRORS * 5))
    assert main(["check", str(path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == MAX_REPORTED_ERRORS + 1
    assert f"{MAX_REPORTED_ERRORS * 4} more problem(s) not listed" in lines[-1]
