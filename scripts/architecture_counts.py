"""Counts that describe the package's shape (issue 22's before/after table): source files and lines of src/fiqa,
function-local imports, hand-rolled parameter checks (``isinstance(x, bool) or not isinstance(...)`` ladders
instead of fiqa.core.params), public names of ``fiqa``, commands and their options (parsed from ``--help``).

Run from the repository root: ``.venv/bin/python scripts/architecture_counts.py`` (for another checkout, copy the
script into it and put its ``src`` first on ``PYTHONPATH``).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "fiqa"


def main() -> None:
    files = sorted(SRC.rglob("*.py"))
    lines = local_imports = checks = 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        lines += len(text.splitlines())
        checks += len(re.findall(r"isinstance\(\w+, bool\) or not isinstance", text))
        inside_functions = {id(sub) for node in ast.walk(ast.parse(text))
                            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                            for sub in ast.walk(node) if isinstance(sub, (ast.Import, ast.ImportFrom))}
        local_imports += len(inside_functions)  # each once, however deeply its function is nested
    from click.testing import CliRunner

    import fiqa
    from fiqa.cli import main as fiqa_main

    listing = CliRunner().invoke(fiqa_main, ["--help"], prog_name="fiqa").output
    section = listing.split("Commands:")[1].split("\n\n")[0]  # up to the first blank line
    commands = [line.split()[0] for line in section.splitlines() if line.strip()]
    options = 0
    for command in commands:
        page = CliRunner().invoke(fiqa_main, [command, "--help"], prog_name="fiqa").output
        options += len(re.findall(r"^\s+(--[\w-]+|-\w)", page, re.M))
    print(f"src files {len(files)}, lines {lines}, function-local imports {local_imports}, hand-rolled checks "
          f"{checks}, fiqa.__all__ {len(fiqa.__all__)}, commands {len(commands)}, CLI options {options}")


if __name__ == "__main__":
    main()
