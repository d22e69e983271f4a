"""Triton Inference Server, for real: ``trtbuild deploy triton`` writes a model repository, a real ``tritonserver``
(2.51, from the nvidia-pytriton wheel that ``make install`` unpacks into ``.venv/triton``) serves its CPU variant
on loopback ports, and ``tritonclient`` talks to it over HTTP and gRPC.

The served model is yolov8n.yaml with BatchNorm recalibrated on the test photos (random weights whose scores depend
on the image, so photos give detections), exported by ultralytics with dynamic batch, height and width at 320.
Marker ``triton``: skipped only where the kit or tritonclient is missing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from trtbuild.cli import cli
from trtbuild.config import DeployConfig
from trtbuild.errors import InputError, ServerError
from trtbuild.serve.triton_client import TritonClient, parse_url
from trtbuild.serve.triton_config import parse
from trtbuild.serve.triton_server import TritonServer
from trtbuild.stages.simplify import simplify
from trtbuild.tasks.bench_report import write_bench_report
from trtbuild.tasks.bench_triton import batch_histogram_text, run_bench_triton
from trtbuild.tasks.deploy import deploy_triton
from trtbuild.tasks.remote import TritonPredictor

from ..helpers import export_calibrated_model, photos, skimage_photos, ultralytics_photos

pytestmark = pytest.mark.triton
NAME = "det"


@pytest.fixture(scope="module")
def served_onnx(tmp_path_factory) -> Path:
    """The export, simplified by trtbuild (onnxsim resolves the head's channel count the dynamic export leaves
    symbolic), as `make engine` does before deploying."""
    raw = export_calibrated_model(tmp_path_factory.mktemp("triton-model"), list(photos().values()), imgsz=320,
                                  dynamic=True)
    return simplify(raw).output


@pytest.fixture(scope="module")
def repo(served_onnx, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("triton-repo") / "model_repository"
    deploy_triton(served_onnx, DeployConfig(out=out, name=NAME, backend="python", instances=2, max_batch=8))
    return out


@pytest.fixture(scope="module")
def server(repo):
    with TritonServer(repo) as s:
        yield s


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    """bus.jpg, zidane.jpg and scikit-image's photos in one folder."""
    folder = tmp_path_factory.mktemp("triton-photos")
    for p in [*ultralytics_photos(), *skimage_photos()]:
        shutil.copy(p, folder / p.name)
    return folder


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


def _instance_stubs(server: TritonServer) -> dict[str, int]:
    """Instance name → pid of the Python-backend stub process serving it (the stub's command line names it)."""
    out = subprocess.run(["pgrep", "-a", "-g", str(server.process.pid)], capture_output=True, text=True).stdout
    stubs = {}
    for line in out.splitlines():
        pid, *argv = line.split()
        for arg in argv:
            if arg.startswith(f"{NAME}_0_"):
                stubs[arg] = int(pid)
    return stubs


def test_repository_layout_and_every_config_parses(repo):
    models = sorted(p.name for p in repo.iterdir() if p.is_dir())
    assert models == [NAME, f"{NAME}_e2e", f"{NAME}_postprocess", f"{NAME}_preprocess"]
    configs = {m: parse((repo / m / "config.pbtxt").read_text(), m) for m in models}
    det = configs[NAME]
    assert det.backend == "python" and det.max_batch_size == 8 and list(det.dynamic_batching.preferred_batch_size) == [8]
    assert det.instance_group[0].count == 2 and list(det.input[0].dims) == [3, -1, -1]
    assert [s.model_name for s in configs[f"{NAME}_e2e"].ensemble_scheduling.step] == [
        f"{NAME}_preprocess", NAME, f"{NAME}_postprocess"]
    assert (repo / NAME / "1" / "model.onnx").is_file() and (repo / NAME / "labels.txt").read_text().count("\n") == 80
    assert json.loads((repo / "trtbuild-deploy.json").read_text())["deployments"][NAME]["ensemble"] == f"{NAME}_e2e"
    assert not [p for p in repo.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_detections_through_triton_equal_trtbuild_infer(server, served_onnx, photo_dir, tmp_path, protocol):
    url = server.http_url if protocol == "http" else server.grpc_url
    local, remote = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    res = CliRunner().invoke(cli, ["infer", str(served_onnx), str(photo_dir), "--json", str(local), "--quiet"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["infer", "--triton", url, NAME, str(photo_dir), "--json", str(remote), "--quiet"])
    assert res.exit_code == 0, res.output
    want = [json.loads(line) for line in local.read_text().splitlines()]
    got = [json.loads(line) for line in remote.read_text().splitlines()]
    assert len(got) == len(want) == len(list(photo_dir.iterdir())) >= 4
    assert sum(len(r["detections"]) for r in want) >= 20  # the comparison is not between empty lists
    for w, g in zip(want, got):
        assert (g["path"], g["width"], g["height"]) == (w["path"], w["width"], w["height"])
        assert [d["class_name"] for d in g["detections"]] == [d["class_name"] for d in w["detections"]], w["path"]
        for dw, dg in zip(w["detections"], g["detections"]):
            np.testing.assert_allclose(dg["box"], dw["box"], atol=1e-3)
            assert dg["score"] == pytest.approx(dw["score"], abs=1e-5)


def test_load_eight_clients_batch_dynamically_on_both_instances(server, tmp_path):
    stubs = _instance_stubs(server)
    assert sorted(stubs) == [f"{NAME}_0_0", f"{NAME}_0_1"]
    cpu_before = {k: _cpu_seconds(pid) for k, pid in stubs.items()}
    result = run_bench_triton(server.grpc_url, NAME, concurrency=(1, 8), requests=50, warmup=2)
    cpu = {k: _cpu_seconds(pid) - cpu_before[k] for k, pid in stubs.items()}
    base, load = (e["results"][0] for e in result["models"])
    assert (base["requests"], load["requests"], base["errors"], load["errors"]) == (50, 400, 0, 0)
    hist = {int(b): n for b, n in load["batch_histogram"].items()}
    assert sum(b * n for b, n in hist.items()) == 400  # every request went through the detector once
    assert max(hist) > 1, hist  # Triton's dynamic batcher joined concurrent requests
    assert load["server"]["detector"]["failures"] == 0
    lat = load["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] and load["throughput_ips"] > 0
    assert all(seconds > 0.2 * sum(cpu.values()) for seconds in cpu.values()), cpu  # both instances did work
    files = write_bench_report(result, tmp_path, "triton")
    md = files["md"].read_text()
    assert "detector batches" in md and f"{NAME}_e2e c=8" in md and files["png"].stat().st_size > 10_000
    print("\n".join(["", *batch_histogram_text(result), *(r["text"] for r in result["ratios"]),
                     f"c=8 latency ms p50 {lat['p50']:.1f} p99 {lat['p99']:.1f}; instance CPU seconds "
                     + ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items()))]))


def test_bench_triton_cli_writes_the_report(server, tmp_path):
    res = CliRunner().invoke(cli, ["bench", "--triton", server.http_url, NAME, "--concurrency", "2", "--requests",
                                   "5", "--out-dir", str(tmp_path), "--quiet"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / f"{NAME}.triton.bench.json").read_text())
    assert report["models"][0]["results"][0]["requests"] == 10 and report["models"][0]["backend"] == "triton http"
    assert "10 requests, 0 errors" in res.output


def test_malformed_requests_get_error_responses_and_the_server_keeps_serving(server):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(parse_url(server.grpc_url).address)

    def infer(model, name, array, dtype):
        inp = grpcclient.InferInput(name, list(array.shape), dtype)
        inp.set_data_from_numpy(array)
        return client.infer(model, [inp])

    with pytest.raises(InferenceServerException, match="FP32|data.type|datatype|dtype"):
        infer(NAME, "images", np.zeros((1, 3, 320, 320), np.int32), "INT32")  # wrong dtype
    with pytest.raises(InferenceServerException, match="shape|dims"):
        infer(NAME, "images", np.zeros((1, 320, 320), np.float32), "FP32")  # wrong rank
    with pytest.raises(InferenceServerException, match="does not fit the model.*multiples of 32"):
        infer(NAME, "images", np.zeros((1, 3, 100, 100), np.float32), "FP32")  # not a multiple of the stride
    with TritonClient(server.grpc_url, NAME) as ours:
        with pytest.raises(ServerError, match="not an image OpenCV can decode"):
            ours.detect([b"these bytes are not an image"])
        bus = ultralytics_photos()[0].read_bytes()
        assert len(ours.detect([bus])) == 1  # still serving
    assert server.process.poll() is None


def test_unknown_model_and_bad_url_are_one_clean_error(server):
    with pytest.raises(ServerError, match="no ready model 'nothing_e2e'.*det_e2e"):
        TritonClient(server.http_url, "nothing")
    with pytest.raises(InputError, match="expected a server address"):
        TritonClient("ftp://localhost:1", NAME)
    with pytest.raises(InputError, match="conf=0.1: the server's postprocess drops scores below 0.25"):
        TritonPredictor(TritonClient(server.grpc_url, NAME), conf=0.1)


def test_server_killed_mid_run_is_one_clean_client_error(repo, tmp_path):
    small = tmp_path / "repo"
    deploy_triton(next(repo.glob(f"{NAME}/1/model.onnx")), DeployConfig(out=small, name=NAME, backend="python"))
    with TritonServer(small) as server:
        cmd = [str(Path(sys.executable).parent / "trtbuild"), "bench", "--triton", server.grpc_url, NAME, "--concurrency",
               "4", "--requests", "500", "--out-dir", str(tmp_path / "bench"), "--quiet"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with TritonClient(server.grpc_url, NAME) as probe:  # kill once the load is under way
            deadline = time.monotonic() + 60
            while probe.statistics()["requests"] < 20 and time.monotonic() < deadline:
                time.sleep(0.2)
        server.process.kill()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: {server.grpc_url}: no Triton server answers") and "stopped answering" in lines[0]
    assert not (tmp_path / "bench").exists()  # no half report


def _run(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("case", ["missing", "corrupt", "out_is_file", "schema", "exists", "static"])
def test_deploy_refusals_are_one_line_and_leave_nothing(served_onnx, tmp_path, case):
    work = tmp_path / "work"
    work.mkdir()
    model, out, extra = served_onnx, work / "repo", []
    if case == "missing":
        model, needle = work / "nope.onnx", "no such model file"
    elif case == "corrupt":
        model = work / "broken.onnx"
        model.write_bytes(served_onnx.read_bytes()[:5000])
        needle = "not a readable ONNX model"
    elif case == "out_is_file":
        out.write_text("x")
        needle = "--out .*is a file"
    elif case == "schema":
        extra, needle = ["--config-override", "max_batch_sise: 4"], "--config-override .*schema rejects"
    elif case == "exists":  # a repository of the user's, holding a model folder of that name
        (out / "yolov8n" / "1").mkdir(parents=True)
        (out / "yolov8n" / "config.pbtxt").write_text("mine")
        (out / "keep.txt").write_text("mine")
        needle = "already holds a model yolov8n/; pass --force"
    else:
        model = export_calibrated_model(work, list(photos().values()), imgsz=320)
        needle = "static batch 1; Triton batches requests itself"
    before = _leftovers(work)
    res = _run(["deploy", "triton", model, "--out", out, "--backend", "onnxruntime", *extra])
    assert res.exit_code != 0
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert re.search(needle, lines[0]), lines[0]
    assert _leftovers(work) == before  # no repository, no temporary folder
    if case == "exists":  # --force replaces trtbuild's own model folders only: not this one, nor anything else
        res = _run(["deploy", "triton", model, "--out", out, "--force"])
        assert res.exit_code == 2 and "yolov8n/config.pbtxt: was not written by trtbuild" in res.output, res.output
        assert (out / "keep.txt").read_text() == "mine" and (out / "yolov8n" / "config.pbtxt").read_text() == "mine"
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "yolov8n"] and _leftovers(work) == ["repo"]
