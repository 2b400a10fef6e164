"""Human-readable lines escape control characters in the names they print (issue 25, item 4): the one-line error,
warnings, log messages and summaries, as ``fiqa score``'s stdout does, so a file name holding a TAB or a newline
cannot fake a line of output."""
from __future__ import annotations

import logging

from click.testing import CliRunner

from fiqa.cli import main
from fiqa.commands._common import OneLineFormatter, one_line

HOSTILE = "innocent.onnx\t99.9\tok\nError: fake"


def test_one_line_escapes_controls_and_keeps_backslashes():
    assert one_line("a\tb\nc\r\x1b[31m\u2028d\\e") == "a\\tb\\nc\\r\\x1b[31m\\u2028d\\e"
    assert one_line("José/ph oto.jpg: ok") == "José/ph oto.jpg: ok"


def test_the_error_line_escapes_a_hostile_file_name(tmp_path):
    model = tmp_path / HOSTILE
    result = CliRunner().invoke(main, ["score", str(tmp_path / "photo.jpg"), "--model", str(model)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1  # one line, however the name is made
    assert result.output == f"Error: {tmp_path}/innocent.onnx\\t99.9\\tok\\nError: fake: model file or folder does " \
                            f"not exist\n"


def test_log_messages_that_name_files_stay_on_one_line(tmp_path):
    record = logging.LogRecord("fiqa.io.sources", logging.WARNING, __file__, 1, "%s: skipped %d file(s)",
                               (str(tmp_path / HOSTILE), 2), None)
    line = OneLineFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert "\n" not in line and "\t" not in line
    assert line == f"WARNING fiqa.io.sources: {tmp_path}/innocent.onnx\\t99.9\\tok\\nError: fake: skipped 2 file(s)"


def test_embed_summary_escapes_the_store_name(tmp_path):
    import cv2
    import numpy as np

    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    cv2.imwrite(str(data / "a" / "1.png"), np.random.default_rng(0).integers(0, 256, (112, 112, 3), np.uint8))
    out = tmp_path / "store\tx\nfake: 99 samples"
    result = CliRunner().invoke(main, ["embed", str(data), "-o", str(out), "--aligned", "--no-progress"])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith(f"{tmp_path}/store\\tx\\nfake: 99 samples: 1 samples, 128-D")
    assert not any(line.startswith("fake") for line in result.output.splitlines())


CONTROLS = ("\t", "\n", "\x1b")
DIRTY = "out\tfake: 99.9 ok\nError: x\x1b[2J"  # a TAB, a newline and an ESC (clear-screen) in one folder name
ESCAPED = "out\\tfake: 99.9 ok\\nError: x\\x1b[2J"


def _raw_controls(text: str) -> list[str]:
    """The raw control characters of ``text`` other than the newlines that end its lines."""
    return [char for line in text.splitlines() for char in line if char in CONTROLS or char == "\r"]


def test_every_command_prints_a_hostile_output_folder_escaped(tmp_path):
    """embed, label, score -o, curate, train, a refused output and a command's own usage error, each with an
    output folder (or an input) whose name holds a TAB, a newline and an ESC: stdout and stderr hold no raw control
    character, and name it escaped."""
    import importlib.util

    import cv2
    import numpy as np

    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for identity in ("a", "b", "c"):
        (data / identity).mkdir(parents=True)
        for index in range(3):
            cv2.imwrite(str(data / identity / f"{index}.png"), rng.integers(0, 256, (112, 112, 3), np.uint8))
    dirty = tmp_path / DIRTY
    dirty.mkdir()
    store, labels = dirty / "store", dirty / "labels.parquet"
    runs = {
        "embed": ["embed", str(data), "-o", str(store), "--aligned"],
        "label": ["label", str(store), "-m", "mean-positive", "-o", str(labels)],
        "score": ["score", str(data / "a" / "0.png"), "--aligned", "-o", str(dirty / "scores.csv")],
        "curate": ["curate", str(labels), "-o", str(dirty / "curated.parquet")],
        "refused": ["label", str(store), "-m", "random", "-o", str(store / "labels.parquet")],  # into the store
        "usage": ["augment", str(store), "-o", str(dirty / "augmented"), "--rows-from", str(dirty / "ids.txt")],
    }
    (dirty / "ids.txt").write_text("nobody\n", encoding="utf-8")  # augment's own click error quotes the file
    if importlib.util.find_spec("torch") is not None:
        runs["train"] = ["train", str(store), str(labels), "-o", str(dirty / "model"), "--epochs", "1"]
    for name, args in runs.items():
        result = CliRunner().invoke(main, [*args, "--no-progress"])
        assert result.exit_code == {"refused": 1, "usage": 2}.get(name, 0), (name, result.output)
        printed = result.stdout + result.stderr
        assert _raw_controls(printed) == [], (name, printed)
        assert ESCAPED in printed, (name, printed)
        assert not any(line.startswith(("fake", "Error: x")) for line in printed.splitlines()), (name, printed)


def test_progress_descriptions_are_one_line():
    import io

    from fiqa.core.progress import progress_bars, tqdm

    with progress_bars(True), tqdm(total=1, desc=f"embed {DIRTY}", file=io.StringIO()) as bar:
        assert bar.desc == f"embed {ESCAPED}"
        bar.set_description(DIRTY)
        assert bar.desc == f"{ESCAPED}: "
        bar.set_postfix_str(DIRTY)
        assert bar.postfix == ESCAPED
