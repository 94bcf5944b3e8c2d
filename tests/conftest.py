"""Shared fixtures: keep this file minimal (the otel_aspects.testing plugin has the rest)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_aspects._warn import reset_warned
from otel_aspects.config import clear_loaded_configs


@pytest.fixture(autouse=True)
def _fresh_otel_aspects_state() -> Iterator[None]:
    """Each test starts with no remembered warnings and no remembered configs."""
    reset_warned()
    clear_loaded_configs()
    yield
    reset_warned()
    clear_loaded_configs()
