"""Tests for the `otel-aspects check` command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from otel_aspects.cli import main
from otel_aspects.config import validate_config_file


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
