"""An explanation overlay as a DICOM Secondary Capture image that a PACS viewer files with its study.

The export is a new instance in a new series of the *source's* study: the patient and study
identifiers and the frame of reference are carried over, the SOP Instance and Series UIDs are
new, the image type is ``DERIVED\\SECONDARY`` and the overlay is burned in, with a note saying that
it is an explanation map and not a diagnostic image. Written with pydicom.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

__all__ = ["SERIES_DESCRIPTION", "explanation_note", "secondary_capture"]

SERIES_DESCRIPTION = "DenseNet Explorer explanation map"

# Patient and study attributes a viewer files an instance by, copied verbatim from the source.
_CARRIED = (
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "OtherPatientIDs", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription", "FrameOfReferenceUID", "PositionReferenceIndicator",
    "Laterality", "BodyPartExamined", "PatientOrientation",
)


def explanation_note(method: str, *, layer: str | None = None, target: str | None = None,
                     model: str | None = None) -> str:
    """The sentence written into the export (at most 1024 characters, DICOM's limit for it)."""
    parts = [f"Explanation map ({method}"]
    if layer:
        parts.append(f", layer {layer}")
    if target:
        parts.append(f", for {target!r}")
    if model:
        parts.append(f", model {model}")
    parts.append(") burned in over the source image by DenseNet Explorer. "
                 "It shows where a neural network's output was sensitive, not a finding; not for diagnosis.")
    return "".join(parts)[:1024]


def _read_source(source: Dataset | str | os.PathLike | bytes | BinaryIO | None) -> Dataset | None:
    if source is None or isinstance(source, Dataset):
        return source
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            data = f.read()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        data = source.read()
    from .dicom import has_dicom_magic, may_be_raw_dicom

    force = not has_dicom_magic(data) and may_be_raw_dicom(data)  # a data set without its preamble
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=force)
    except Exception as e:  # noqa: BLE001 - pydicom raises many types on bad bytes
        raise ValueError(f"the source is not a readable DICOM file ({e})") from None
    if "StudyInstanceUID" not in ds and "SOPInstanceUID" not in ds:
        raise ValueError("the source is not a readable DICOM file (it has no study or instance UID)")
    return ds


def secondary_capture(overlay: np.ndarray, source: Dataset | str | os.PathLike | bytes | BinaryIO | None = None, *,
                      note: str | None = None, series_description: str = SERIES_DESCRIPTION,
                      series_number: int = 900, instance_number: int = 1,
                      manufacturer: str = "DenseNet Explorer") -> bytes:
    """Encode an RGB overlay as a DICOM Secondary Capture file.

    Args:
        overlay: ``(H, W, 3)`` uint8 RGB (e.g. :func:`densenet.render.overlay_original`), or
            ``(H, W)`` uint8 grey; ideally at the source's full resolution.
        source: the DICOM the overlay explains (a path, its bytes, a file or a pydicom
            ``Dataset``); its patient, study and frame of reference are carried over. ``None``
            (the image was not a DICOM): a new study with empty patient identifiers.
        note: the explanation text (:func:`explanation_note`); stored as Derivation Description
            and Image Comments.
        series_description, series_number, instance_number: how the new series is listed.
        manufacturer: the equipment that made it.

    Returns:
        The bytes of a DICOM Part 10 file (Explicit VR Little Endian).

    Raises:
        ValueError: a bad overlay, or a source that is not DICOM.
    """
    pixels = np.asarray(overlay)
    if pixels.dtype != np.uint8:
        raise ValueError(f"overlay must be uint8 (an RGB image), got dtype {pixels.dtype}")
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)) or min(pixels.shape[:2]) < 1:
        raise ValueError(f"overlay must be (H, W, 3) RGB or (H, W) grey, got shape {pixels.shape}")
    src = _read_source(source)
    note = note or explanation_note("saliency")
    now = dt.datetime.now()

    ds = Dataset()
    if src is not None:
        for keyword in _CARRIED:
            if keyword in src:
                setattr(ds, keyword, src[keyword].value)
    ds.SpecificCharacterSet = ds.get("SpecificCharacterSet") or "ISO_IR 192"
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        if keyword not in ds:  # type 2: present, empty when unknown
            setattr(ds, keyword, "")
    if "StudyInstanceUID" not in ds:
        ds.StudyInstanceUID = generate_uid()
    if "PatientOrientation" not in ds:
        ds.PatientOrientation = ""

    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.SeriesNumber = int(series_number)
    ds.InstanceNumber = int(instance_number)
    ds.SeriesDescription = series_description[:64]
    ds.ConversionType = "WSD"  # workstation
    ds.Manufacturer = manufacturer[:64]
    ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = note
    ds.ImageComments = note
    ds.BurnedInAnnotation = "YES"
    ds.LossyImageCompression = "00"
    if src is not None and "SOPInstanceUID" in src and "SOPClassUID" in src:
        ref = Dataset()
        ref.ReferencedSOPClassUID = src.SOPClassUID
        ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
        ds.SourceImageSequence = Sequence([ref])

    colour = pixels.ndim == 3
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0  # R, G, B interleaved per pixel, as numpy stores it
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()
