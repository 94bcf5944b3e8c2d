"""The ``>>>`` examples of otel_aspects run as doctests (setup.cfg: ``--doctest-modules``
over ``otel_aspects``); the few that cannot run here are skipped for a stated reason."""

from __future__ import annotations

import configparser
import doctest
import importlib
import pkgutil
from pathlib import Path

import otel_aspects

ROOT = Path(__file__).resolve().parent.parent

_CONFIG_FILE = "reads a metrics YAML file of a service that exists only in the reader's project"

#: (module, first line of the example) -> why it is ``+SKIP``: a config file or a network.
SKIPPED: dict[tuple[str, str], str] = {
    ("otel_aspects.cli", 'main(["check", "config/metrics/my_service.yml"])'): _CONFIG_FILE,
    ("otel_aspects.client", 'metrics = create_metrics_client("my_service")'): _CONFIG_FILE,
    (
        "otel_aspects.client",
        'metrics.record_counter("requests_total", 1, {"status": "success"})',
    ): "records into the client of the file-based example above",
    (
        "otel_aspects.client",
        'metrics.record_histogram("request_duration_seconds", 0.042)',
    ): "records into the client of the file-based example above",
    (
        "otel_aspects.client",
        'metrics.record_counter("requests_total", 1, {"endpoint": "/api"})',
    ): "records into the client of the file-based example above",
    ("otel_aspects.config", 'config = load_metrics_config("my_service")'): _CONFIG_FILE,
    (
        "otel_aspects.config",
        'config.metrics["requests_total"].capture',
    ): "reads the config of the file-based example above",
    (
        "otel_aspects.config",
        'validate_config_file("config/metrics/my_service.yml")',
    ): _CONFIG_FILE,
    ("otel_aspects.config", 'cfg = load_metrics_config("my_service")'): _CONFIG_FILE,
    (
        "otel_aspects.config",
        'cfg = load_metrics_config("svc", "deploy/metrics.yml", strict=True)',
    ): _CONFIG_FILE,
}


def _examples() -> list[tuple[str, doctest.Example]]:
    finder = doctest.DocTestFinder()
    found: list[tuple[str, doctest.Example]] = []
    for info in pkgutil.iter_modules(otel_aspects.__path__, "otel_aspects."):
        if info.name.endswith("__main__"):
            continue  # runs the CLI on import; pytest's doctest plugin skips it too
        module = importlib.import_module(info.name)
        for test in finder.find(module, module.__name__):
            found.extend((info.name, example) for example in test.examples)
    return found


def test_doctests_are_collected() -> None:
    """setup.cfg makes pytest collect otel_aspects' docstrings as tests."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    section = cfg["tool:pytest"]
    assert "otel_aspects" in section["testpaths"].split()
    assert "--doctest-modules" in section["addopts"].split()


def test_only_examples_needing_a_file_or_network_are_skipped() -> None:
    """Every ``+SKIP`` example is listed with its reason, and every listed one still exists."""
    examples = _examples()
    assert len(examples) >= 30
    skipped = {
        (module, ex.source.splitlines()[0].split("# doctest:")[0].strip())
        for module, ex in examples
        if ex.options.get(doctest.OPTIONFLAGS_BY_NAME["SKIP"])
    }
    assert skipped == set(SKIPPED)
    running = [ex for _, ex in examples if not ex.options.get(doctest.OPTIONFLAGS_BY_NAME["SKIP"])]
    assert len(running) >= 25
