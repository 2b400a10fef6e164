"""The package reads as the pipeline: every import (at module level or inside a function) points to the same stage
or an earlier one, and no set of modules imports each other in a loop. Parsed from the source, so it stays true."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

STAGES = (
    # the root package only hands on names (imported lazily by string) and holds __version__: core level
    ("core", ("fiqa.core", "fiqa")),
    ("datasets", ("fiqa.datasets",)),
    ("io", ("fiqa.io",)),
    ("store", ("fiqa.store",)),
    ("detect", ("fiqa.detect",)),
    ("embed", ("fiqa.embed",)),
    ("components", ("fiqa.components",)),
    ("augment", ("fiqa.augment",)),
    ("label", ("fiqa.label",)),
    ("train", ("fiqa.train",)),
    ("score", ("fiqa.score",)),
    ("evaluate", ("fiqa.evaluate",)),
    ("curate", ("fiqa.curate",)),
    ("top", ("fiqa.serve", "fiqa.demo", "fiqa.commands", "fiqa.cli", "fiqa.__main__")),
)

FORBIDDEN = ("fiqa.studies", "fiqa.release")
"""The package holds what users run: research code lives in the top-level ``studies/`` folder and maintainer code
(rebuilding the shipped model) in ``scripts/``, never inside ``src/fiqa``."""


def stage_of(module: str) -> int:
    best = None
    for rank, (_, prefixes) in enumerate(STAGES):
        for prefix in prefixes:
            inside = module == prefix or module.startswith(prefix + ".")
            if inside and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    assert best is not None, f"{module} belongs to no stage; add it to STAGES"
    return best[0]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def fiqa_imports(path: Path) -> set[str]:
    """Every fiqa module ``path`` imports, anywhere in the file (``from X import name`` counts X, and X.name when
    that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; fiqa uses absolute imports"
            if node.module and node.module.split(".")[0] == "fiqa":
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names
                             if f"{node.module}.{alias.name}" in MODULES)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "fiqa")
    return {name for name in found if name in MODULES}


MODULES = {module_name(path): path for path in SRC.rglob("*.py")}
GRAPH = {name: fiqa_imports(path) - {name} for name, path in MODULES.items()}


def test_no_research_or_release_module_inside_the_package():
    inside = sorted(name for name in MODULES for prefix in FORBIDDEN
                    if name == prefix or name.startswith(prefix + "."))
    assert inside == []
    assert not [prefix for prefix in FORBIDDEN for _, prefixes in STAGES if prefix in prefixes]


def test_every_import_points_to_the_same_or_an_earlier_stage():
    backwards = [f"{name} ({STAGES[stage_of(name)][0]}) -> {target} ({STAGES[stage_of(target)][0]})"
                 for name, targets in GRAPH.items() for target in targets if stage_of(target) > stage_of(name)]
    assert backwards == []


def test_no_import_cycle():
    # a package imports its own modules to hand their names on; a module importing its package's face is the
    # only loop allowed (it reads the package's other modules, not itself)
    graph = {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in GRAPH.items()}
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_stage_rule_catches_a_backward_import():
    assert stage_of("fiqa.label.reference") > stage_of("fiqa.store") > stage_of("fiqa.core.errors")
    assert stage_of("fiqa.evaluate.curves") > stage_of("fiqa.label.base")
    with pytest.raises(AssertionError):
        stage_of("fiqa_other.module")


@pytest.mark.parametrize("code", [
    "import fiqa.cli",
    "import fiqa; fiqa.create_scorer",
    "from fiqa.score import create_scorer",
    "from fiqa.embed.extract import embed_source",
    "from fiqa.evaluate import evaluate_quality",
])
def test_cli_scoring_and_evaluation_import_no_torch(code):
    probe = f"import sys; {code}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_every_study_script_and_benchmark_still_imports():
    """The research and maintainer code outside the package imports what it names from fiqa: a name moved or removed
    in the package breaks it here, not the next time someone reruns a study (the components EDC study imported
    ``label_rows`` from ``fiqa.demo`` for a day after it moved to ``fiqa.label``). Modules are imported, not run."""
    root = SRC.parent
    code = (
        "import importlib, pathlib, sys\n"
        f"root = pathlib.Path({str(root)!r})\n"
        "sys.path[:0] = [str(root), str(root / 'benchmarks')]\n"
        "files = sorted([*root.glob('studies/**/*.py'), *root.glob('scripts/*.py'), *root.glob('benchmarks/*.py')])\n"
        "for path in files:\n"
        "    parts = path.relative_to(root).with_suffix('').parts\n"
        "    importlib.import_module(parts[-1] if parts[0] == 'benchmarks' else '.'.join(parts))\n"
        "print(len(files))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) >= 30  # the folders were found: 37 files when this test was written
