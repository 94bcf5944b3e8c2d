"""Wrong stacking: an aspect above a route decorator is reported once, with the fix."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from flask import Flask

from otel_aspects import counted, timed

STACKING = "placed above the route decorator"


def _stacking(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if STACKING in r.getMessage()]


class TestStacking:
    def test_timed_above_a_fastapi_route_warns_once_with_the_fix(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """``@timed`` over ``@app.get``: one WARNING naming the route and the right order."""
        seen: list[Any] = []
        app = FastAPI()
        caplog.set_level(logging.WARNING, logger="otel_aspects")

        @timed(record_func=lambda d, labels: seen.append(labels))
        @app.get("/wrong/{x}")
        def wrong(x: str) -> str:
            return x

        [message] = _stacking(caplog)
        assert "'/wrong/{x}'" in message and "@timed(...)" in message
        assert TestClient(app).get("/wrong/1").status_code == 200
        assert seen == []  # what the warning is about: nothing was recorded

    def test_the_right_order_records_and_does_not_warn(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """``@app.get`` over ``@timed``: recorded, no warning."""
        seen: list[Any] = []
        app = FastAPI()
        caplog.set_level(logging.WARNING, logger="otel_aspects")

        @app.get("/right")
        @timed(record_func=lambda d, labels: seen.append(labels))
        def right() -> int:
            return 1

        assert TestClient(app).get("/right").status_code == 200
        assert _stacking(caplog) == [] and len(seen) == 1

    def test_flask_and_other_aspects_and_factories(
        self, caplog: pytest.LogCaptureFixture, metrics_client_factory: Any
    ) -> None:
        """Flask's ``@app.get``, ``counted``, and an app built inside a function are caught."""
        caplog.set_level(logging.WARNING, logger="otel_aspects")
        client = metrics_client_factory("svc")
        client.create_counter("calls_total")

        def build() -> None:
            flask_app = Flask("x")

            @counted("calls_total", client=client)
            @flask_app.get("/f/<int:i>")
            def f(i: int) -> str:
                return "x"

        build()
        [message] = _stacking(caplog)
        assert "'/f/<int:i>'" in message
