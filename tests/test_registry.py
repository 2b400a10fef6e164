"""Every registry and every entry, parametrised: ``create`` refuses an unknown parameter and every invalid value with
one error type and one wording, before constructing anything; each entry's metadata (summary, declared defaults)
holds and is what ``list_*``, ``fiqa label --list`` and ``fiqa models`` show."""
from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
from click.testing import CliRunner

from fiqa.cli import main
from fiqa.core.errors import FIQAError, InvalidParameterError, UnknownNameError
from fiqa.core.params import (
    Boolean,
    Constraint,
    InstanceOf,
    Interval,
    Options,
    Param,
    PathLike,
    describe,
    is_valid,
    validate,
)
from fiqa.core.registry import Entry, Registry
from fiqa.embed import EMBEDDERS, SFACE_SPEC, list_embedders
from fiqa.label import LABELERS, list_labelers
from fiqa.score.packaged import MODELS, list_models
from fiqa.score.training_free import QUALITY_METHODS, list_quality_methods
from fiqa.train import list_regressors
from fiqa.train.models import REGRESSORS

REGISTRIES: dict[str, Registry] = {"labeller": LABELERS, "embedder": EMBEDDERS, "quality method": QUALITY_METHODS,
                                   "shipped model": MODELS, "regressor shape": REGRESSORS}
LISTS = {"labeller": list_labelers, "embedder": list_embedders, "quality method": list_quality_methods,
         "shipped model": list_models, "regressor shape": list_regressors}
ENTRIES = [pytest.param(entry, id=f"{kind}:{entry.name}") for kind, registry in REGISTRIES.items()
           for entry in registry.entries()]
#: A valid value of every required parameter, so that a test can pass the others alone.
REQUIRED_EXAMPLES = {"model": "no-such-model.onnx", "spec": SFACE_SPEC}

UNKNOWN = re.compile(r"^The 'bogus' parameter is not a parameter of (\w+ \(the '[\w-]+' [\w -]+\)|the '[\w-]+' "
                     r"[\w -]+)\. Its parameters: ([\w, ]+|\(none\))\.$")


def _invalid_values(constraint: Constraint) -> list[object]:
    """Values that break ``constraint``: just outside each bound, of the wrong type, not an option."""
    if isinstance(constraint, Interval):
        step = 1 if constraint.kind is int else 0.5
        values: list[object] = ["1", True]
        if constraint.left is not None:
            values.append(constraint.left - step if constraint.closed in ("left", "both") else constraint.left)
        if constraint.right is not None:
            values.append(constraint.right + step if constraint.closed in ("right", "both") else constraint.right)
        if constraint.kind is int:
            values.append(2.5)
        else:
            values.append(float("nan"))
        return values
    if isinstance(constraint, Options):
        return ["no-such-option", 3.5]
    if isinstance(constraint, Boolean):
        return [1, "true"]
    if isinstance(constraint, (PathLike, InstanceOf)):
        return [3.5, object()]
    raise AssertionError(f"no invalid values known for {constraint!r}")


def _cases() -> list:
    cases = []
    for kind, registry in REGISTRIES.items():
        for entry in registry.entries():
            for name, param in entry.params.items():
                for constraint in param.constraints:
                    if constraint is None:
                        continue
                    bad = [v for v in _invalid_values(constraint) if not is_valid(v, param.constraints)]
                    assert bad, f"{entry.name}.{name}: no value breaks {constraint}"
                    cases.append(pytest.param(entry, name, bad[0], id=f"{kind}:{entry.name}:{name}:{constraint}"))
    return cases


def test_every_registry_is_listed_by_its_list_function():
    for kind, registry in REGISTRIES.items():
        assert LISTS[kind]() == registry.names() != [], kind


@pytest.mark.parametrize("entry", ENTRIES)
def test_create_refuses_an_unknown_parameter_before_constructing(entry: Entry):
    registry = next(r for r in REGISTRIES.values() if r.kind == entry.kind)
    required = {name: REQUIRED_EXAMPLES[name] for name, param in entry.params.items() if param.required}
    with pytest.raises(InvalidParameterError) as caught:
        registry.create(entry.name, bogus=1, **required)
    assert isinstance(caught.value, FIQAError) and isinstance(caught.value, ValueError)
    match = UNKNOWN.match(str(caught.value))
    assert match, str(caught.value)
    listed = match.group(2)
    assert listed == (", ".join(sorted(entry.params)) or "(none)")


@pytest.mark.parametrize("entry, name, value", _cases())
def test_create_refuses_each_invalid_value_with_the_same_wording(entry: Entry, name: str, value: object):
    registry = next(r for r in REGISTRIES.values() if r.kind == entry.kind)
    required = {key: REQUIRED_EXAMPLES[key] for key, param in entry.params.items() if param.required and key != name}
    with pytest.raises(InvalidParameterError) as caught:
        registry.create(entry.name, **{name: value}, **required)
    expected = describe(entry.params[name].constraints)
    assert str(caught.value) == f"The {name!r} parameter of {entry.owner} must be {expected}. Got {value!r} instead."


def test_a_missing_required_parameter_and_an_unknown_name_fail_clearly():
    with pytest.raises(InvalidParameterError, match=r"^The 'model' parameter of OnnxEmbedder must be given"):
        EMBEDDERS.create("onnx", spec=SFACE_SPEC)
    for registry in REGISTRIES.values():
        first = registry.names()[0]
        with pytest.raises(UnknownNameError, match=rf"^Unknown {registry.kind} '{first}x'\. Did you mean '{first}'"):
            registry.create(first + "x")


@pytest.mark.parametrize("entry", ENTRIES)
def test_metadata_summary_and_declared_defaults_match_the_constructor(entry: Entry):
    assert entry.summary.strip() and not entry.summary.endswith("."), entry.name
    signature = inspect.signature(entry.factory)
    accepted = {name: p for name, p in signature.parameters.items()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    assert set(accepted) == set(entry.params), entry.name
    for name, param in entry.params.items():
        assert param.meaning.strip(), f"{entry.name}.{name} has no meaning"
        default = accepted[name].default
        if param.required:
            assert default is inspect.Parameter.empty, f"{entry.name}.{name}"
        else:
            assert default == param.default and type(default) is type(param.default), f"{entry.name}.{name}"
            assert is_valid(param.default, param.constraints), f"{entry.name}.{name}: default breaks its constraints"


def test_kind_specific_metadata():
    for entry in QUALITY_METHODS.entries() + MODELS.entries():
        assert entry.fields["higher_is_better"] is True
    for entry in LABELERS.entries():
        assert ("norms" in entry.fields.get("needs", ())) == entry.factory.requires_norms
        assert entry.factory.name == entry.name  # recorded as labels_.meta["method"]
    assert {entry.fields["input"] for entry in REGRESSORS.entries()} == {"features", "crops"}


def test_label_list_prints_the_metadata():
    result = CliRunner().invoke(main, ["label", "--list"])
    assert result.exit_code == 0
    text = re.sub(r"\s+", " ", result.stdout)
    for entry in LABELERS.entries():
        assert f"{entry.name} {entry.summary}" in text
        for name, param in entry.params.items():
            if name != "random_state":
                assert f"{name} = {param.default!r} {param.meaning} Must be {describe(param.constraints)}." in text
    assert "random_state =" not in result.stdout


def test_models_lists_the_metadata():
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0
    for entry in MODELS.entries():
        assert f"{entry.name}: {entry.summary}" in result.stdout


def test_validate_and_the_constraint_wording():
    constraints = {"n": [Interval(int, 1, None, closed="left")], "f": [Interval(float, 0, 1, closed="neither"), None],
                   "mode": [Options(("a", "b"))], "flag": [Boolean()], "path": [PathLike(), None],
                   "m": Param(1, [Interval(int, None, 5, closed="right")])}
    validate("Owner", {"n": np.int64(3), "f": None, "mode": "a", "flag": np.bool_(True), "path": "x", "m": -7},
             constraints)
    cases = [("n", 0, "an int >= 1"), ("n", True, "an int >= 1"), ("f", 1, "a float in (0, 1) or None"),
             ("f", float("nan"), "a float in (0, 1) or None"), ("mode", "c", "one of 'a', 'b'"),
             ("flag", 1, "a bool"), ("path", 3, "a path or None"), ("m", 6, "an int <= 5")]
    for name, value, expected in cases:
        with pytest.raises(InvalidParameterError) as caught:
            validate("Owner", {name: value}, constraints)
        assert str(caught.value) == f"The {name!r} parameter of Owner must be {expected}. Got {value!r} instead."
    with pytest.raises(InvalidParameterError, match=r"^The 'x' parameter is not a parameter of Owner\. Its "
                                                    r"parameters: f, flag, m, mode, n, path\.$"):
        validate("Owner", {"x": 1}, constraints)


def test_registry_registers_by_one_call_and_refuses_twice():
    registry: Registry[dict] = Registry("widget")

    def make(*, size: int = 1) -> dict:
        return {"size": size}

    make.param_specs = {"size": Param(1, [Interval(int, 1, None, closed="left")], "How big.")}  # type: ignore[attr-defined]
    entry = registry.register("sdd-refined", make, summary="Refined widget", reference="nowhere", colour="red")
    assert registry.create("sdd-refined", size=2) == {"size": 2}
    assert registry.names() == ["sdd-refined"] and registry.entry("sdd-refined") is entry
    assert entry.defaults == {"size": 1} and entry.fields == {"colour": "red"}
    with pytest.raises(InvalidParameterError, match=r"^The 'size' parameter of the 'sdd-refined' widget must be an "
                                                    r"int >= 1\. Got 0 instead\.$"):
        registry.create("sdd-refined", size=0)
    with pytest.raises(UnknownNameError, match=r"^Unknown widget 'sdd-refine'\. Did you mean 'sdd-refined'\?"):
        registry.entry("sdd-refine")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("sdd-refined", make, summary="again")
    with pytest.raises(ValueError, match="needs a summary"):
        registry.register("other", make, summary=" ")
