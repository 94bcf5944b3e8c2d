"""``make mutation``: cosmic-ray over small modules of otel_aspects, each with a fast test subset.

Not part of ``make test`` or CI: it takes tens of minutes.  For each module it

1. copies the tree (``otel_aspects``, ``tests``, ``services``, ``config``, setup.cfg,
   pyproject.toml) into ``build/mutation/<module>/`` -- cosmic-ray mutates files *in
   place*, so it never touches the working tree -- and runs there with ``PYTHONPATH``
   pointing at the copy (it wins over the editable install);
2. ``cosmic-ray init`` with a config whose test command is pytest over that module's
   test subset (:data:`SUBSETS`, ``-x``: a mutant is killed at its first failing test);
3. marks as skipped the mutants that cannot change behaviour or are not plausible bugs
   (:func:`skip_noise`): mutations inside annotations (never evaluated:
   ``from __future__ import annotations``), and the operator replacements listed in
   :data:`EXCLUDED_OPERATORS`;
4. runs the baseline (the unmutated subset must pass), then ``cosmic-ray exec`` under a
   time cap, and writes ``survivors.txt`` (each surviving mutant's diff) and a summary
   line per module.

Usage: ``python tests/mutation/run.py [--modules config,labels] [--jobs 2] [--cap-minutes 40]``;
``--survivors-of build/mutation`` re-runs only the survivors of that earlier run (after
adding tests), into another ``--out``; ``--modules _warn --lines 135,151`` runs only the
mutants starting on those lines (survivors listed in docs/MUTATION.md, re-checked without
the earlier session).
docs/MUTATION.md lists the survivors of the last run and the verdict on each.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: module (under otel_aspects/) -> the tests that exercise it, fastest killers first.
SUBSETS: dict[str, tuple[str, ...]] = {
    "config": (
        "tests/test_config_edges.py",
        "tests/test_config.py",
        "tests/test_default_buckets.py",
        "tests/test_cli.py",
        "tests/test_client.py",
    ),
    "labels": (
        "tests/test_labels_edges.py",
        "tests/test_timing.py",
        "tests/test_labels_concurrency.py",
        "tests/test_decorators.py",
    ),
    "_attributes": (
        "tests/test_attributes.py",
        "tests/test_client.py",
        "tests/test_client_properties.py",
    ),
    "_warn": (
        "tests/test_warn_edges.py",
        "tests/test_warn.py",
        "tests/test_client.py",
        "tests/test_config.py",
    ),
    "series": (
        "tests/test_series_edges.py",
        "tests/test_engine.py",
        "tests/test_engine_differential.py",
        "tests/test_bridge.py",
    ),
    "_values": (
        "tests/test_values_edges.py",
        "tests/test_client.py",
        "tests/test_engine_differential.py",
        "tests/test_warn.py",
    ),
}

#: Operator replacements that are not plausible bugs here (or always equivalent):
#: arithmetic replaced by power, shifts, bitwise and/xor, modulo, floor division; identity
#: comparisons swapped with ordering ones (a TypeError at once, or equivalent on the
#: interned small strings and ints these modules compare).
EXCLUDED_OPERATORS = (
    r"core/ReplaceBinaryOperator_\w+_(Pow|LShift|RShift|BitAnd|BitXor|Mod|FloorDiv)$",
    r"core/ReplaceComparisonOperator_(Is|IsNot)_(Lt|LtE|Gt|GtE)$",
    r"core/ReplaceComparisonOperator_(Lt|LtE|Gt|GtE|Eq|NotEq)_(Is|IsNot)$",
)

COPIED = ("otel_aspects", "tests", "services", "config", "setup.cfg", "pyproject.toml")


def _cosmic(*args: str, cwd: Path, env: dict[str, str], timeout: float | None = None) -> None:
    exe = Path(sys.executable).with_name("cosmic-ray")
    subprocess.run(
        [str(exe), *args], cwd=cwd, env=env, check=True, timeout=timeout, capture_output=True
    )


def _annotation_lines(path: Path) -> set[tuple[int, int, int, int]]:
    """(start line, start col, end line, end col) of every annotation in *path*."""
    spans: set[tuple[int, int, int, int]] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        annotations: list[ast.expr | None] = []
        if isinstance(node, ast.AnnAssign | ast.arg):
            annotations.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            annotations.append(node.returns)
        for a in annotations:
            if a is not None and a.end_lineno is not None and a.end_col_offset is not None:
                spans.add((a.lineno, a.col_offset, a.end_lineno, a.end_col_offset))
    return spans


def _inside(pos: tuple[int, int], end: tuple[int, int], spans: set[tuple[int, ...]]) -> bool:
    return any((s[0], s[1]) <= tuple(pos) and tuple(end) <= (s[2], s[3]) for s in spans)


def skip_noise(session: Path, module: Path) -> int:
    """Mark annotation mutants and excluded operators as skipped; how many."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = _annotation_lines(module)
    excluded = re.compile("|".join(f"(?:{e})" for e in EXCLUDED_OPERATORS))
    skipped = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            for m in item.mutations:
                why = None
                if excluded.match(m.operator_name):
                    why = "excluded operator"
                elif _inside(m.start_pos, m.end_pos, spans):
                    line_ann = (m.start_pos[0], m.start_pos[1], m.end_pos[0], m.end_pos[1])
                    why = f"annotation {line_ann}"
                if why:
                    db.set_result(
                        item.job_id, WorkResult(output=why, worker_outcome=WorkerOutcome.SKIPPED)
                    )
                    skipped += 1
                    break
    return skipped


def keep_only_survivors(session: Path, previous: Path) -> int:
    """Skip every mutant that did not survive in *previous* (same module source): a
    quick re-check of the survivors after new tests.  How many were skipped."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(previous), WorkDB.Mode.open) as db:
        alive = {
            (item.mutations[0].operator_name, item.mutations[0].occurrence)
            for item, result in db.completed_work_items
            if getattr(result.test_outcome, "name", "") == "SURVIVED"
        }
    skipped = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            m = item.mutations[0]
            if (m.operator_name, m.occurrence) not in alive:
                result = WorkResult(output="not a survivor", worker_outcome=WorkerOutcome.SKIPPED)
                db.set_result(item.job_id, result)
                skipped += 1
    return skipped


def keep_only_lines(session: Path, lines: set[int]) -> int:
    """Skip every mutant that does not start on one of *lines*: a re-check of given
    survivors when no earlier session of the same source is at hand.  How many."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    skipped = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            if item.mutations[0].start_pos[0] not in lines:
                result = WorkResult(
                    output="not a line asked for", worker_outcome=WorkerOutcome.SKIPPED
                )
                db.set_result(item.job_id, result)
                skipped += 1
    return skipped


def run_module(
    name: str,
    out: Path,
    cap_seconds: float,
    previous: Path | None = None,
    lines: set[int] | None = None,
) -> dict[str, object]:
    work = out / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc")
    for item in COPIED:
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, work / item, ignore=ignore)
        else:
            shutil.copy2(src, work / item)
    tests = " ".join(t for t in SUBSETS[name] if (work / t).exists())
    test_command = (
        f"{sys.executable} -m pytest -q -x -p no:cacheprovider -m 'not e2e' "
        f"--no-header -o addopts='--strict-markers -p no:cacheprovider' {tests}"
    )
    (work / "cr.toml").write_text(
        "[cosmic-ray]\n"
        f'module-path = "otel_aspects/{name}.py"\n'
        "timeout = 60.0\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(test_command)}\n"
        "\n[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
    check = subprocess.run(
        [sys.executable, "-c", "import otel_aspects; print(otel_aspects.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    if not check.stdout.strip().startswith(str(work)):
        raise RuntimeError(f"otel_aspects imported from {check.stdout.strip()}, not {work}")
    session = work / "session.sqlite"
    _cosmic("init", "cr.toml", str(session), cwd=work, env=env)
    skipped = skip_noise(session, work / "otel_aspects" / f"{name}.py")
    if previous is not None:
        skipped += keep_only_survivors(session, previous / name / "session.sqlite")
    if lines:
        skipped += keep_only_lines(session, lines)
    _cosmic("baseline", "cr.toml", cwd=work, env=env)
    started = time.monotonic()
    capped = False
    try:
        _cosmic("exec", "cr.toml", str(session), cwd=work, env=env, timeout=cap_seconds)
    except subprocess.TimeoutExpired:
        capped = True
    finally:
        # cosmic-ray restores the file after each mutant; a cap mid-mutant may not.
        shutil.copy2(ROOT / "otel_aspects" / f"{name}.py", work / "otel_aspects" / f"{name}.py")
    report = subprocess.run(
        [
            str(Path(sys.executable).with_name("cr-report")),
            "--show-diff",
            "--surviving-only",
            str(session),
        ],
        capture_output=True,
        text=True,
    ).stdout
    (work / "survivors.txt").write_text(report)
    summary = {
        "module": name,
        "skipped": skipped,
        "seconds": round(time.monotonic() - started),
        "capped": capped,
        "report_tail": report.strip().splitlines()[-4:],
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", default=",".join(SUBSETS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cap-minutes", type=float, default=40.0, help="per module")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "mutation")
    parser.add_argument(
        "--survivors-of",
        type=Path,
        default=None,
        help="an earlier --out folder: run only the mutants that survived there",
    )
    parser.add_argument(
        "--lines",
        default="",
        help="comma-separated line numbers: run only the mutants starting on them (one module)",
    )
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    if args.survivors_of is not None:
        args.survivors_of = args.survivors_of.resolve()
    modules = [m for m in args.modules.split(",") if m]
    unknown = [m for m in modules if m not in SUBSETS]
    if unknown:
        parser.error(f"no test subset for {unknown}; known: {sorted(SUBSETS)}")
    lines = {int(n) for n in args.lines.split(",") if n.strip()}
    if lines and len(modules) != 1:
        parser.error("--lines needs exactly one module (--modules NAME)")
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            m: pool.submit(run_module, m, args.out, args.cap_minutes * 60, args.survivors_of, lines)
            for m in modules
        }
        for m, f in futures.items():
            summary = f.result()
            print(json.dumps(summary), flush=True)
            print(f"survivors: {args.out / m / 'survivors.txt'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
