"""The docstring examples of ``src/fiqa`` run: every module that holds a ``>>>`` example is imported and its
examples executed with :mod:`doctest`, so an example that would raise (a renamed parameter, a moved name) fails
here instead of rotting. Examples that need files or models the tests do not have carry ``# doctest: +SKIP``.
"""
from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted((SRC / "fiqa").rglob("*.py")):
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(SRC).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = _modules_with_examples()


def test_the_examples_are_found() -> None:
    # the scan above is what decides which modules run; a broken scan must not pass by finding nothing
    assert len(MODULES) >= 20, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    tests = [test for test in finder.find(module, name) if test.examples]
    assert tests, f"{name} holds '>>>' but doctest finds no example in it"
    for test in tests:
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples of {name} failed (output above)"
