"""The public surface: ``__all__`` is honest and the seed's import paths work."""

from __future__ import annotations

import importlib
import inspect

import pytest

import otel_aspects


class TestAll:
    def test_every_name_in_all_exists(self) -> None:
        """Each name ``__all__`` promises is an attribute of the package."""
        missing = [name for name in otel_aspects.__all__ if not hasattr(otel_aspects, name)]
        assert missing == []

    def test_every_public_attribute_is_in_all(self) -> None:
        """No public function or class is reachable at the top but left out of ``__all__``."""
        public = {
            name
            for name, value in vars(otel_aspects).items()
            if not name.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
        }
        assert public - set(otel_aspects.__all__) == set()

    def test_all_is_a_sorted_tuple(self) -> None:
        """A tuple, sorted, so additions show up as one-line diffs."""
        assert isinstance(otel_aspects.__all__, tuple)
        assert list(otel_aspects.__all__) == sorted(otel_aspects.__all__)


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("otel_aspects.metrics_client", ["create_metrics_client", "load_metrics_config"]),
        ("otel_aspects.metrics_client", ["OTelMetricsClient"]),
        ("otel_aspects.decorators", ["track_duration", "create_timed_context"]),
        ("otel_aspects", ["setup_metrics", "shutdown_metrics", "timed", "set_label"]),
        ("otel_aspects", ["Run"]),
        ("otel_aspects.asgi", ["MetricsMiddleware"]),
        ("otel_aspects.wsgi", ["MetricsMiddleware", "django_route_middleware"]),
        ("otel_aspects.setup", ["setup_metrics", "shutdown_metrics"]),
    ],
)
def test_seed_import_paths(module: str, names: list[str]) -> None:
    """The import lines users copy from the design document resolve to callables."""
    mod = importlib.import_module(module)
    for name in names:
        assert callable(getattr(mod, name)), f"{module}.{name}"


def test_top_level_and_module_objects_are_the_same() -> None:
    """A re-export is the same object, not a copy with its own state."""
    from otel_aspects import decorators, metrics_client, sdk

    assert otel_aspects.create_metrics_client is metrics_client.create_metrics_client
    assert otel_aspects.track_duration is decorators.track_duration
    assert otel_aspects.setup_metrics is sdk.setup_metrics
