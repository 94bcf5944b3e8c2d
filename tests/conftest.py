"""Shared fixtures: keep this file minimal (the otel_aspects.testing plugin has the rest)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider

from otel_aspects._warn import reset_warned
from otel_aspects.config import clear_loaded_configs

# Not test modules, and not import-safe or not meant for --doctest-modules (setup.cfg):
# child-process scripts, mypy-only files, the mutation runner.
collect_ignore = ["_children", "typing", "mutation"]


@pytest.fixture(autouse=True)
def _fresh_otel_aspects_state() -> Iterator[None]:
    """Each test starts with no remembered warnings and no remembered configs, and leaves
    OTEL_ASPECTS_MULTIPROCESS_DIR as it found it (setup_metrics sets it for the processes
    it starts)."""
    reset_warned()
    clear_loaded_configs()
    folder = os.environ.get("OTEL_ASPECTS_MULTIPROCESS_DIR")
    yield
    reset_warned()
    clear_loaded_configs()
    if folder is None:
        os.environ.pop("OTEL_ASPECTS_MULTIPROCESS_DIR", None)
    else:
        os.environ["OTEL_ASPECTS_MULTIPROCESS_DIR"] = folder


@pytest.fixture
def clean_sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* variable of the outer environment leaks in; the SDK ends shut down."""
    from otel_aspects import shutdown_metrics

    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    yield
    shutdown_metrics()
    # What the library set for processes it starts (OTEL_ASPECTS_MULTIPROCESS_DIR).
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def providers() -> Iterator[list[MeterProvider]]:
    """Providers a test made; all shut down at the end."""
    made: list[MeterProvider] = []
    yield made
    for provider in made:
        provider.shutdown()


# --- services fixtures (tests/test_services_*.py, test_label_hygiene.py, test_demo.py) ---


@pytest.fixture
def registry_metrics(meter_provider):  # type: ignore[no-untyped-def]
    """The registry's metrics on this test's isolated provider (``metrics_reader``)."""
    from services.registry.utils.otel_metrics import build_metrics

    return build_metrics(meter_provider)


@pytest.fixture
def auth_metrics(meter_provider):  # type: ignore[no-untyped-def]
    """The auth server's metrics on this test's isolated provider (``metrics_reader``)."""
    from services.auth_server.utils.otel_metrics import build_metrics

    return build_metrics(meter_provider)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on both anyio backends."""
    return str(request.param)
