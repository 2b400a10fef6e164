"""Print the replay's table from the results file the test session wrote (``$FIQA_HOSTILE_RESULTS``).

``python tests/hostile/report.py RESULTS.json``: one row per case ID (verdict, what was tried, what was observed
or why the check failed), then the counts. A passed check gives the case's expected verdict (GOOD or NOTE); a
failed check or a failed fixture is BAD, or CHANGED for a NOTE (the documented behaviour no longer holds, for better
or worse: read the message); a skipped check is SKIP. Exit status 1 when a case is BAD, CHANGED or missing.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hostile.cases import CASES


def verdict(expected: str, entry: dict | None) -> str:
    if entry is None:
        return "MISSING"
    if entry["outcome"] == "passed":
        return expected
    if entry["outcome"] == "skipped":
        return "SKIP"
    return "CHANGED" if expected == "NOTE" else "BAD"


def _cell(text: str, width: int) -> str:
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= width else text[:width - 1] + "…"


def main(path: str) -> int:
    results = json.loads(Path(path).read_text(encoding="utf-8")) if Path(path).is_file() else {}
    counts: Counter[str] = Counter()
    rows = []
    for case, (expected, title) in CASES.items():
        entry = results.get(case)
        got = verdict(expected, entry)
        counts[got] += 1
        if entry is None:
            detail = "no check ran"
        elif entry["outcome"] == "passed":
            detail = entry["observed"]
        else:
            detail = (f"{entry['when']}: " if entry["when"] != "call" else "") + (entry["message"] or "")
        rows.append(f"| {case} | {got} | {_cell(title, 60)} | {_cell(detail, 150)} |")
    print("| ID | Verdict | Case | Observed |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    order = ["GOOD", "NOTE", "BAD", "CHANGED", "SKIP", "MISSING"]
    print()
    print(f"{len(CASES)} cases: " + ", ".join(f"{counts[name]} {name.lower()}" for name in order if counts[name]
                                               or name in ("GOOD", "NOTE", "BAD")))
    return 1 if counts["BAD"] or counts["CHANGED"] or counts["MISSING"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
