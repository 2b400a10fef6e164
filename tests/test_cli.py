"""The habits every ``fiqa`` command shares: -o/--out, -v anywhere, -q, --no-progress / TQDM_DISABLE, the exit-status
rule, ``label --list``, option names kept across commands, and --force on the consumers of a store's tables."""
from __future__ import annotations

import dataclasses
import logging
import re
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from fiqa.cli import main
from fiqa.core.progress import progress_bars, progress_enabled, tqdm
from fiqa.io.table import load_quality, save_quality

BAR = "img/s"  # the scorer's progress bar unit, as tqdm draws it


@pytest.fixture(scope="module")
def photo(lfw_dir) -> str:
    return str(sorted(lfw_dir.glob("A*/*.jpg"))[0])


def _options(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in [*getattr(param, "opts", ()),
                                                          *getattr(param, "secondary_opts", ())]}


def test_every_command_takes_the_shared_options_and_out_has_a_short_form():
    assert {"-v", "-q", "--no-progress"} <= _options(main)
    for name, command in main.commands.items():
        options = _options(command)
        assert {"-v", "--verbose", "-q", "--quiet", "--no-progress"} <= options, name
        assert ("--out" in options) == ("-o" in options), name
        assert "Exit status" in (command.epilog or ""), name
    writers = {"augment", "curate", "demo", "embed", "evaluate", "label", "score", "train"}
    assert {name for name, command in main.commands.items() if "--out" in _options(command)} >= writers


def test_verbose_counts_before_and_after_the_command():
    root = logging.getLogger()
    level = root.level
    try:
        for args, expected in [(["models"], logging.WARNING), (["-v", "models"], logging.INFO),
                               (["models", "-v"], logging.INFO), (["-v", "models", "-v"], logging.DEBUG),
                               (["models", "-vvv"], logging.DEBUG)]:
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 0, result.output
            assert root.level == expected, args
    finally:
        root.setLevel(level)


def test_quiet_keeps_results_and_drops_summaries(photo, tmp_path):
    out = tmp_path / "s.parquet"
    loud = CliRunner().invoke(main, ["score", photo, "-o", str(out), "--no-progress"])
    assert loud.exit_code == 0 and f"scores: {out}" in loud.stdout and "1 images: 1 ok" in loud.stdout
    quiet = CliRunner().invoke(main, ["-q", "score", photo, "-o", str(out)])
    assert quiet.exit_code == 0 and quiet.output == "" and load_quality(out).ok.all()
    lines = CliRunner().invoke(main, ["score", photo, "-q"])  # the result on stdout stays, the summary goes
    assert lines.exit_code == 0 and lines.stdout.startswith(photo + "\t") and lines.stderr == ""


@pytest.mark.parametrize(("args", "env", "drawn"), [
    ([], {}, True),
    (["--no-progress"], {}, False),
    (["-q"], {}, False),
    ([], {"TQDM_DISABLE": "1"}, False),
    ([], {"TQDM_DISABLE": "0"}, True),
])
def test_progress_bars_follow_the_flags_and_tqdm_disable(photo, tmp_path, monkeypatch, args, env, drawn):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["score", photo, "-o", str(tmp_path / "s.parquet"), *args])
    assert result.exit_code == 0, result.output
    assert (BAR in result.stderr) == drawn


def test_one_progress_switch_silences_stages_that_pass_disable_explicitly(capsys, monkeypatch):
    # what TQDM_DISABLE alone cannot do: tqdm applies it only as the default of disable=, and the labellers' block
    # loops pass disable= themselves; every library bar consults the switch instead
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert progress_enabled()
    with progress_bars(False):
        assert not progress_enabled()
        assert tqdm(range(3), disable=False, desc="inside").disable
        with progress_bars(True):
            assert progress_enabled()
        assert not progress_enabled()
    bar = tqdm(range(3), disable=False, desc="after")
    assert not bar.disable
    bar.close()
    assert tqdm(range(3), disable=True).disable  # a stage may still hide a bar it finds pointless
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not progress_enabled()
    assert "inside" not in capsys.readouterr().err


def test_the_library_has_no_other_progress_bar():
    # every bar is fiqa.core.progress.tqdm: no module imports tqdm itself (the one switch would miss its bars)
    src = Path(__file__).resolve().parents[1] / "src" / "fiqa"
    direct = [str(path.relative_to(src)) for path in src.rglob("*.py") if path.name != "progress.py"
              and re.search(r"^\s*(from tqdm[.\w]* import|import tqdm)", path.read_text(encoding="utf-8"), re.M)]
    assert direct == []


def test_exit_status_rule(photo, tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["score", photo, "--no-progress"]).exit_code == 0
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"junk")
    mixed = runner.invoke(main, ["score", photo, str(junk), "--no-progress"])  # recorded with a reason: still 0
    assert mixed.exit_code == 0 and f"{junk}\tnan\tnot_an_image" in mixed.stdout
    nothing = runner.invoke(main, ["score", str(junk)])
    assert nothing.exit_code == 1 and "Error: nothing could be scored" in nothing.stderr.splitlines()
    error = runner.invoke(main, ["verify", str(tmp_path / "no-store")])
    assert error.exit_code == 1 and error.output.startswith("Error: ") and "Traceback" not in error.output
    for usage in (["score"], ["score", photo, "--no-such-option"], ["nosuchcommand"], ["train", "-v"],
                  ["score", photo, "--batch-size", "many"], ["score", photo, "-o", str(tmp_path / "s.txt")]):
        assert runner.invoke(main, usage).exit_code == 2, usage
    assert not (tmp_path / "s.txt").exists()


def test_choices_and_lazy_defaults_are_the_library_values():
    from fiqa.augment.degrade import DEGRADATIONS
    from fiqa.io.image import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE
    from fiqa.io.sources import KINDS
    from fiqa.train.config import SHAPES

    def param(command: str, name: str) -> click.Parameter:
        return next(p for p in main.commands[command].params if p.name == name)

    assert tuple(param("embed", "kind").type.choices) == tuple(KINDS)
    assert tuple(param("train", "shape").type.choices) == tuple(SHAPES)
    ctx = click.Context(main.commands["embed"])
    assert param("embed", "max_pixels").get_default(ctx) == DEFAULT_MAX_PIXELS
    assert param("embed", "min_side").get_default(ctx) == DEFAULT_MIN_SIDE
    assert param("augment", "kinds").get_default(click.Context(main.commands["augment"])) == ",".join(DEGRADATIONS)
    shown = CliRunner().invoke(main, ["embed", "--help"], terminal_width=200).stdout
    assert f"[default: {DEFAULT_MAX_PIXELS}]" in shown and f"[default: {DEFAULT_MIN_SIDE}]" in shown


def test_help_loads_no_heavy_module():
    heavy = ["torch", "onnxruntime", "onnx", "pyarrow", "scipy", "sklearn", "matplotlib", "tqdm", "pandas"]
    probe = (f"import sys; from fiqa.cli import main; main(['--help'], standalone_mode=False); "
             f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.fixture()
def forged_labels(lfw_store, tmp_path):
    """Real labels of ``lfw_store`` whose metadata names another store's fingerprint (as after re-embedding)."""
    from fiqa.label import create_labeler, label_store

    table = label_store(lfw_store, create_labeler("mean-positive"))
    forged = dataclasses.replace(table, meta={**table.meta, "store_sha256": "0" * 64, "store": "/elsewhere"})
    return save_quality(forged, tmp_path / "forged.parquet")


def test_evaluate_refuses_another_stores_table_unless_forced(lfw_store, forged_labels, tmp_path, caplog):
    args = ["evaluate", str(lfw_store.root), "--scores", str(forged_labels), "--n-nonmated", "5000",
            "--n-bootstrap", "0", "--no-legacy-erc", "-q"]
    refused = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "r1")])
    assert refused.exit_code == 1 and "computed on another store" in refused.output and "--force" in refused.output
    assert not (tmp_path / "r1").exists()
    with caplog.at_level(logging.WARNING, logger="fiqa.store"):
        forced = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "r2"), "--force"])
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "r2" / "report.html").is_file()
    assert any("used anyway (force=True)" in record.getMessage() for record in caplog.records)


def test_train_refuses_another_stores_labels_and_force_reaches_the_library(lfw_store, forged_labels, tmp_path,
                                                                         caplog):
    from fiqa.core.errors import StoreError
    from fiqa.train.data import make_targets

    refused = CliRunner().invoke(main, ["train", str(lfw_store.root), str(forged_labels), "-o", str(tmp_path / "m")])
    assert refused.exit_code == 1 and "computed on another store" in refused.output
    labels = load_quality(forged_labels)
    with pytest.raises(StoreError, match="another store"):
        make_targets(lfw_store, labels)
    with caplog.at_level(logging.WARNING, logger="fiqa.store"):
        targets = make_targets(lfw_store, labels, force=True)
    assert len(targets.rows) == int(np.isfinite(labels.aligned_to(lfw_store.samples.sample_id)).sum())
    assert any("used anyway" in record.getMessage() for record in caplog.records)


@pytest.mark.slow
def test_train_force_trains_on_the_forged_labels(lfw_store, forged_labels, tmp_path):
    # the forged table's scores, reversed, are labels no other source in the store holds: a model that learnt them
    # ranks the store's faces opposite to the real mean-positive labels and like the reversed ones
    from scipy.stats import spearmanr

    from fiqa.score import create_scorer, score_store

    forged = load_quality(forged_labels)
    reversed_labels = save_quality(dataclasses.replace(forged, score=-forged.score), tmp_path / "reversed.parquet")
    result = CliRunner().invoke(main, ["train", str(lfw_store.root), str(reversed_labels), "-o", str(tmp_path / "m"),
                                       "--epochs", "30", "--force", "--no-progress"])
    assert result.exit_code == 0, result.output
    scores = score_store(create_scorer(tmp_path / "m" / "model.onnx"), lfw_store)
    ok = forged.ok & scores.ok
    assert ok.sum() > 100
    rho = spearmanr(scores.score[ok], forged.score[ok]).statistic
    # a model that ignored the table ranks faces like any quality model does, with the real labels (positive rho);
    # only one that learnt the reversed scores ranks them the other way: the sign is the test (its size depends on
    # how much 30 epochs learn, which varies with BLAS threads)
    assert rho < 0, rho
