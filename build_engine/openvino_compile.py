"""ONNX -> OpenVINO IR (.xml + .bin): reading IR skips ONNX conversion at every start-up."""

from __future__ import annotations

import os
from pathlib import Path


def onnx_to_ir(onnx_path: str | Path, xml_path: str | Path) -> tuple[Path, Path]:
    """Convert without weight compression: precision is decided by the ONNX, not here.

    save_model writes the .bin beside the .xml; both go under temp names first and are renamed
    (.bin before .xml), so an interrupted build never leaves an .xml without its weights.
    """
    import openvino as ov

    xml_path = Path(xml_path)
    bin_path = xml_path.with_suffix(".bin")
    tmp_xml = xml_path.with_name(f".{xml_path.stem}.{os.getpid()}.tmp.xml")
    tmp_bin = tmp_xml.with_suffix(".bin")
    try:
        ov.save_model(ov.convert_model(str(onnx_path)), str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_bin, bin_path)
        os.replace(tmp_xml, xml_path)
    finally:
        tmp_xml.unlink(missing_ok=True)
        tmp_bin.unlink(missing_ok=True)
    return xml_path, bin_path
