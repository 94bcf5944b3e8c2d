"""Markdown rows for docs/MUTATION.md: the survivors of a first run, and what became of
each in a later run (same module source, more tests): killed by which test, or still alive.

Usage: ``python tests/mutation/report.py FIRST.sqlite LATER.sqlite...`` (later runs in
order; a survivors-only run counts for the mutants it ran).
A mutant is matched across runs by operator and occurrence (cosmic-ray numbers them in
source order, so an unchanged module gives the same numbering).
"""

from __future__ import annotations

import re
import sys

from cosmic_ray.work_db import WorkDB, use_db


def _changed_lines(diff: str) -> tuple[str, str]:
    old = [
        line[1:].strip()
        for line in diff.splitlines()
        if line.startswith("-") and not line.startswith("---")
    ]
    new = [
        line[1:].strip()
        for line in diff.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]
    old = [x.replace("|", "\\|") for x in old if x]
    new = [x.replace("|", "\\|") for x in new if x]
    return " / ".join(old) or "(nothing)", " / ".join(new) or "(removed)"


def _results(path: str) -> dict[tuple[str, int], tuple[object, object]]:
    out: dict[tuple[str, int], tuple[object, object]] = {}
    with use_db(path, WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            m = item.mutations[0]
            out[(m.operator_name, m.occurrence)] = (item, result)
    return out


def main(first: str, *later: str) -> int:
    before = _results(first)
    runs = [_results(path) for path in later]
    items = sorted(before.items(), key=lambda kv: kv[1][0].mutations[0].start_pos)  # type: ignore[attr-defined]
    for (op, occ), (item, result) in items:
        if getattr(result.test_outcome, "name", "") != "SURVIVED":  # type: ignore[attr-defined]
            continue
        line = item.mutations[0].start_pos[0]  # type: ignore[attr-defined]
        old, new = _changed_lines(result.diff or "")  # type: ignore[attr-defined]
        verdict = "not rerun"
        for run in runs:  # the first later run that killed it, else the last that ran it
            if (op, occ) not in run:
                continue
            _, res = run[(op, occ)]
            outcome = getattr(res.test_outcome, "name", "")  # type: ignore[attr-defined]
            if outcome == "KILLED":
                failed = re.findall(r"^FAILED (\S+)", res.output or "", re.M)  # type: ignore[attr-defined]
                verdict = f"killed by `{failed[0]}`" if failed else "killed (error)"
                break
            if outcome == "SURVIVED":
                verdict = "SURVIVED"
        short = op.removeprefix("core/")
        print(f"| {line} | {short} #{occ} | `{old}` -> `{new}` | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
