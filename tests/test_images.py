"""load_image: every format the dashboard accepts, and every way an upload can be bad.

Every test builds its own file in memory; expected values come from the data it wrote.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageFile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from densenet.images import MAX_PIXELS, SUPPORTED_EXTENSIONS, ImageError, load_image

RNG = np.random.default_rng(0)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def check_contract(out: np.ndarray) -> None:
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any image's pixels get decoded."""
    def refuse(*args, **kwargs):
        raise AssertionError("pixels were decoded")
    monkeypatch.setattr(Image.Image, "load", refuse)
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


# --- Pillow formats ------------------------------------------------------------------------------

def test_grey_png_values_exact():
    pixels = RNG.integers(0, 256, (17, 23), dtype=np.uint8)
    out = load_image(encode(Image.fromarray(pixels), "PNG"))
    assert out.shape == (17, 23)
    np.testing.assert_array_equal(out, pixels.astype(np.float32) / 255)
    check_contract(out)


def test_rgb_png_values_exact():
    pixels = RNG.integers(0, 256, (9, 12, 3), dtype=np.uint8)
    out = load_image(encode(Image.fromarray(pixels), "PNG"))
    assert out.shape == (9, 12, 3)
    np.testing.assert_array_equal(out, pixels.astype(np.float32) / 255)


def test_grey_looking_rgb_stays_three_channels():
    grey = RNG.integers(0, 256, (8, 8), dtype=np.uint8)
    out = load_image(encode(Image.fromarray(np.stack([grey] * 3, axis=-1)), "PNG"))
    assert out.shape == (8, 8, 3)


def ramp16() -> np.ndarray:
    return np.arange(65536, dtype=np.uint16).reshape(256, 256)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_keeps_full_range_and_levels(fmt: str):
    out = load_image(encode(Image.fromarray(ramp16()), fmt))
    assert out.shape == (256, 256)
    assert out[0, 0] == 0.0 and out[-1, -1] == 1.0
    assert len(np.unique(out)) > 256  # not squeezed through 8 bits
    np.testing.assert_allclose(out, ramp16() / 65535.0, atol=1e-7)


def test_16_bit_big_endian_tiff():
    image = Image.fromarray(ramp16().astype(">u2"))
    assert image.mode == "I;16B"
    out = load_image(encode(image, "TIFF"))
    np.testing.assert_allclose(out, ramp16() / 65535.0, atol=1e-7)


def test_32_bit_int_tiff_with_16_bit_values_is_read_as_16_bit():
    values = np.array([[0, 1000], [30000, 65535]], dtype=np.int32)
    out = load_image(encode(Image.fromarray(values), "TIFF"))
    np.testing.assert_allclose(out, values / 65535.0, atol=1e-7)


def test_float_tiff_is_min_max_scaled_and_made_finite():
    values = np.array([[-2.0, 0.0], [6.0, np.nan]], dtype=np.float32)
    out = load_image(encode(Image.fromarray(values), "TIFF"))
    np.testing.assert_allclose(out, [[0.0, 0.25], [1.0, 0.0]])
    check_contract(out)


def test_constant_float_image_gives_zeros():
    out = load_image(encode(Image.fromarray(np.full((4, 5), 3.5, dtype=np.float32)), "TIFF"))
    np.testing.assert_array_equal(out, np.zeros((4, 5), np.float32))


def test_rgba_is_composited_on_white():
    pixels = np.array([[[200, 100, 0, 255], [200, 100, 0, 0], [0, 0, 0, 51]]], dtype=np.uint8)
    out = load_image(encode(Image.fromarray(pixels, "RGBA"), "PNG"))
    assert out.shape == (1, 3, 3)
    np.testing.assert_allclose(out[0, 0], [200 / 255, 100 / 255, 0.0], atol=1e-6)
    np.testing.assert_allclose(out[0, 1], [1.0, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(out[0, 2], [0.8, 0.8, 0.8], atol=1e-6)  # black at 20 % over white


def test_la_is_grey_composited_on_white():
    pixels = np.array([[[0, 255], [0, 0], [100, 255]]], dtype=np.uint8)
    out = load_image(encode(Image.fromarray(pixels, "LA"), "PNG"))
    assert out.shape == (1, 3)
    np.testing.assert_allclose(out, [[0.0, 1.0, 100 / 255]], atol=1e-6)


def test_palette_becomes_rgb():
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putdata([0, 1])
    out = load_image(encode(image, "PNG"))
    np.testing.assert_array_equal(out, [[[1, 0, 0], [0, 0, 1]]])


def test_palette_transparency_is_composited_on_white():
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putdata([0, 1])
    out = load_image(encode(image, "PNG", transparency=1))
    np.testing.assert_array_equal(out, [[[1, 0, 0], [1, 1, 1]]])


def test_cmyk_becomes_rgb():
    pixels = np.array([[[0, 0, 0, 0], [0, 0, 0, 255], [255, 0, 0, 0]]], dtype=np.uint8)
    out = load_image(encode(Image.fromarray(pixels, "CMYK"), "TIFF"))
    assert out.shape == (1, 3, 3)
    np.testing.assert_array_equal(out, [[[1, 1, 1], [0, 0, 0], [0, 1, 1]]])


def test_one_bit_becomes_zeros_and_ones():
    image = Image.fromarray(np.array([[True, False], [False, True]]))
    assert image.mode == "1"
    out = load_image(encode(image, "PNG"))
    np.testing.assert_array_equal(out, [[1, 0], [0, 1]])


@pytest.mark.parametrize("orientation, stored", [(6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)])
def test_exif_orientation_is_applied(orientation: int, stored: Image.Transpose):
    upright = np.zeros((32, 48, 3), dtype=np.uint8)
    upright[:16, :16] = (255, 0, 0)  # red top-left corner
    rotated = Image.fromarray(upright).transpose(stored)  # how a camera held sideways stores it
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = load_image(encode(rotated, "JPEG", exif=exif, quality=95))
    assert out.shape == (32, 48, 3)
    corners = [out[:16, :16], out[:16, -16:], out[-16:, :16], out[-16:, -16:]]
    reds = [float(c[2:-2, 2:-2, 0].mean() - c[2:-2, 2:-2, 1].mean()) for c in corners]
    assert reds[0] > 0.8 and max(reds[1:]) < 0.2


@pytest.mark.parametrize("fmt, params", [("WEBP", {"lossless": True}), ("BMP", {})])
def test_webp_and_bmp(fmt: str, params: dict):
    pixels = RNG.integers(0, 256, (10, 7, 3), dtype=np.uint8)
    out = load_image(encode(Image.fromarray(pixels), fmt, **params))
    np.testing.assert_array_equal(out, pixels.astype(np.float32) / 255)


def test_jpeg_is_close_to_source():
    pixels = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (16, 1))
    out = load_image(encode(Image.fromarray(pixels), "JPEG", quality=95))
    np.testing.assert_allclose(out, pixels / 255.0, atol=0.03)


# --- sources -------------------------------------------------------------------------------------

def test_sources_path_str_file_object_pil_agree(tmp_path: Path):
    pixels = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    data = encode(Image.fromarray(pixels), "PNG")
    path = tmp_path / "x.png"
    path.write_bytes(data)
    expected = load_image(data)
    for source in (path, str(path), io.BytesIO(data), bytearray(data), memoryview(data),
                   Image.fromarray(pixels)):
        np.testing.assert_array_equal(load_image(source), expected)


def test_format_comes_from_content_not_extension(tmp_path: Path):
    pixels = RNG.integers(0, 256, (5, 6), dtype=np.uint8)
    (tmp_path / "photo.jpg").write_bytes(encode(Image.fromarray(pixels), "PNG"))
    np.testing.assert_array_equal(load_image(tmp_path / "photo.jpg"), pixels / np.float32(255))
    (tmp_path / "notes.png").write_text("just some text, not pixels\n")
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "notes.png")


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello, this is text", "not an image"),
    (np.random.default_rng(1).bytes(4096), "not an image"),
])
def test_bad_bytes_raise_image_error(data: bytes, message: str):
    with pytest.raises(ImageError, match=message):
        load_image(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_raises_image_error(fmt: str):
    data = encode(Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)), fmt)
    with pytest.raises(ImageError, match="truncated"):
        load_image(data[: len(data) // 2])
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_missing_file_raises_image_error(tmp_path: Path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path)


def test_wrong_source_types_raise_type_error(tmp_path: Path):
    with pytest.raises(TypeError, match="int"):
        load_image(42)  # type: ignore[arg-type]
    path = tmp_path / "x.png"
    path.write_bytes(encode(Image.new("L", (2, 2)), "PNG"))
    with open(path, encoding="latin-1") as text_file, pytest.raises(TypeError, match="binary"):
        load_image(text_file)  # type: ignore[arg-type]


def test_byte_limit_is_checked_for_every_source(tmp_path: Path):
    data = encode(Image.fromarray(RNG.integers(0, 256, (32, 32), dtype=np.uint8)), "PNG")
    path = tmp_path / "x.png"
    path.write_bytes(data)
    for source in (data, io.BytesIO(data), path):
        with pytest.raises(ImageError, match="too large"):
            load_image(source, max_bytes=len(data) - 1)
    assert load_image(data, max_bytes=len(data)).shape == (32, 32)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` grey pixels, with one tiny IDAT chunk."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
            + chunk(b"IEND", b""))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("width, height", [(8000, 6000), (10_000, 10_000), (20_000, 10_000)])
def test_huge_image_refused_from_header(width: int, height: int, no_pixel_decoding: None):
    # 48 Mpx: only our limit; 100 Mpx: Pillow warns; 200 Mpx: Pillow raises DecompressionBombError.
    with pytest.raises(ImageError, match="too large"):
        load_image(png_header_only(width, height))


def test_huge_image_refused_when_warnings_are_errors(no_pixel_decoding: None):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError, match="too large"):
            load_image(png_header_only(10_000, 10_000))


def test_pixel_limit_is_adjustable(no_pixel_decoding: None):
    with pytest.raises(ImageError, match="too large"):
        load_image(png_header_only(101, 100), max_pixels=10_000)


def test_pixel_limit_applies_to_pil_images():
    with pytest.raises(ImageError, match="too large"):
        load_image(Image.new("L", (101, 100)), max_pixels=10_000)
    assert MAX_PIXELS == 40_000_000


def test_supported_extensions_have_no_dots():
    assert {"png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "dcm", "dicom"} == set(SUPPORTED_EXTENSIONS)


# --- DICOM ---------------------------------------------------------------------------------------

def dicom_dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", **elements) -> Dataset:
    """A Secondary Capture data set holding ``pixels``: (rows, cols), (frames, rows, cols) or RGB."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    colour = photometric == "RGB"
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    frames_shape = pixels.shape[:-1] if colour else pixels.shape
    if len(frames_shape) == 3:
        ds.NumberOfFrames = frames_shape[0]
    ds.Rows, ds.Columns = frames_shape[-2:]
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def dicom_bytes(ds: Dataset, *, preamble: bool = True) -> bytes:
    buffer = io.BytesIO()
    if preamble:
        ds.preamble = b"\0" * 128
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    else:
        plain = Dataset()
        plain.update(ds)
        pydicom.dcmwrite(buffer, plain, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


def stored_ramp(rows: int = 16, cols: int = 256) -> np.ndarray:
    return (np.arange(rows * cols, dtype=np.uint16) * 16).reshape(rows, cols)  # 0 .. 65520


def linear_window(x: np.ndarray, centre: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 'LINEAR' window, mapped to [0, 1]."""
    return np.clip((x - (centre - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def test_dicom_without_window_is_min_max_scaled():
    stored = stored_ramp()
    out = load_image(dicom_bytes(dicom_dataset(stored, RescaleSlope=2, RescaleIntercept=-1024)))
    assert out.shape == stored.shape
    np.testing.assert_allclose(out, stored / stored.max(), atol=1e-6)
    check_contract(out)


def test_dicom_rescale_then_window():
    stored = stored_ramp()
    ds = dicom_dataset(stored, RescaleSlope=0.5, RescaleIntercept=-1024, WindowCenter=4000, WindowWidth=8000)
    out = load_image(dicom_bytes(ds))
    expected = linear_window(stored * 0.5 - 1024, 4000, 8000)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert out.min() == 0.0 and out.max() == 1.0  # the window clips at both ends


def test_dicom_multi_valued_window_uses_the_first():
    stored = stored_ramp()
    ds = dicom_dataset(stored, WindowCenter=[20000, 100], WindowWidth=[30000, 10])
    np.testing.assert_allclose(load_image(dicom_bytes(ds)), linear_window(stored, 20000, 30000), atol=1e-5)


def test_dicom_voi_lut_sequence_is_scaled_by_its_table():
    stored = (np.arange(512, dtype=np.uint16)).reshape(2, 256)
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [256, 0, 16])
    item.add_new("LUTData", "US", [100 * i for i in range(256)])  # 0 .. 25500, not a full 16-bit range
    ds = dicom_dataset(stored, VOILUTSequence=[item])
    out = load_image(dicom_bytes(ds))
    np.testing.assert_allclose(out, np.minimum(stored, 255) / 255.0, atol=1e-6)


def test_dicom_monochrome1_is_inverted_after_window():
    stored = stored_ramp()
    window = {"WindowCenter": 30000, "WindowWidth": 20000}
    mono2 = load_image(dicom_bytes(dicom_dataset(stored, "MONOCHROME2", **window)))
    mono1 = load_image(dicom_bytes(dicom_dataset(stored, "MONOCHROME1", **window)))
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)
    assert mono1[0, 0] == 1.0  # lowest stored value is brightest in MONOCHROME1


def test_dicom_multi_frame_gives_first_frame():
    frames = np.stack([stored_ramp(), stored_ramp()[::-1], np.zeros_like(stored_ramp())])
    out = load_image(dicom_bytes(dicom_dataset(frames)))
    np.testing.assert_array_equal(out, load_image(dicom_bytes(dicom_dataset(frames[0].copy()))))


def test_dicom_rgb_is_three_channels():
    pixels = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    out = load_image(dicom_bytes(dicom_dataset(pixels, "RGB")))
    np.testing.assert_array_equal(out, pixels.astype(np.float32) / 255)


def test_dicom_without_preamble():
    stored = stored_ramp()
    out = load_image(dicom_bytes(dicom_dataset(stored), preamble=False))
    np.testing.assert_allclose(out, stored / stored.max(), atol=1e-6)


def test_dicom_without_pixel_data():
    ds = dicom_dataset(stored_ramp())
    del ds.PixelData
    with pytest.raises(ImageError, match="no pixel data"):
        load_image(dicom_bytes(ds))


def test_dicom_pixel_limit_checked_from_header(monkeypatch: pytest.MonkeyPatch):
    ds = dicom_dataset(stored_ramp())
    ds.Rows, ds.Columns = 10_000, 10_000  # header only: the pixel data is far too short

    def refuse(*args, **kwargs):
        raise AssertionError("pixels were decoded")
    monkeypatch.setattr("densenet.dicom._decode_first_frame", refuse)
    with pytest.raises(ImageError, match="too large"):
        load_image(dicom_bytes(ds))


def test_dicom_damaged_pixel_data():
    ds = dicom_dataset(stored_ramp())
    ds.PixelData = ds.PixelData[:100]
    with pytest.raises(ImageError, match="DICOM"):
        load_image(dicom_bytes(ds))


def compressed(ds: Dataset, syntax: str, **kwargs) -> bytes:
    pixels = ds.pixel_array
    ds.compress(syntax, pixels, **kwargs)
    return dicom_bytes(ds)


def test_dicom_rle_decodes_to_same_pixels():
    from pydicom.uid import RLELossless
    stored = stored_ramp()
    plain = load_image(dicom_bytes(dicom_dataset(stored)))
    data = compressed(dicom_dataset(stored), RLELossless)
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_array_equal(load_image(data), plain)


def test_dicom_jpeg2000_lossless_decodes_to_same_pixels():
    from pydicom.pixels import get_encoder
    from pydicom.uid import JPEG2000Lossless
    encoder = get_encoder(JPEG2000Lossless)
    if not encoder.is_available:
        pytest.skip(f"no JPEG 2000 encoder: {encoder.missing_dependencies}")
    stored = stored_ramp(64, 64)  # OpenJPEG's default 6 resolution levels need at least 32 x 32
    data = compressed(dicom_dataset(stored), JPEG2000Lossless)
    np.testing.assert_array_equal(load_image(data), load_image(dicom_bytes(dicom_dataset(stored))))


def test_dicom_jpeg_ls_lossless_decodes_to_same_pixels():
    from pydicom.pixels import get_encoder
    from pydicom.uid import JPEGLSLossless
    encoder = get_encoder(JPEGLSLossless)
    if not encoder.is_available:
        pytest.skip(f"no JPEG-LS encoder installed: {encoder.missing_dependencies}")
    stored = stored_ramp(64, 64)
    data = compressed(dicom_dataset(stored), JPEGLSLossless)
    np.testing.assert_array_equal(load_image(data), load_image(dicom_bytes(dicom_dataset(stored))))


def test_dicom_jpeg_baseline_colour():
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit
    pixels = np.zeros((16, 24, 3), dtype=np.uint8)
    pixels[:, :12] = (220, 40, 40)
    pixels[:, 12:] = (40, 40, 220)
    ds = dicom_dataset(pixels, "RGB")
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PixelData = encapsulate([encode(Image.fromarray(pixels), "JPEG", quality=95)])
    ds["PixelData"].VR = "OB"
    out = load_image(dicom_bytes(ds))
    assert out.shape == (16, 24, 3)
    np.testing.assert_allclose(out[2:-2, 2:10], np.broadcast_to(pixels[2:-2, 2:10] / 255.0, (12, 8, 3)), atol=0.05)
    np.testing.assert_allclose(out[2:-2, 14:-2], pixels[2:-2, 14:-2] / 255.0, atol=0.05)


def test_dicom_missing_decoder_names_syntax_and_package(monkeypatch: pytest.MonkeyPatch):
    import pydicom.pixels
    from pydicom.uid import JPEG2000Lossless

    class Unavailable:
        is_available = False
    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: Unavailable())
    stored = stored_ramp()
    ds = dicom_dataset(stored)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f\xff\x51" + b"\0" * 64])
    ds["PixelData"].VR = "OB"
    with pytest.raises(ImageError, match="JPEG 2000.*pylibjpeg-openjpeg"):
        load_image(dicom_bytes(ds))


def test_dicom_unsupported_transfer_syntax():
    from pydicom.uid import MPEG2MPML
    ds = dicom_dataset(stored_ramp())
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = pydicom.encaps.encapsulate([b"\0" * 64])
    ds["PixelData"].VR = "OB"
    with pytest.raises(ImageError, match="MPEG2"):
        load_image(dicom_bytes(ds))


# --- damaged files say what they are; windows the user chooses --------------------------------------

def _jpeg() -> bytes:
    return encode(Image.fromarray(RNG.integers(0, 256, (64, 64), dtype=np.uint8)), "JPEG")


def _png() -> bytes:
    return encode(Image.fromarray(RNG.integers(0, 256, (64, 64), dtype=np.uint8)), "PNG")


@pytest.mark.parametrize("make, message", [
    (lambda: _jpeg()[:300] + np.random.default_rng(2).bytes(2000), "this JPEG file is damaged"),
    (lambda: _jpeg()[:2] + b"\0" * 200, "this JPEG file is damaged"),
    (lambda: _jpeg()[: len(_jpeg()) // 2], "this JPEG file is damaged or truncated"),
    (lambda: _png()[:8] + b"\0" * 100, "this PNG file is damaged"),
    (lambda: _png()[:40] + bytes([_png()[40] ^ 0xFF]) + _png()[41:], "this PNG file is damaged"),
    (lambda: _png()[: len(_png()) // 2], "this PNG file is damaged or truncated"),
    (lambda: b"GIF89a" + b"\0" * 50, "GIF images are not supported"),
])
def test_damaged_jpeg_and_png_say_so_not_not_an_image(make, message: str):
    with pytest.raises(ImageError, match=message) as err:
        load_image(make())
    assert "not an image" not in str(err.value)


def _ct(stored: np.ndarray, **elements) -> bytes:
    ds = dicom_dataset(stored, RescaleSlope=1, RescaleIntercept=-1024, **elements)
    ds.Modality = "CT"
    return dicom_bytes(ds)


def test_a_chosen_window_replaces_the_files_and_changes_the_model_input():
    import densenet
    from densenet.images import WINDOW_PRESETS, Window
    from densenet.preprocess import XRAY

    stored = stored_ramp(32, 128) // 16  # 0 .. 4095 -> -1024 .. 3071 HU
    data = _ct(stored, WindowCenter=40, WindowWidth=400)
    default = load_image(data)
    np.testing.assert_allclose(default, linear_window(stored - 1024.0, 40, 400), atol=1e-5)
    lung = load_image(data, window="lung")
    np.testing.assert_allclose(lung, linear_window(stored - 1024.0, -600, 1500), atol=1e-5)
    assert load_image(data, window=(-600, 1500)).tobytes() == lung.tobytes()
    assert load_image(data, window=WINDOW_PRESETS["bone"]).mean() != pytest.approx(lung.mean())
    # what the model sees follows the window
    x_default, x_lung = densenet.preprocess(default, XRAY), densenet.preprocess(lung, XRAY)
    assert not torch_allclose(x_default, x_lung)
    with pytest.raises(ValueError, match="window width must be at least 1"):
        Window(0, 0)
    with pytest.raises(ValueError, match="unknown window preset 'brain'"):
        load_image(data, window="brain")


def torch_allclose(a, b) -> bool:
    import torch

    return bool(torch.allclose(a, b))


def test_window_overrides_a_voi_lut_and_inverts_monochrome1():
    stored = stored_ramp(8, 64) // 16
    ds = dicom_dataset(stored, PhotometricInterpretation="MONOCHROME1", WindowCenter=2000, WindowWidth=4000)
    out = load_image(dicom_bytes(ds), window=(1000, 500))
    np.testing.assert_allclose(out, 1.0 - linear_window(stored.astype(float), 1000, 500), atol=1e-5)


def test_window_is_ignored_for_non_dicom_images():
    data = _png()
    assert load_image(data, window="lung").tobytes() == load_image(data).tobytes()


def test_dicom_info_reads_the_default_window_and_range():
    from densenet.images import WINDOW_PRESETS, dicom_info

    stored = stored_ramp(8, 64) // 16
    info = dicom_info(_ct(stored, WindowCenter=[40, -600], WindowWidth=[400, 1500],
                          WindowCenterWidthExplanation=["SOFT", "LUNG"]))
    assert info.modality == "CT" and info.units == "HU" and info.monochrome
    assert (info.window.centre, info.window.width, info.window.name) == (40, 400, "SOFT")
    assert [w.name for w in info.windows] == ["SOFT", "LUNG"]
    assert info.value_range == (-1024.0, float(stored.max()) - 1024.0)
    assert info.presets == WINDOW_PRESETS and not info.has_voi_lut
    assert dicom_info(_png()) is None
    plain = dicom_info(dicom_bytes(dicom_dataset(stored)))
    assert plain.window is None and plain.presets == {} and plain.units == ""


def test_dicom_info_of_the_bundled_ct_sample():
    from densenet.images import dicom_info

    path = Path(__file__).resolve().parents[1] / "assets" / "samples" / "pydicom_CT_small.dcm"
    info = dicom_info(path)
    assert info.modality == "CT" and info.window is None and info.value_range[0] < 0 < info.value_range[1]
    assert load_image(path, window="mediastinum").shape == load_image(path).shape
