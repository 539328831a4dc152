"""The overlay back to DICOM: a Secondary Capture that pydicom reads with the source's identifiers."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

import densenet
from densenet import render
from densenet.dicom_export import explanation_note, secondary_capture
from densenet.preprocess import XRAY

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


def source_dicom(rows: int = 300, cols: int = 240) -> bytes:
    """A small DX film with patient, study and frame-of-reference identifiers."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = DX_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "PID-0042", "19700101", "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20261201", "101500", "ACC-7", "S1"
    ds.ReferringPhysicianName, ds.Modality = "", "DX"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    yy, xx = np.mgrid[0:rows, 0:cols]
    ds.PixelData = ((yy * 7 + xx * 3) % 4096).astype(np.uint16).tobytes()
    ds.preamble = b"\0" * 128
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def test_export_is_valid_dicom_with_carried_identifiers_and_new_uids():
    data = source_dicom()
    src = pydicom.dcmread(io.BytesIO(data))
    image = densenet.load_image(data)
    heat = np.zeros((7, 7), np.float32)
    heat[2, 3] = 1.0
    rgb = render.overlay_original(image, heat, XRAY)  # full resolution: 300 x 240
    note = explanation_note("Grad-CAM", layer="features.norm5", target="Cardiomegaly", model="chexnet.safetensors")
    out = secondary_capture(rgb, data, note=note)

    ds = pydicom.dcmread(io.BytesIO(out))  # a Part 10 file: preamble, DICM, file meta
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPClassUID == SecondaryCaptureImageStorage
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                    "StudyDate", "AccessionNumber", "StudyID", "FrameOfReferenceUID"):
        assert ds[keyword].value == src[keyword].value, keyword
    assert ds.SOPInstanceUID != src.SOPInstanceUID and ds.SeriesInstanceUID != src.SeriesInstanceUID
    assert pydicom.uid.UID(ds.SOPInstanceUID).is_valid and pydicom.uid.UID(ds.SeriesInstanceUID).is_valid
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.BurnedInAnnotation == "YES" and ds.ConversionType == "WSD"
    assert "Explanation map (Grad-CAM" in ds.DerivationDescription and "not for diagnosis" in ds.ImageComments
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert (ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation) == (300, 240, 3, "RGB")
    np.testing.assert_array_equal(ds.pixel_array, rgb)
    # and the library reads it back as an image
    assert densenet.load_image(out).shape == (300, 240, 3)


def test_two_exports_of_one_source_get_distinct_uids():
    data = source_dicom(32, 32)
    rgb = np.zeros((32, 32, 3), np.uint8)
    a, b = (pydicom.dcmread(io.BytesIO(secondary_capture(rgb, data))) for _ in range(2))
    assert a.SOPInstanceUID != b.SOPInstanceUID and a.SeriesInstanceUID != b.SeriesInstanceUID
    assert a.StudyInstanceUID == b.StudyInstanceUID


def test_export_without_a_dicom_source_opens_a_new_study():
    ds = pydicom.dcmread(io.BytesIO(secondary_capture(np.full((8, 9, 3), 200, np.uint8))))
    assert pydicom.uid.UID(ds.StudyInstanceUID).is_valid and ds.PatientID == ""
    assert "SourceImageSequence" not in ds and ds.pixel_array.shape == (8, 9, 3)


@pytest.mark.parametrize("overlay, message", [
    (np.zeros((4, 4, 3), np.float32), "uint8"),
    (np.zeros((4, 4, 4), np.uint8), r"\(H, W, 3\)"),
])
def test_bad_overlays_are_refused(overlay, message):
    with pytest.raises(ValueError, match=message):
        secondary_capture(overlay)


def test_a_source_that_is_not_dicom_is_refused():
    with pytest.raises(ValueError, match="not a readable DICOM"):
        secondary_capture(np.zeros((4, 4, 3), np.uint8), b"\x89PNG not dicom")
