"""INT8 quantization-aware training end to end on this CPU host: `trtbuild qat` fine-tunes the reference model with
ultralytics' quantize=8 (NVIDIA ModelOpt fake quantization) on a tiny synthetic training split, and
`trtbuild engine --model NAME-qat.pt --precision int8` keeps its Q/DQ as trained and builds a real TensorRT-RTX
engine from it. A one-epoch schedule on 16 images at 160 pixels: this proves the path, not the accuracy."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from trtbuild.cli import cli
from trtbuild.config import QatConfig
from trtbuild.cuda.probe import CudaProbe
from trtbuild.errors import InputError
from trtbuild.tasks.qat import qat
from trtbuild.trt.compat import TensorRTInfo, tensorrt_info
from trtbuild.trt.host import Host

from ..conftest import SHAPES_MODEL

pytestmark = [pytest.mark.qat, pytest.mark.rtx]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from trtbuild.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("qat")
    data = generate_dataset(root / "data", n_train=16, n_val=8, seed=3, workers=1, progress=False)
    cfg = QatConfig(data=data, epochs=1, imgsz=160, batch=8, workers=0, out_dir=root / "engines")
    return qat(SHAPES_MODEL, cfg), cfg


def test_qat_writes_a_checkpoint_with_its_quantizers_and_is_cached(trained):
    res, cfg = trained
    assert res.output == cfg.out_dir / "shapes-yolov8n-qat.pt" and res.output.is_file()
    import torch

    ckpt = torch.load(res.output, map_location="cpu", weights_only=False)
    assert ckpt.get("modelopt") and any("quantizer" in k for k in ckpt["modelopt"]["ranges"])
    assert res.report["train_images"] == 16 and res.report["config"]["epochs"] == 1
    assert qat(SHAPES_MODEL, cfg).skipped
    with pytest.raises(InputError, match="trained ultralytics .pt"):
        qat(Path("yolov8n.yaml"), cfg)


def test_qat_checkpoint_builds_an_int8_engine_with_its_own_qdq(trained, tmp_path):
    res, _ = trained
    host = Host(TensorRTInfo(False, error="not installed"), CudaProbe(error="no CUDA driver"),
                rtx=tensorrt_info("rtx"))
    out = tmp_path / "engines"
    run = CliRunner().invoke(cli, ["engine", "--model", str(res.output), "--imgsz", "320", "--precision", "int8",
                                   "--flavor", "rtx", "--out-dir", str(out)], obj=host)
    assert run.exit_code == 0, run.output
    assert "calibrate " not in run.output  # the QAT ranges are kept: nothing is calibrated
    line = next(x for x in run.output.splitlines() if x.startswith("int8 "))
    assert "57/64 convs INT8" in line and "7 Conv (float as trained)" in line, line  # ultralytics: head convs float
    model = onnx.load(str(out / "shapes-yolov8n-qat.int8.onnx"))
    n_q = sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert n_q > 57 and f"{n_q}/{n_q} Q/DQ pairs accepted" in run.output
    engine = out / "shapes-yolov8n-qat.int8.rtx.engine"
    assert engine.read_bytes()[:4] == b"vtrt" and f"→ {engine} (" in run.output
