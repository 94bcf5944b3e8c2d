"""The README's testing example, executed: its FastAPI app and its test, as written.

The blocks marked ``<!-- readme-test: PATH -->`` (the quick start's YAML, the app, the
test) are written to a fresh project and its test is run by pytest, with the plugin as
installed -- and with ``OTEL_*`` variables set that would export and bind a port without
the fixture.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"<!-- readme-test: (?P<path>\S+) -->\n```\w*\n(?P<body>.*?)```", re.S)


def readme_blocks() -> dict[str, str]:
    return {m["path"]: m["body"] for m in BLOCK.finditer(README.read_text())}


def test_the_readme_blocks_are_there() -> None:
    """The three marked blocks exist (a renamed marker must not skip the example)."""
    assert set(readme_blocks()) == {
        "config/metrics/my_service.yml",
        "my_service/app.py",
        "tests/test_app.py",
    }


def test_readme_testing_example_passes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's test passes against the README's app, whatever OTEL_* says."""
    for path, body in readme_blocks().items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    (pytester.path / "my_service" / "__init__.py").write_text("")
    monkeypatch.setenv("OTEL_PROMETHEUS_ENABLED", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # discard port
    monkeypatch.syspath_prepend(str(pytester.path))
    result = pytester.runpytest_inprocess("-p", "no:randomly", "tests/test_app.py")
    result.assert_outcomes(passed=1)
