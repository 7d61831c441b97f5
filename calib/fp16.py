"""FP16 as a float16 ONNX: a strongly typed TensorRT build then runs FP16 kernels.

Float32 stays where it matters: the uint8 input's conversion and normalisation (pixel values
up to 255 and their products), every Resize (scales must be float32), and the final logit
resize and ArgMax.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from calib.graph_parts import postprocessing_nodes, preprocessing_nodes


def convert_fp16(src: Path, dst: Path) -> tuple[Path, list[str]]:
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    keep = preprocessing_nodes(model) + postprocessing_nodes(model)
    converted = float16.convert_float_to_float16(
        model, keep_io_types=True, node_block_list=keep,
        op_block_list=[*float16.DEFAULT_OP_BLOCK_LIST, "ArgMax"])
    # The converter leaves stale float32 value_info on tensors it re-typed at block boundaries,
    # which ONNX Runtime then refuses; types are re-derived from the nodes instead.
    del converted.graph.value_info[:]
    converted = onnx.shape_inference.infer_shapes(converted)
    onnx.save(converted, str(dst))
    return dst, keep
