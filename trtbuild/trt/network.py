"""An ONNX file parsed into a TensorRT network of either flavor: the first half of a build, and all of ``check``.

Parsing needs no GPU with either flavor, so on a CPU host with TensorRT-RTX this is a real TensorRT's verdict on
trtbuild's ONNX files (which nodes it cannot import, how many layers it makes, which Q/DQ pairs it accepts).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BuildError
from .buildspec import parser_error_message
from .compat import LABELS, trt_module
from .logger import make_logger

if TYPE_CHECKING:  # the string annotations below name TensorRT types (the API check follows them)
    import tensorrt as trt


@dataclass
class Parsed:
    """A parsed network with the builder and logger that made it (keep them alive together)."""

    builder: object
    network: object
    logger: object
    parser: object = None  # the network refers to the parser's weights: keep it alive as long as the network
    errors: list[dict] = field(default_factory=list)  # {desc, node, node_name, op, code} per parser error


def parse_network(source: Path, flavor: str, strongly_typed: bool = True, raise_errors: bool = True) -> Parsed:
    """Parse ``source`` with ``flavor``'s ONNX parser; BuildError naming each failing node (or, with
    ``raise_errors=False``, the errors in ``Parsed.errors``)."""
    trt = trt_module(flavor)
    logger = make_logger(flavor)
    if flavor == "tensorrt":
        trt.init_libnvinfer_plugins(logger, "")  # EfficientNMS_TRT (--nms efficient) and friends
    builder: trt.Builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network: trt.INetworkDefinition = builder.create_network(flags)
    parser: trt.OnnxParser = trt.OnnxParser(network, logger)
    parsed = Parsed(builder, network, logger, parser)
    if parser.parse_from_file(str(source)):
        return parsed
    for i in range(parser.num_errors):
        e: trt.ParserError = parser.get_error(i)
        parsed.errors.append({"desc": e.desc(), "node": e.node(), "node_name": e.node_name(),
                              "op": e.node_operator(), "code": str(e.code())})
    parsed.errors = parsed.errors or [{"desc": "; ".join(logger.errors) or "unknown"}]
    if raise_errors:
        raise BuildError(parser_error_message(source, parsed.errors, LABELS[flavor]))
    return parsed


def network_io(network: "trt.INetworkDefinition", flavor: str) -> list[dict]:
    """The network's inputs and outputs as the sidecar lists them (what the engine will have), without building."""
    trt = trt_module(flavor)
    out = []
    for mode, count, get in (("input", network.num_inputs, network.get_input),
                             ("output", network.num_outputs, network.get_output)):
        for i in range(count):
            tensor: trt.ITensor = get(i)
            out.append({"name": tensor.name, "mode": mode, "shape": [int(d) for d in tensor.shape],
                        "dtype": str(trt.nptype(tensor.dtype).__name__)})
    return out


def layer_types(network: "trt.INetworkDefinition") -> Counter:
    """``Counter`` of the network's layer types (``LayerType.CONVOLUTION`` → "CONVOLUTION")."""
    return Counter(str(network.get_layer(i).type).rsplit(".", 1)[-1] for i in range(network.num_layers))
