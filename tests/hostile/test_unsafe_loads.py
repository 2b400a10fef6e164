"""Hostile cases P01-P06: unsafe deserialisation and similar calls (hostile-cases.md, section 8). P01 is tried
for real (a checkpoint that runs code when unpickled); the others read the source: every call is found by parsing
``src/`` and ``scripts/``, so a new one is checked too."""
from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hostile.harness import TRAIN, assert_clean_error, cli, error_line

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "scripts").rglob("*.py")])


class _Evil:
    """Unpickling this creates ``marker`` (what ``os.system`` would do, without a shell)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _calls(path: Path) -> Iterator[tuple[ast.Call, str]]:
    """Every call in a file with its dotted name (``torch.load``, ``np.load``, ``eval``, ...)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Call):
            yield node, _dotted(node.func)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _where(path: Path, call: ast.Call) -> str:
    return f"{path.relative_to(ROOT)}:{call.lineno}"


def _torch_loads() -> dict[str, list[str]]:
    """file -> ``weights_only`` of each ``torch.load`` call there (``"True"``, ``"False"`` or ``"missing"``)."""
    found: dict[str, list[str]] = {}
    for path in SOURCES:
        for call, name in _calls(path):
            if name == "torch.load":
                value = _keyword(call, "weights_only")
                found.setdefault(str(path.relative_to(ROOT)), []).append(
                    "missing" if value is None else repr(value.value) if isinstance(value, ast.Constant) else "?")
    return found


@pytest.mark.lfw
def test_P01_code_in_a_checkpoint_is_not_run(good_store, good_labels, work, record_property):
    import torch

    out = work / "models" / "evil"
    out.mkdir(parents=True)
    marker = work / "PWNED_marker"
    torch.save({"config": _Evil(marker)}, out / "checkpoint.pt")
    run = cli("train", good_store, good_labels["sdd"], "--out", out, *TRAIN)
    record_property("observed", f"marker created: {marker.exists()}; {error_line(run)}")
    assert not marker.exists(), "unpickling the checkpoint ran code"
    assert_clean_error(run, "checkpoint.pt")


def test_P02_cr_centres_are_loaded_with_weights_only(record_property):
    found = _torch_loads()
    record_property("observed", f"src/fiqa/label/cr.py torch.load weights_only={found.get('src/fiqa/label/cr.py')}")
    assert found.get("src/fiqa/label/cr.py") and set(found["src/fiqa/label/cr.py"]) == {"True"}


def test_P03_backbone_checkpoints_are_loaded_with_weights_only(record_property):
    found = _torch_loads()
    record_property("observed", f"every torch.load in src and scripts: {found}")
    assert found.get("src/fiqa/train/models.py") and set(found["src/fiqa/train/models.py"]) == {"True"}
    assert all(set(values) == {"True"} for values in found.values()), found


def test_P04_np_load_never_allows_pickles(record_property):
    allowing = []
    n_calls = 0
    for path in SOURCES:
        for call, name in _calls(path):
            if name in ("np.load", "numpy.load"):
                n_calls += 1
                value = _keyword(call, "allow_pickle")
                if value is not None and not (isinstance(value, ast.Constant) and value.value is False):
                    allowing.append(_where(path, call))
    default = inspect.signature(np.load).parameters["allow_pickle"].default
    record_property("observed", f"{n_calls} np.load calls, none with allow_pickle other than False; numpy's "
                                f"default allow_pickle={default}")
    assert n_calls and allowing == [] and default is False


_FORBIDDEN = {"eval", "exec", "__import__", "pickle.load", "pickle.loads", "marshal.load", "marshal.loads",
              "yaml.load", "yaml.unsafe_load", "os.system", "os.popen", "dill.load", "dill.loads", "joblib.load",
              "shelve.open"}


def _constructed_with_constants(class_name: str) -> bool:
    """Every ``ClassName(...)`` call in the sources passes a string constant as its first argument."""
    calls = [call for path in SOURCES for call, name in _calls(path) if name.split(".")[-1] == class_name]
    return bool(calls) and all(call.args and isinstance(call.args[0], ast.Constant)
                               and isinstance(call.args[0].value, str) for call in calls)


def _constant_dict(node: ast.AST | None, tree: ast.Module) -> bool:
    """``node`` is a dict literal of string constants, or a name bound at module level to one."""
    if isinstance(node, ast.Name):
        for statement in tree.body:
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target] \
                if isinstance(statement, ast.AnnAssign) else []
            if any(isinstance(t, ast.Name) and t.id == node.id for t in targets):
                return _constant_dict(statement.value, tree)
        return False
    return isinstance(node, ast.Dict) and all(isinstance(v, ast.Constant) and isinstance(v.value, str)
                                              for v in node.values)


LAZY = ROOT / "src" / "fiqa" / "core" / "lazy.py"


def _lazy_exports_of_constants() -> bool:
    """Every ``lazy_exports(__name__, exports)`` call in the sources passes ``exports`` as a dict of string constants
    (``fiqa.core.lazy`` imports the module names it is given, and refuses any outside fiqa)."""
    calls = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        calls += [(call, tree) for call, name in _calls(path) if name.split(".")[-1] == "lazy_exports"]
    return bool(calls) and all(len(call.args) == 2 and _constant_dict(call.args[1], tree) for call, tree in calls)


def _import_module_safe(call: ast.Call, tree: ast.Module, owner: str | None, path: Path) -> bool:
    """``importlib.import_module`` of a fixed module name: a string constant, an f-string that starts with
    ``fiqa.`` or ``{__name__}.``, a lookup in a module-level dict of string constants, ``self.<attribute>`` of a
    class every construction of which passes a string constant, or the lazy-export helper's lookup in the dicts of
    string constants every package hands it."""
    if path == LAZY:
        return _lazy_exports_of_constants()
    argument = call.args[0] if call.args else None
    if isinstance(argument, ast.Constant):
        return isinstance(argument.value, str)
    if isinstance(argument, ast.JoinedStr) and argument.values:
        head = argument.values[0]
        if isinstance(head, ast.Constant):
            return str(head.value).startswith("fiqa.")
        return isinstance(head, ast.FormattedValue) and _dotted(head.value) == "__name__"
    if isinstance(argument, ast.Subscript) and isinstance(argument.value, ast.Name):
        return _constant_dict(argument.value, tree)
    if isinstance(argument, ast.Attribute) and _dotted(argument.value) == "self" and owner is not None:
        return _constructed_with_constants(owner)
    return False


def _owners(tree: ast.Module) -> dict[ast.AST, str]:
    """Each node inside a class body -> the class name."""
    found: dict[ast.AST, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for inner in ast.walk(node):
                found[inner] = node.name
    return found


def test_P05_no_code_from_data(record_property):
    found, imports = [], 0
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        owners = _owners(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names] + ([node.module] if isinstance(node, ast.ImportFrom)
                                                                and node.module else [])
                found += [f"{_where(path, node)} imports {n}" for n in names
                          if n.split(".")[0] in ("pickle", "marshal", "dill", "joblib", "shelve", "subprocess")
                          and not (n == "subprocess" and path.name == "decoder.py")]
                # fiqa/io/decoder.py starts its decoding workers with a fixed argv ([python, -m, fiqa.io.decoder]),
                # never a shell: the shell= check below still covers it
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            shell = _keyword(node, "shell")
            if name in _FORBIDDEN or (shell is not None and not (isinstance(shell, ast.Constant) and not shell.value)):
                found.append(f"{_where(path, node)} calls {name}")
            if name in ("importlib.import_module", "import_module"):
                imports += 1
                if not _import_module_safe(node, tree, owners.get(node), path):
                    found.append(f"{_where(path, node)} imports a module named by data")
    record_property("observed", f"{len(SOURCES)} Python files in src/ and scripts/: {found or 'nothing found'}; "
                                f"{imports} import_module calls, all of fixed module names")
    assert found == []


def test_P06_no_download(record_property):
    # the demo reads a local LFW folder (its argument or $FIQA_LFW): nothing in src/ or scripts/ fetches from the
    # network or unpacks an archive
    fetches = [_where(path, call) for path in SOURCES for call, name in _calls(path)
               if name.split(".")[-1] in ("urlretrieve", "urlopen", "extractall")]
    record_property("observed", f"network fetches and archive extractions in src/ and scripts/: {fetches or 'none'}")
    assert fetches == []
