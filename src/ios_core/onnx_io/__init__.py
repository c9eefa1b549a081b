"""ONNX import and export (`ios_core.onnx_io`; named so that ``import onnx`` inside it is the real package).

`load_onnx` reads a CNN into a `Network` -- the whole network as an IR graph, cut into blocks
automatically, with its float64 weights; `to_onnx` / `save_onnx` write a `Network` back, the common
input of TensorRT, ONNX Runtime, TVM and TASO. `run_network` is the float64 reference for the network.
"""

from ios_core.onnx_io.exporter import save_onnx, to_onnx
from ios_core.onnx_io.importer import BODY_OPS, IMPORT_REVISION, load_onnx, supported_operators
from ios_core.onnx_io.network import Network, run_network
from ios_core.onnx_io.parse import OnnxImportError, UnsupportedOperatorError

__all__ = [
    "BODY_OPS",
    "IMPORT_REVISION",
    "Network",
    "OnnxImportError",
    "UnsupportedOperatorError",
    "load_onnx",
    "run_network",
    "save_onnx",
    "supported_operators",
    "to_onnx",
]
