"""Simplify an ONNX model before import: onnxslim's shape inference, constant folding and exact fusions.

Exporters leave shape arithmetic in a graph (Shape, Gather, Cast, Ceil, ConstantOfShape... computing a
pad or a reshape target), constants behind Identity nodes and no-op casts; onnxslim folds them into
constants, so the importer sees only operators on activations. Of the libraries measured on the zoo
exports (``docs/onnx_import.md``) it and onnxsim left the least shape arithmetic, and it is pure Python.
Its Gemm fusion is left out: it turns a MatMul on a channels-last tensor into Reshape to 2-D, Gemm,
Reshape back, where the importer reads the MatMul directly as a 1x1 convolution.
"""

from __future__ import annotations

import onnx
import onnxslim

from ios_core.onnx_io.parse import OnnxImportError

SKIPPED_FUSIONS = ("FusionGemm",)


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """A simplified copy of ``model``, which is left unchanged; onnxslim's failure is an error saying so."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        return onnxslim.slim(copy, skip_fusion_patterns=list(SKIPPED_FUSIONS))
    except Exception as error:  # noqa: BLE001 -- whatever the library raises, the user gets one line
        raise OnnxImportError(
            f"simplifying the model (onnxslim) failed: {type(error).__name__}: {' '.join(str(error).split())}"
        ) from error
