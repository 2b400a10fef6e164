"""The replay covers hostile-cases.md exactly: 120 case IDs, one check each."""
from __future__ import annotations

import importlib
import re
from collections import Counter
from pathlib import Path

from hostile.cases import CASES, GOOD, NOTE


def test_every_case_has_exactly_one_check():
    checks = Counter()
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        module = importlib.import_module(f"hostile.{path.stem}")
        for name in dir(module):
            match = re.fullmatch(r"test_([A-Z]\d\d)_\w+", name)
            if match and callable(getattr(module, name)):
                checks[match.group(1)] += 1
    assert len(CASES) == 120
    assert set(checks) == set(CASES), sorted(set(CASES) ^ set(checks))
    assert all(count == 1 for count in checks.values()), {k: v for k, v in checks.items() if v != 1}
    assert Counter(verdict for verdict, _ in CASES.values()) == {GOOD: 113, NOTE: 7}  # M11 refused since the digests
