"""Property-based tests of the decoder and the header readers (hypothesis): whatever the bytes, a status or an
image, never another exception (issue 13's image guard)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fiqa.io.image import ImageReadError, decode_image, header_size

_IMAGE = cv2.resize(np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8), (48, 40),
                    interpolation=cv2.INTER_CUBIC)
ENCODED = {ext: cv2.imencode(ext, _IMAGE)[1].tobytes() for ext in (".jpg", ".png", ".bmp", ".tiff", ".webp", ".ppm")}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decodes_or_is_refused(data: bytes) -> None:
    try:
        image = decode_image(data, "<fuzz>", max_pixels=10_000_000, min_side=1)
    except ImageReadError as exc:
        assert exc.status.value in {"not_an_image", "too_large", "too_small", "unreadable"}
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@SETTINGS
@given(st.binary(max_size=512))
def test_random_bytes_give_a_status_never_an_exception(data):
    _decodes_or_is_refused(data)


@pytest.mark.parametrize("ext", sorted(ENCODED))
@SETTINGS
@given(data=st.data())
def test_truncated_real_files_give_a_status_or_an_image(ext, data):
    encoded = ENCODED[ext]
    cut = data.draw(st.integers(0, len(encoded)))
    _decodes_or_is_refused(encoded[:cut])


@pytest.mark.parametrize("ext", sorted(ENCODED))
@SETTINGS
@given(data=st.data())
def test_mutated_real_files_give_a_status_or_an_image(ext, data):
    encoded = bytearray(ENCODED[ext])
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(encoded) - 1))
        encoded[position] = data.draw(st.integers(0, 255))
    _decodes_or_is_refused(bytes(encoded))


@pytest.mark.parametrize("ext", sorted(ENCODED))
def test_header_size_of_every_format_equals_the_decoded_size(ext):
    size = header_size(ENCODED[ext])
    assert size == _IMAGE.shape[:2]
