"""A quality model file given by its path is used only when its bytes are the ones written with it (issue 25, item
7): ``fiqa train`` writes ``model.onnx.sha256`` (and ``head.onnx.sha256``) beside each file; scoring refuses a file
that differs from it, and a file without one, with one line naming the file."""
from __future__ import annotations

import hashlib
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from fiqa.cli import main
from fiqa.core.errors import ModelFileError
from fiqa.embed.quality_model import digest_path
from fiqa.score import create_scorer


def _flip_16_bits(source, target) -> None:
    """``target``: ``source`` with the lowest mantissa bit of 16 float32 weights of its largest tensor flipped, and
    ``source``'s digest file beside it."""
    model = onnx.load(source)
    largest = max(model.graph.initializer, key=lambda tensor: len(tensor.raw_data))
    data = bytearray(source.read_bytes())
    offset = data.find(largest.raw_data)
    assert offset > 0 and len(largest.raw_data) >= 64
    for index in np.random.default_rng(11).choice(len(largest.raw_data) // 4, size=16, replace=False):
        data[offset + 4 * int(index)] ^= 0x01
    target.write_bytes(bytes(data))
    shutil.copyfile(digest_path(source), digest_path(target))


def test_export_writes_each_files_sha256_beside_it(exported_head):
    for path in (exported_head, exported_head.with_name("head.onnx")):
        recorded = digest_path(path).read_text(encoding="ascii")
        assert recorded == f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n"  # sha256sum's format
    scorer = create_scorer(exported_head)
    assert scorer.model_sha256 == hashlib.sha256(exported_head.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["model.onnx", "head.onnx"])
def test_16_flipped_bits_are_refused(exported_head, tmp_path, name):
    flipped = tmp_path / name
    _flip_16_bits(exported_head.with_name(name), flipped)
    with pytest.raises(ModelFileError) as caught:
        create_scorer(flipped)
    message = str(caught.value)
    assert message.startswith(f"{flipped}: has SHA-256 ") and "corrupt or altered" in message
    assert "\n" not in message


def test_a_model_file_without_its_digest_is_refused_until_one_is_written(exported_head, tmp_path):
    bare = tmp_path / "model.onnx"
    shutil.copyfile(exported_head, bare)
    with pytest.raises(ModelFileError, match=r"model\.onnx: no model\.onnx\.sha256 beside it.*sha256sum model\.onnx"):
        create_scorer(bare)
    digest_path(bare).write_text(hashlib.sha256(bare.read_bytes()).hexdigest() + "  model.onnx\n", encoding="ascii")
    assert create_scorer(bare).model_sha256 == hashlib.sha256(bare.read_bytes()).hexdigest()
    digest_path(bare).write_text("not a digest\n", encoding="ascii")
    with pytest.raises(ModelFileError, match=r"model\.onnx\.sha256 does not start with a SHA-256"):
        create_scorer(bare)


def test_fiqa_score_refuses_a_flipped_model_in_one_line(exported_head, tmp_path):
    flipped = tmp_path / "flipped.onnx"
    _flip_16_bits(exported_head, flipped)
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"never read")
    result = CliRunner().invoke(main, ["score", str(photo), "--model", str(flipped)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {flipped}: has SHA-256 ") and result.output.count("\n") == 1
