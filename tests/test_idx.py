"""IDX reading and writing: round trips and strict rejection of damaged files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from predlearn.datamodules.idx import IDXFormatError, read_idx, write_idx


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize(
    "array",
    [
        np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8),
        np.random.default_rng(1).integers(0, 10, 13, dtype=np.uint8),
        np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32),
        np.arange(-5, 5, dtype=np.int32).reshape(2, 5),
    ],
    ids=["uint8-3d", "uint8-1d", "float32-2d", "int32-2d"],
)
def test_round_trip(tmp_path, array, compress):
    path = write_idx(tmp_path / "a.idx", array, compress=compress)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    back = read_idx(path)
    assert back.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, array)
    back[...] = 0  # the result is a writeable copy


def test_gzip_detected_by_content_not_name(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw_named_gz = write_idx(tmp_path / "raw.gz", array, compress=False)
    gz_named_raw = write_idx(tmp_path / "packed", array, compress=True)
    np.testing.assert_array_equal(read_idx(raw_named_gz), array)
    np.testing.assert_array_equal(read_idx(gz_named_raw), array)


def test_compress_follows_suffix_by_default(tmp_path):
    array = np.zeros(5, dtype=np.uint8)
    assert write_idx(tmp_path / "x.gz", array).read_bytes()[:2] == b"\x1f\x8b"
    assert write_idx(tmp_path / "x", array).read_bytes()[:4] == b"\x00\x00\x08\x01"


def test_header_layout_matches_mnist(tmp_path):
    path = write_idx(tmp_path / "img", np.zeros((3, 28, 28), dtype=np.uint8), compress=False)
    data = path.read_bytes()
    assert struct.unpack(">HBBIII", data[:16]) == (0, 0x08, 3, 3, 28, 28)
    assert len(data) == 16 + 3 * 28 * 28


def test_gzip_output_is_deterministic(tmp_path):
    array = np.arange(100, dtype=np.uint8)
    a = write_idx(tmp_path / "a.gz", array).read_bytes()
    b = write_idx(tmp_path / "b.gz", array).read_bytes()
    assert a == b


def _mnist_like(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    return write_idx(tmp_path / ("images.gz" if compress else "images"), images, compress)


def test_truncated_raw_file_names_file_and_sizes(tmp_path):
    path = _mnist_like(tmp_path, compress=False)
    path.write_bytes(path.read_bytes()[: 16 + 1000])
    with pytest.raises(IDXFormatError) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert "expected 7840 bytes of image data" in str(info.value)
    assert "found 1000" in str(info.value)


def test_truncated_gzip_stream(tmp_path):
    path = _mnist_like(tmp_path, compress=True)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IDXFormatError, match="truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_short_payload_inside_valid_gzip(tmp_path):
    path = tmp_path / "short.gz"
    header = struct.pack(">HBBIII", 0, 8, 3, 10, 28, 28)
    path.write_bytes(gzip.compress(header + bytes(500)))
    with pytest.raises(IDXFormatError, match="expected 7840 bytes of image data, found 500"):
        read_idx(path)


def test_trailing_bytes_after_payload(tmp_path):
    path = _mnist_like(tmp_path, compress=False)
    path.write_bytes(path.read_bytes() + b"xyz")
    with pytest.raises(IDXFormatError, match="trailing") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_trailing_garbage_after_gzip_stream(tmp_path):
    path = _mnist_like(tmp_path, compress=True)
    path.write_bytes(path.read_bytes() + b"garbage!")
    with pytest.raises(IDXFormatError, match="trailing garbage") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_corrupt_gzip_stream(tmp_path):
    path = _mnist_like(tmp_path, compress=True)
    data = bytearray(path.read_bytes())
    for i in range(20, 60):  # overwrite part of the deflate data
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IDXFormatError, match="corrupt gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_bad_magic(tmp_path):
    path = tmp_path / "notidx"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(IDXFormatError, match="bad magic number") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_unknown_dtype_code(tmp_path):
    path = tmp_path / "code"
    path.write_bytes(struct.pack(">HBBI", 0, 0x07, 1, 4) + bytes(4))
    with pytest.raises(IDXFormatError, match="bad magic number 0x00000701"):
        read_idx(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "header"
    path.write_bytes(struct.pack(">HBB", 0, 8, 3) + b"\x00\x00\x00\x0a")
    with pytest.raises(IDXFormatError, match="header truncated"):
        read_idx(path)


def test_idx_format_error_is_value_error():
    assert issubclass(IDXFormatError, ValueError)


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="no IDX type code"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))
