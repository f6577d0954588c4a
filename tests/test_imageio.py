import os

import numpy as np
import OpenImageIO as oiio
import pytest

from gantlitz.imageio import ImageError, image_size, read_image, write_image
from helpers import HALF_FLOAT_QUANTISATION, quantisation_bound


@pytest.fixture()
def rgb():
    return np.random.default_rng(0).random((24, 40, 3), dtype=np.float32)


@pytest.mark.parametrize(
    "name, kwargs, quantisation",
    [
        ("a.exr", {}, HALF_FLOAT_QUANTISATION),
        ("a.exr", {"float_exr": True}, 0.0),  # float32 as stored: exact
        ("a.png", {}, quantisation_bound(16)),
        ("a.png", {"bits": 8}, quantisation_bound(8)),
        ("a.tif", {}, quantisation_bound(16)),
        ("a.tiff", {"bits": 32}, 0.0),
    ],
)
def test_round_trip(tmp_path, rgb, name, kwargs, quantisation):
    path = write_image(tmp_path / name, rgb, **kwargs)
    back = read_image(path)
    assert back.dtype == np.float32 and back.shape == rgb.shape
    assert np.abs(back - rgb).max() <= quantisation
    assert image_size(path) == (24, 40, 3)


def test_jpeg_is_lossy_but_close(tmp_path):
    smooth = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (32, 1))[..., None].repeat(3, 2)
    back = read_image(write_image(tmp_path / "a.jpg", smooth))
    assert np.abs(back - smooth).mean() < 0.01


def test_two_dimensional_array_is_written_as_one_channel(tmp_path):
    grey = np.random.default_rng(1).random((17, 9)).astype(np.float32)
    for name in ("g.png", "g.exr", "g.tif"):
        back = read_image(write_image(tmp_path / name, grey, float_exr=True))
        assert back.shape == (17, 9, 1)
        assert np.abs(back[..., 0] - grey).max() <= quantisation_bound(16)  # 16-bit PNG / TIFF, float EXR


def test_integer_input_is_normalised(tmp_path):
    a = np.array([[0, 255], [128, 64]], np.uint8)
    back = read_image(write_image(tmp_path / "u8.png", a, bits=8))
    assert np.allclose(back[..., 0], a / 255.0)


def test_no_overwrite_without_flag_and_atomic(tmp_path, rgb):
    path = write_image(tmp_path / "a.png", rgb)
    before = path.read_bytes()
    with pytest.raises(ImageError, match="exists"):
        write_image(path, np.zeros_like(rgb))
    assert path.read_bytes() == before
    write_image(path, np.zeros_like(rgb), overwrite=True)
    assert read_image(path).max() == 0.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no temporary left behind
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)


@pytest.mark.parametrize("name", ["t.png", "t.jpg", "t.exr", "t.tif"])
def test_truncated_file_is_reported(tmp_path, rgb, name):
    path = write_image(tmp_path / name, rgb)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=name.replace(".", r"\.")) as err:
        read_image(path)
    assert "truncated" in str(err.value) or "corrupt" in str(err.value)


def test_nan_in_exr_is_reported(tmp_path, rgb):
    bad = rgb.copy()
    bad[3, 4, 1] = np.nan
    path = tmp_path / "nan.exr"
    out = oiio.ImageOutput.create(str(path))
    out.open(str(path), oiio.ImageSpec(40, 24, 3, oiio.FLOAT))
    out.write_image(bad)
    out.close()
    with pytest.raises(ImageError, match=r"nan\.exr: contains 1 NaN/Inf"):
        read_image(path)
    assert np.isnan(read_image(path, check_finite=False)).sum() == 1


def test_bad_inputs(tmp_path, rgb):
    with pytest.raises(ImageError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "x.bmp").write_bytes(b"BM")
    with pytest.raises(ImageError, match="unsupported format"):
        read_image(tmp_path / "x.bmp")
    (tmp_path / "junk.png").write_bytes(b"not a png at all" * 4)
    with pytest.raises(ImageError, match="junk.png: unreadable"):
        read_image(tmp_path / "junk.png")
    with pytest.raises(ImageError, match="unsupported format"):
        write_image(tmp_path / "a.gif", rgb)
    with pytest.raises(ImageError, match="NaN"):
        write_image(tmp_path / "n.exr", np.full((2, 2), np.nan, np.float32))
    assert not any(p.suffix in (".gif", ".exr") for p in tmp_path.iterdir())
    assert isinstance(ImageError("f", "p"), ValueError) and os.fspath(tmp_path)
