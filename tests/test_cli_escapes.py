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
