"""The C++ library (cpp/) against trtbuild's Python, on this CPU host: no GPU, no TensorRT library.

* ``trtbuild::prepost`` is built with CMake once per session; ``trtbuild-postprocess`` (its CPU tool) letterboxes real
  photos, a video and synthetic val images, and decodes the reference model's raw outputs saved from ONNX Runtime:
  its tensors must equal Python's letterbox bit for bit and its JSON lines ``trtbuild infer``'s (same count, boxes
  within 0.5 px, scores within 1e-5; the figures are printed at the end of the run).
* The TensorRT-facing sources (``trtbuild::detector``, ``trtbuild-detect``) are compiled, not linked, against the
  public TensorRT headers of 10.3, 10.16 and 11.1 (``../shared/third_party/tensorrt-headers``, or
  ``$TRTBUILD_TRT_HEADERS``), and a test checks that this compile check fails on calls a release lacks.
* ``find_package(trtbuild)`` from a separate project against the installed library; bad inputs of the tool.

Marker ``cpp``: skipped only where cmake, a C++ compiler or OpenCV's / nlohmann-json's development files are absent
(``.ci/run`` installs them). The engine + sidecar the tool reads are real: TensorRT-RTX builds them here (``rtx``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from trtbuild.config import BuildConfig, NmsConfig
from trtbuild.cuda.probe import CudaProbe
from trtbuild.layout import sidecar_path
from trtbuild.runtime.open import open_runner
from trtbuild.stages.nms import nms_stage
from trtbuild.stages.simplify import simplify
from trtbuild.tasks.infer import run_infer
from trtbuild.trt.builder import build
from trtbuild.trt.compat import TensorRTInfo, tensorrt_info
from trtbuild.trt.host import Host
from trtbuild.trt.sidecar import check_engine_host
from trtbuild.vision.decode import postprocess
from trtbuild.vision.io import iter_sources
from trtbuild.vision.letterbox import letterbox

from ..helpers import extra_photos, skimage_photos, ultralytics_photos

REPO = Path(__file__).resolve().parents[2]
CPP = REPO / "cpp"
HEADER_SETS = ("10.3", "10.16", "11.1")
BOX_TOL, SCORE_TOL = 0.5, 1e-5  # the bounds; the figures recorded show how far inside them C++ lands


def _missing_cpp_reason() -> str | None:
    for tool, how in (("cmake", "apt-get install cmake"), ("c++", "apt-get install g++"),
                      ("pkg-config", "apt-get install pkg-config")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed ({how}; .ci/run installs it)"
    for pkg, apt in (("opencv4", "libopencv-dev"), ("nlohmann_json", "nlohmann-json3-dev")):
        if subprocess.run(["pkg-config", "--exists", pkg]).returncode != 0:
            return f"{pkg}'s development files are not installed (apt-get install {apt}; .ci/run installs them)"
    return None


pytestmark = [pytest.mark.cpp, pytest.mark.skipif(bool(_missing_cpp_reason()), reason=_missing_cpp_reason() or "")]


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def _check(cmd, **kw) -> subprocess.CompletedProcess:
    res = _run(cmd, **kw)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res


def _configure(src: Path, build_dir: Path, *defs: str) -> subprocess.CompletedProcess:
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    return _check(["cmake", "-S", src, "-B", build_dir, *gen, "-DCMAKE_BUILD_TYPE=Release", *defs])


# ---- builds ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def cpp_build(tmp_path_factory):
    """cpp/ configured and built (Release) once per session: trtbuild::prepost and trtbuild-postprocess."""
    build_dir = tmp_path_factory.mktemp("cpp-build")
    t0 = time.perf_counter()
    configured = _configure(CPP, build_dir)
    _check(["cmake", "--build", build_dir, "-j", "2"])
    return {"dir": build_dir, "configure": configured.stdout, "seconds": time.perf_counter() - t0,
            "detector": "building trtbuild::detector" in configured.stdout}


@pytest.fixture(scope="session")
def tool(cpp_build) -> Path:
    return cpp_build["dir"] / "trtbuild-postprocess"


def test_cmake_builds_prepost_and_the_cpu_tool_and_says_why_not_the_detector(cpp_build, tool, record_property):
    assert (cpp_build["dir"] / "libtrtbuild_prepost.a").is_file() and os.access(tool, os.X_OK)
    if cpp_build["detector"]:  # a TensorRT host: the detector and its tool are built too
        assert (cpp_build["dir"] / "trtbuild-detect").is_file()
    else:  # no TensorRT library (this CI host): the detector is skipped with the reason, never half-built
        assert "TensorRT (NvInfer.h and libnvinfer; set TENSORRT_ROOT" in cpp_build["configure"]
        assert "building trtbuild::prepost and trtbuild-postprocess only" in cpp_build["configure"]
        assert not (cpp_build["dir"] / "trtbuild-detect").exists()
    res = _check([tool, "--help"])
    assert res.stdout.startswith("Usage: trtbuild-postprocess ENGINE SOURCE")
    record_property("figures", f"CMake configure + build of trtbuild::prepost: {cpp_build['seconds']:.1f} s")


# ---- a real engine + sidecar, photos, saved ONNX Runtime outputs -------------------------------------------------

@pytest.fixture(scope="module")
def reference(shapes_onnx, tmp_path_factory) -> dict:
    """The reference model simplified, its FP32 TensorRT-RTX engine + sidecar (real, built here) and its NMS ONNX."""
    root = tmp_path_factory.mktemp("cpp-reference")
    shutil.copy(shapes_onnx, root / "shapes.onnx")
    sim = simplify(root / "shapes.onnx").output
    host = Host(TensorRTInfo(False, error="not installed"), CudaProbe(error="no CUDA driver"),
                rtx=tensorrt_info("rtx"))
    engine = build(sim, BuildConfig(precision="fp32", flavor="rtx", out_dir=root), host=host, progress=False).output
    return {"sim": sim, "engine": engine, "nms": nms_stage(sim, NmsConfig()).output}


@pytest.fixture(scope="module")
def photos(tmp_path_factory, shapes_val_data) -> Path:
    """One folder: ultralytics' and scikit-image's photos (colour, grayscale, RGBA), crops of odd sizes (a 17×333 strip,
    a 23×31 tile that is scaled up, an exact 640×640 that is not resized), a 16-bit PNG, and 8 synthetic val images."""
    folder = tmp_path_factory.mktemp("cpp-photos")
    for p in ultralytics_photos() + skimage_photos() + extra_photos():
        shutil.copy(p, folder / p.name)
    bus = cv2.imread(str(ultralytics_photos()[0]))
    zidane = cv2.imread(str(ultralytics_photos()[1]))
    cv2.imwrite(str(folder / "strip_17x333.png"), bus[200:217, 100:433])
    cv2.imwrite(str(folder / "tile_23x31.png"), zidane[300:323, 600:631])
    cv2.imwrite(str(folder / "exact_640.png"), bus[:640, :640])
    chelsea = cv2.imread(str(folder / "chelsea.png"))
    cv2.imwrite(str(folder / "deep16.png"), chelsea.astype(np.uint16) * 257)
    val = sorted((shapes_val_data.parent / "images" / "val").glob("*.jpg"))[:8]
    assert len(val) == 8
    for p in val:
        shutil.copy(p, folder / f"val_{p.name}")
    return folder


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A 4-frame MJPG video made from a photo (OpenCV's own AVI writer)."""
    path = tmp_path_factory.mktemp("cpp-video") / "clip.avi"
    bus = cv2.imread(str(ultralytics_photos()[0]))
    frames = [cv2.resize(bus, (480, 360)), cv2.resize(bus[100:700, 50:760], (480, 360)),
              cv2.flip(cv2.resize(bus, (480, 360)), 1), cv2.resize(bus[300:, :], (480, 360))]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (480, 360))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def _save_outputs(model: Path, source: Path, out: Path) -> list[np.ndarray]:
    """ONNX Runtime's outputs of ``model`` for every frame of ``source`` (trtbuild's letterbox), saved to ``out``."""
    outputs, inputs = [], []
    with open_runner(model) as runner:
        hw = runner.info.run_hw(None)
        for _, frame in iter_sources(source):
            x, _ = letterbox(frame, hw)
            inputs.append(x)
            outputs.append(runner.infer(x[None])[0][0])
    np.stack(outputs).astype(np.float32).tofile(out)
    return inputs


def _tool_lines(tool, engine, source, *args) -> list[dict]:
    res = _check([tool, engine, source, *args])
    return [json.loads(line) for line in res.stdout.splitlines()]


def _compare(cpp: list[dict], py: list[dict]) -> dict:
    """Per-frame agreement of two JSON-line lists: counts, max box and score differences, identical lines."""
    assert [(r["path"], r.get("frame"), r["width"], r["height"]) for r in cpp] == \
           [(r["path"], r.get("frame"), r["width"], r["height"]) for r in py]
    fig = {"frames": len(py), "detections": 0, "count_equal": 0, "max_box": 0.0, "max_score": 0.0, "identical": 0,
           "rows": []}
    for c, p in zip(cpp, py):
        fig["detections"] += len(p["detections"])
        name = Path(p["path"]).name + (f"#{p['frame']}" if "frame" in p else "")
        row = f"{name} {len(c['detections'])}/{len(p['detections'])}"
        if len(c["detections"]) != len(p["detections"]):
            fig["rows"].append(row + " COUNT DIFFERS")
            continue
        fig["count_equal"] += 1
        fig["identical"] += c == {k: p[k] for k in c}  # the Python line's stream fields (timing) aside
        box = score = 0.0
        if p["detections"]:
            cb, pb = (np.array([d["box"] for d in r["detections"]]) for r in (c, p))
            cs, ps = (np.array([d["score"] for d in r["detections"]]) for r in (c, p))
            box, score = float(np.abs(cb - pb).max()), float(np.abs(cs - ps).max())
            fig["max_box"], fig["max_score"] = max(fig["max_box"], box), max(fig["max_score"], score)
            assert [d["class_id"] for d in c["detections"]] == [d["class_id"] for d in p["detections"]]
            assert [d["class_name"] for d in c["detections"]] == [d["class_name"] for d in p["detections"]]
        fig["rows"].append(f"{row} box {box:.3g} score {score:.3g}")
    return fig


def _figures_text(label: str, fig: dict, per_frame: bool = False) -> str:
    """The parity figures; ``per_frame``: also one row per frame (name, C++/Python counts, max box and score diff)."""
    text = (f"{label}: {fig['frames']} frames, {fig['detections']} detections; count equal on "
            f"{fig['count_equal']}/{fig['frames']}, max |box diff| {fig['max_box']:.3g} px, max |score diff| "
            f"{fig['max_score']:.3g}, JSON lines identical {fig['identical']}/{fig['frames']}")
    return text + "".join(f"\n    {row}" for row in fig["rows"]) if per_frame else text


@pytest.mark.rtx
@pytest.mark.parametrize("source", ["photos", "video"])
def test_letterbox_and_detections_equal_python(tool, reference, photos, video, source, tmp_path, record_property):
    src = photos if source == "photos" else video
    raw, dump = tmp_path / "raw.bin", tmp_path / "input.bin"
    py_inputs = _save_outputs(reference["sim"], src, raw)
    cpp = _tool_lines(tool, reference["engine"], src, "--raw", raw, "--dump-input", dump)
    # letterbox: the same OpenCV resize, split and float32 x/255 table on both sides, so bit for bit
    cpp_inputs = np.fromfile(dump, np.float32).reshape(len(py_inputs), *py_inputs[0].shape)
    max_in = max(float(np.abs(a - b).max()) for a, b in zip(cpp_inputs, py_inputs))
    assert all(np.array_equal(a, b) for a, b in zip(cpp_inputs, py_inputs)), f"max letterbox diff {max_in}"
    # detections: trtbuild infer on the same ONNX (whose outputs the tool decoded)
    py = run_infer(reference["sim"], src)["records"]
    fig = _compare(cpp, py)
    record_property("figures", f"letterbox bit-exact on {len(py_inputs)} frames (max diff {max_in}); " +
                    _figures_text(f"raw head, {source}", fig, per_frame=True))
    assert fig["count_equal"] == fig["frames"] and fig["detections"] > (20 if source == "photos" else 4)
    assert fig["max_box"] <= BOX_TOL and fig["max_score"] <= SCORE_TOL


@pytest.mark.rtx
def test_end_to_end_output_equals_trtbuild_infer(tool, reference, photos, tmp_path, record_property):
    """[B, max_det, 6] read as postprocess_end2end reads it. TensorRT-RTX cannot build NMS, so the sidecar is the real
    engine's with its output and end2end fields set to the NMS ONNX's (the engine file still matches it)."""
    import onnx

    out = onnx.load(str(reference["nms"]), load_external_data=False).graph.output[0]
    dims = [d.dim_value for d in out.type.tensor_type.shape.dim]
    engine = tmp_path / "shapes.fp32-nms.engine"
    shutil.copy(reference["engine"], engine)
    meta = json.loads(sidecar_path(reference["engine"]).read_text())
    meta["io"][1] = {"name": out.name, "mode": "output", "shape": dims, "dtype": "float32"}
    meta.update(end2end=True, outputs={engine.name: meta["outputs"][reference["engine"].name]}, engine=engine.name)
    meta["options"]["nms"] = "onnx"
    sidecar_path(engine).write_text(json.dumps(meta))
    raw = tmp_path / "raw.bin"
    _save_outputs(reference["nms"], photos, raw)
    fig = _compare(_tool_lines(tool, engine, photos, "--raw", raw), run_infer(reference["nms"], photos)["records"])
    record_property("figures", _figures_text("end-to-end [1, 300, 6]", fig, per_frame=True))
    assert fig["count_equal"] == fig["frames"] and fig["detections"] > 20
    assert fig["max_box"] <= BOX_TOL and fig["max_score"] <= SCORE_TOL


@pytest.mark.rtx
@pytest.mark.parametrize("options", [
    {"conf": 0.001, "iou": 0.7, "multi_label": True},  # trtbuild eval's protocol: thousands of boxes into NMS
    {"conf": 0.01, "iou": 0.45, "agnostic": True},
    {"conf": 0.05, "iou": 0.3, "max_det": 5},
], ids=["eval-multi-label", "agnostic", "max-det"])
def test_nms_options_equal_python_postprocess(tool, reference, photos, options, tmp_path, record_property):
    raw = tmp_path / "raw.bin"
    _save_outputs(reference["sim"], photos, raw)
    frames = list(iter_sources(photos))
    outputs = np.fromfile(raw, np.float32).reshape(len(frames), 12, -1)
    py = []
    for (path, frame), out in zip(frames, outputs):
        info = letterbox(frame, 640)[1]
        det = postprocess(out[None], [info], **options)[0]
        py.append({"path": path, "width": frame.shape[1], "height": frame.shape[0],
                   "detections": det.to_list({int(k): v for k, v in json.loads(
                       sidecar_path(reference["engine"]).read_text())["names"].items()})})
    flags = [f for k, v in options.items() for f in
             ([f"--{k.replace('_', '-')}"] if v is True else [f"--{k.replace('_', '-')}", str(v)])]
    fig = _compare(_tool_lines(tool, reference["engine"], photos, "--raw", raw, *flags), py)
    record_property("figures", _figures_text(f"NMS {options}", fig))
    assert fig["count_equal"] == fig["frames"] and fig["detections"] > len(frames)
    assert fig["max_box"] <= BOX_TOL and fig["max_score"] <= SCORE_TOL


# ---- the sidecar check: this very engine, and the host rule of trtbuild/trt/sidecar.py ---------------------------

def _variant(reference, tmp_path, **changes) -> Path:
    """A copy of the real engine whose sidecar says it was built with ``changes`` (e.g. standard TensorRT on a GPU)."""
    engine = tmp_path / reference["engine"].name
    shutil.copy(reference["engine"], engine)
    meta = json.loads(sidecar_path(reference["engine"]).read_text())
    meta.update(changes)
    sidecar_path(engine).write_text(json.dumps(meta))
    return engine


STANDARD = {"flavor": "tensorrt", "tensorrt_version": "10.3.0.30", "target_compute_capabilities": None,
            "gpu": {"name": "Orin", "compute_capability": "8.7", "integrated": True}}


@pytest.mark.rtx
@pytest.mark.parametrize("changes, host", [
    ({}, ("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9")),
    ({}, ("1.8.0.1", "NVIDIA GeForce RTX 4090", "8.9")),
    ({}, ("1.7.1.116", "NVIDIA H100 80GB HBM3", "9.0")),
    (STANDARD, ("10.3.0.30", "Orin", "8.7")),
    (STANDARD, ("10.16.0.72", "NVIDIA Thor", "11.0")),
    ({**STANDARD, "hardware_compat": "ampere+"}, ("10.3.0.30", "Tesla T4", "7.5")),
    ({**STANDARD, "hardware_compat": "same-cc"}, ("10.3.0.30", "Jetson AGX Orin", "8.7")),
    ({**STANDARD, "version_compatible": True, "options": {"precision": "fp16", "version_compatible": True,
                                                          "max_batch": 8, "opt_level": 5, "flavor": "tensorrt"}},
     ("11.1.0.106", "Orin", "8.7")),
], ids=["rtx-fits", "rtx-version", "rtx-cc", "jetson-fits", "jetson-other", "ampere+", "same-cc", "version-compat"])
def test_host_check_refuses_as_python_does(tool, reference, tmp_path, changes, host):
    engine = _variant(reference, tmp_path, **changes)
    res = _run([tool, engine, ultralytics_photos()[0], "--dump-input", tmp_path / "x.bin", "--host", *host])
    meta = json.loads(sidecar_path(engine).read_text())
    try:
        check_engine_host(engine, meta, *host)
        expected = None
    except Exception as exc:  # EngineMismatchError
        expected = f"error: {exc}"
    if expected is None:
        assert res.returncode == 0, res.stderr
    else:
        assert res.returncode == 1 and res.stderr.strip() == expected and res.stdout == ""


# ---- bad inputs: one line, non-zero exit, no crash -----------------------------------------------------------------

def _bad_inputs(reference, tmp: Path) -> dict:
    photo = ultralytics_photos()[0]
    nosidecar = tmp / "lonely.engine"
    shutil.copy(reference["engine"], nosidecar)
    truncated = _variant(reference, tmp / "t", **{})
    sidecar_path(truncated).write_text(sidecar_path(truncated).read_text()[:200])
    noio = tmp / "noio" / "shapes.engine"
    noio.parent.mkdir()
    shutil.copy(reference["engine"], noio)
    meta = json.loads(sidecar_path(reference["engine"]).read_text())
    sidecar_path(noio).write_text(json.dumps({k: v for k, v in meta.items() if k != "io"}))
    other = tmp / "other" / "shapes.engine"  # another engine's sidecar: a different size
    other.parent.mkdir()
    other.write_bytes(reference["engine"].read_bytes()[:-4096])
    shutil.copy(sidecar_path(reference["engine"]), sidecar_path(other))
    flipped = tmp / "flipped" / "shapes.engine"  # the same size, other bytes: only the sha256 tells
    flipped.parent.mkdir()
    data = bytearray(reference["engine"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    shutil.copy(sidecar_path(reference["engine"]), sidecar_path(flipped))
    broken = tmp / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a JPEG")
    short = tmp / "short.bin"
    np.zeros(12 * 100, np.float32).tofile(short)
    engine = reference["engine"]
    return {  # name: (args, exit code, what the line must say)
        "missing-engine": ([tmp / "nope.engine", photo], 2, "no such engine file"),
        "missing-sidecar": ([nosidecar, photo], 2, "no sidecar lonely.engine.json beside it"),
        "invalid-json": ([truncated, photo], 2, "not valid JSON"),
        "not-a-sidecar": ([noio, photo], 2, 'no "io": not a trtbuild engine sidecar'),
        "another-engine-size": ([other, photo], 2, "describes another engine"),
        "another-engine-sha256": ([flipped, photo], 2, "sha256"),
        "unreadable-image": ([engine, broken], 2, f"cannot read image {broken}: the file is unreadable"),
        "missing-image": ([engine, tmp / "nope.jpg"], 2, "no such file or folder"),
        "raw-wrong-size": ([engine, photo, "--raw", short], 2, "is not a whole number of float32 outputs"),
        "bad-option": ([engine, photo, "--conf", "2"], 2, "'--conf': must lie in [0, 1]"),
    }


@pytest.mark.rtx
def test_bad_inputs_give_one_error_line_and_exit_code(tool, reference, tmp_path):
    (tmp_path / "t").mkdir()
    for name, (args, code, says) in _bad_inputs(reference, tmp_path).items():
        res = _run([tool, *args, "--dump-input", tmp_path / f"{name}.bin"])
        lines = res.stderr.strip().splitlines()
        assert res.returncode == code, f"{name}: exit {res.returncode}, {res.stderr}"
        assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], f"{name}: {res.stderr}"
        assert res.stdout == "" and not (tmp_path / f"{name}.bin").exists(), name  # nothing written on failure
        file_arg = str(args[1] if name in ("unreadable-image", "missing-image") else args[0])
        if name not in ("bad-option", "raw-wrong-size"):
            assert file_arg in lines[0] or Path(file_arg).name in lines[0], f"{name}: names no file: {lines[0]}"


def test_an_existing_file_is_never_replaced_without_overwrite(tool, reference, tmp_path):
    """trtbuild's rule for the files its tools write: an existing file (the user's: the C++ tools keep no record) or
    an input is refused in one line, before the work, and left as it was; --overwrite replaces the file."""
    photo = ultralytics_photos()[0]
    mine = tmp_path / "mine.bin"
    mine.write_bytes(b"the user's file")
    res = _run([tool, reference["engine"], photo, "--dump-input", mine])
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "exists" in lines[0] and "--overwrite" in lines[0], res.stderr
    assert mine.read_bytes() == b"the user's file" and sorted(p.name for p in tmp_path.iterdir()) == ["mine.bin"]
    copy = tmp_path / photo.name
    shutil.copy(photo, copy)
    res = _run([tool, reference["engine"], copy, "--dump-input", copy, "--overwrite"])
    assert res.returncode == 2 and "the same file as the input" in res.stderr, res.stderr
    assert copy.read_bytes() == photo.read_bytes()
    res = _run([tool, reference["engine"], photo, "--dump-input", mine, "--overwrite"])
    assert res.returncode == 0, res.stderr
    assert mine.stat().st_size == 3 * 640 * 640 * 4


# ---- find_package(trtbuild) from another project -----------------------------------------------------------------

@pytest.mark.rtx
def test_installed_package_links_into_an_application(cpp_build, reference, tmp_path):
    prefix = tmp_path / "prefix"
    _check(["cmake", "--install", cpp_build["dir"], "--prefix", prefix])
    assert (prefix / "lib" / "cmake" / "trtbuild" / "trtbuildConfig.cmake").is_file()
    assert (prefix / "include" / "trtbuild" / "letterbox.hpp").is_file()
    # installed exactly where it was built (a TensorRT host)
    assert (prefix / "include" / "trtbuild" / "detector.hpp").exists() == cpp_build["detector"]
    app = tmp_path / "app"
    _configure(CPP / "examples" / "consumer", app, f"-DCMAKE_PREFIX_PATH={prefix}")
    _check(["cmake", "--build", app])
    photo = ultralytics_photos()[1]
    if cpp_build["detector"]:  # linked against trtbuild::detector; running it needs a standard engine (the trt test)
        assert os.access(app / "consumer", os.X_OK)
        return
    res = _check([app / "consumer", reference["engine"], photo])
    info = letterbox(cv2.imread(str(photo)), 640)[1]
    assert res.stdout.split() == ["classes", "8", "input", "images", "640x640", "unpad",
                                  f"{info.unpad_shape[0]}x{info.unpad_shape[1]}", "pad",
                                  f"{info.pad[0]:g},{info.pad[1]:g}", "first", f"{114 / 255:.6g}"]
    # the detector component is not in this install, and asking for it fails at configure time
    need = tmp_path / "need"
    need.mkdir()
    (need / "CMakeLists.txt").write_text("cmake_minimum_required(VERSION 3.18)\nproject(n CXX)\n"
                                         "find_package(trtbuild REQUIRED COMPONENTS detector)\n")
    res = _run(["cmake", "-S", need, "-B", need / "b", f"-DCMAKE_PREFIX_PATH={prefix}"])
    assert res.returncode != 0 and "detector" in res.stdout + res.stderr


# ---- the TensorRT-facing sources against three releases' headers ---------------------------------------------------

def _header_root() -> Path | None:
    env = os.environ.get("TRTBUILD_TRT_HEADERS")
    for root in ([Path(env)] if env else []) + [REPO.parent / "shared" / "third_party" / "tensorrt-headers",
                                                 Path("/work/shared/third_party/tensorrt-headers")]:
        if (root / HEADER_SETS[0] / "include" / "NvInfer.h").is_file():
            return root
    return None


def _cuda_include() -> Path | None:
    """cuda_runtime_api.h + crt/ from the nvidia-cuda-runtime / nvidia-cuda-crt wheels (cu13 or cu12 layout)."""
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    for root in roots:
        for inc in [root / "cu13" / "include", root / "cuda_runtime" / "include", *root.glob("*/include")]:
            if (inc / "cuda_runtime_api.h").is_file() and (inc / "crt" / "host_defines.h").is_file():
                return inc
    return None


def _trt_skip() -> str | None:
    if _header_root() is None:
        return ("no TensorRT headers: set TRTBUILD_TRT_HEADERS or provide ../shared/third_party/tensorrt-headers "
                "(this repository's CI has them)")
    if _cuda_include() is None:
        return "no CUDA runtime headers: pip install 'cuda-toolkit[cudart,crt]' (the dev extra)"
    return None


_compiled: dict[str, Path] = {}


def _compile_check(version: str, root: Path) -> Path:
    """Configure cpp/ in compile-check mode against one release's headers and build the detector objects."""
    if version not in _compiled:
        build_dir = root / f"trt-{version}"
        _configure(CPP, build_dir, "-DTRTBUILD_TRT_COMPILE_CHECK=ON", "-DTRTBUILD_BUILD_TOOLS=OFF",
                   f"-DTENSORRT_ROOT={_header_root() / version}", f"-DTRTBUILD_CUDA_INCLUDE_DIR={_cuda_include()}",
                   "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON")
        _check(["cmake", "--build", build_dir, "--target", "trtbuild_trt_check", "-j", "2"])
        _compiled[version] = build_dir
    return _compiled[version]


@pytest.fixture(scope="module")
def check_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cpp-trt-check")


@pytest.mark.skipif(bool(_trt_skip()), reason=_trt_skip() or "")
@pytest.mark.parametrize("version", HEADER_SETS)
def test_tensorrt_sources_compile_against_release_headers(version, check_root, record_property):
    t0 = time.perf_counter()
    build_dir = _compile_check(version, check_root)
    objects = sorted(p.name for p in build_dir.rglob("*.o"))
    assert objects == ["detector.cpp.o", "trtbuild_detect.cpp.o"], objects
    record_property("figures", f"detector.cpp + trtbuild_detect.cpp compiled against TensorRT {version} headers "
                               f"({time.perf_counter() - t0:.1f} s)")


# Calls a release lacks, swapped into copies of the sources: (what, file, old, new, {release: error or None}).
BITES = [
    ("enqueueV2 (gone since 10.0)", "detector.cpp", "context->enqueueV3(stream)",
     "context->enqueueV2(nullptr, stream, nullptr)",
     {v: "has no member named 'enqueueV2'" for v in HEADER_SETS}),
    ("ICudaEngine::getDeviceMemorySize (deprecated in 10.1, gone in 11)", "detector.cpp",
     "compat::deviceMemoryBytes(*impl_->engine->engine)", "impl_->engine->engine->getDeviceMemorySize()",
     {"10.3": "is deprecated", "10.16": "is deprecated", "11.1": "has no member named 'getDeviceMemorySize'"}),
    ("BuilderFlag::kFP16 (deprecated by 10.16, gone in 11)", "detector.cpp", "namespace trtbuild {\nnamespace fs",
     "static const auto kBite = nvinfer1::BuilderFlag::kFP16;\nnamespace trtbuild {\nnamespace fs",
     {"10.3": None, "10.16": "is deprecated", "11.1": "'kFP16' is not a member of 'nvinfer1::BuilderFlag'"}),
    ("DataType::kFP4 without its version guard (absent from 10.3)", "trt_compat.hpp",
     "#if TRTBUILD_TRT_VERSION_AT_LEAST(10, 8)\n    case DataType::kFP4: return \"float4\";\n#endif",
     "    case DataType::kFP4: return \"float4\";",
     {"10.3": "'kFP4' is not a member of 'nvinfer1::DataType'", "10.16": None, "11.1": None}),
]


@pytest.mark.skipif(bool(_trt_skip()), reason=_trt_skip() or "")
def test_compile_check_fails_on_calls_a_release_lacks(check_root, tmp_path, record_property):
    """The compile check bites: each swap above fails exactly against the releases that lack the call (the same compile
    command as the check, from compile_commands.json, on modified copies of src/detector.cpp + trt_compat.hpp)."""
    seen = []
    for what, file, old, new, expect in BITES:
        for version in HEADER_SETS:
            build_dir = _compile_check(version, check_root)
            entry = next(e for e in json.loads((build_dir / "compile_commands.json").read_text())
                         if e["file"].endswith("src/detector.cpp"))
            work = tmp_path / f"{len(seen)}"
            work.mkdir()
            for name in ("detector.cpp", "trt_compat.hpp"):
                text = (CPP / "src" / name).read_text()
                if name == file:
                    assert old in text, f"{name} no longer contains {old!r}: update BITES"
                    text = text.replace(old, new)
                (work / name).write_text(text)
            cmd = entry["command"].replace(entry["file"], str(work / "detector.cpp"))
            cmd = re.sub(r"-o \S+", "-fsyntax-only", cmd)
            res = subprocess.run(cmd, shell=True, cwd=entry["directory"], capture_output=True, text=True,
                                 env={**os.environ, "LC_ALL": "C"})  # ASCII quotes in the compiler's messages
            error = next((ln for ln in res.stderr.splitlines() if "error:" in ln), None)
            seen.append(f"{what} vs {version}: " + ("compiles" if res.returncode == 0 else error.split("error: ")[1]))
            if expect[version] is None:
                assert res.returncode == 0, f"{what} vs {version}: {res.stderr}"
            else:
                assert res.returncode != 0 and expect[version] in res.stderr, f"{what} vs {version}: {res.stderr}"
    record_property("figures", "compile check bites:\n    " + "\n    ".join(seen))


# ---- on a TensorRT GPU host (marker trt: skipped here, no TensorRT library or GPU) --------------------------------

@pytest.mark.trt
def test_detector_on_a_tensorrt_host_equals_trtbuild_infer(cpp_build, shapes_onnx, photos, tmp_path, record_property):
    """trtbuild-detect (the C++ Detector, CPU letterbox into pinned memory) against trtbuild's Python runtime with its
    CPU letterbox, on a standard FP16 engine of the reference model; also with a CUDA graph. Needs TensorRT's C++
    headers and libraries (TENSORRT_ROOT if they are not in the system paths) besides the Python module."""
    from trtbuild.tasks.predictor import Predictor

    if not cpp_build["detector"]:
        pytest.skip("TensorRT's C++ headers/libraries were not found by CMake: set TENSORRT_ROOT")
    shutil.copy(shapes_onnx, tmp_path / "shapes.onnx")
    engine = build(simplify(tmp_path / "shapes.onnx").output, BuildConfig(precision="fp16", out_dir=tmp_path),
                   progress=False).output
    py = []
    with open_runner(engine) as runner:
        predictor = Predictor(runner, gpu_preprocess=False)
        for path, frame in iter_sources(photos):
            py.append({"path": path, "width": frame.shape[1], "height": frame.shape[0],
                       "detections": predictor.predict([frame])[0].to_list(predictor.names)})
    for extra in ([], ["--cuda-graph"]):
        res = _check([cpp_build["dir"] / "trtbuild-detect", engine, photos, *extra])
        fig = _compare([json.loads(line) for line in res.stdout.splitlines()], py)
        record_property("figures", _figures_text(f"trtbuild-detect {' '.join(extra)} vs Python runtime", fig) +
                        f"; {res.stderr.strip().splitlines()[-1]}")
        assert fig["count_equal"] == fig["frames"] and fig["max_box"] <= BOX_TOL and fig["max_score"] <= SCORE_TOL


def test_docs_name_real_tool_flags_and_make_variables():
    """Every trtbuild-detect / trtbuild-postprocess line of docs/cpp.md uses flags its tool's usage text lists, and
    every `make cpp` line variables the Makefile's cpp target reads."""
    docs = (REPO / "docs" / "cpp.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", docs, re.S)
    lines = [ln.split(" #")[0].strip() for block in blocks for ln in block.splitlines()]
    makefile = (REPO / "Makefile").read_text()
    checked = 0
    for line in lines:
        tool = re.match(r"\S*(trtbuild-(?:detect|postprocess)) ", line)
        if tool:
            source = (CPP / "tools" / f"{tool.group(1).replace('-', '_')}.cpp").read_text()
            usage = source.split('R"(')[1].split(')"')[0]
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", line):
                assert re.search(rf"(?<![\w-]){flag}\b", usage), (line, flag)
            checked += 1
        elif line.startswith("make cpp"):
            recipe = makefile.split("\ncpp:")[1].split("\n\n")[0]
            for var in re.findall(r"([A-Z_]+)=", line):  # STRICT reaches the recipe as STRICT_FLAG
                assert f"$({var})" in recipe or f"$({var}_FLAG)" in recipe, (line, var)
            checked += 1
    assert checked >= 7, checked
