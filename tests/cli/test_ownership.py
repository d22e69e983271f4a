"""A user's files are sacred: every command that writes replaces or deletes only what trtbuild wrote itself
(``trtbuild/owned.py``), and a stage never builds from an intermediate made from another input (lineage).

Each case takes the sha256 of every file in the folders involved before the command and asserts after it that
every pre-existing file is byte-identical (or, where trtbuild's own earlier output may be replaced, says which).
The Ctrl-C cases send real SIGINT / SIGTERM to a real ``trtbuild infer --save`` process in the middle of writing
pictures into a folder of user files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from trtbuild import owned
from trtbuild.artifacts import write_bytes_atomic
from trtbuild.cli import cli
from trtbuild.cuda.probe import CudaProbe
from trtbuild.stages.simplify import simplify
from trtbuild.trt.compat import TensorRTInfo
from trtbuild.trt.host import Host
from trtbuild.vision.io import read_batch

from ..helpers import photo_folder, refused, ultralytics_photos

NO_TENSORRT = Host(TensorRTInfo(False, error="not installed"), CudaProbe(error="no CUDA driver"))
CHILD = Path(__file__).parents[1] / "interrupt_child.py"


def run(*args, host=NO_TENSORRT):
    return CliRunner().invoke(cli, [str(a) for a in args], obj=host)


def shas(*folders: Path) -> dict[Path, str]:
    """sha256 of every file under ``folders`` (trtbuild's own record of its files left out)."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for f in folders if f.exists() for p in sorted(f.rglob("*"))
            if p.is_file() and p.name != owned.MANIFEST}


def assert_intact(before: dict[Path, str]) -> None:
    """Every file recorded in ``before`` is still there, byte for byte."""
    changed = [p for p, sha in before.items() if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != sha]
    assert not changed, f"{len(changed)} pre-existing file(s) changed or deleted: {changed[:5]}"


@pytest.fixture(scope="module")
def model(exported_yolov8n, tmp_path_factory) -> Path:
    """The session's yolov8n (320, 80 classes), simplified, in a folder of its own."""
    folder = tmp_path_factory.mktemp("own-model")
    shutil.copyfile(exported_yolov8n, folder / "yolov8n.onnx")
    return simplify(folder / "yolov8n.onnx").output


@pytest.fixture
def photos(tmp_path) -> Path:
    return photo_folder(tmp_path / "photos")


# ------------------------------------------------------------------------------------------------ infer --save / --json
def test_infer_save_refuses_the_source_folder_and_a_folder_holding_it(model, photos, tmp_path, monkeypatch):
    before = shas(photos)
    refused(run("infer", model, photos, "--save", photos, "--quiet"), 2, "--save", "holds the source")
    refused(run("infer", model, photos / "bus.jpg", "--save", photos, "--quiet"), 2, "holds the source")
    monkeypatch.chdir(tmp_path)
    refused(run("infer", model, "photos", "--save", ".", "--quiet"), 2, "--save .", "holds the source")
    assert_intact(before)
    assert sorted(p.name for p in photos.iterdir()) == sorted(p.name for p in before)  # nothing added either


def test_annotated_pictures_never_replace_user_files_and_the_json_names_them(model, photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("bus.jpg", "zidane.jpg"):  # the user's own pictures, with the names infer would give its own
        shutil.copy(photos / "coffee.png", out / name)
    (out / "notes.txt").write_text("mine")
    before = shas(photos, out)
    res = run("infer", model, photos, "--save", out, "--json", tmp_path / "d.jsonl", "--quiet")
    assert res.exit_code == 0, res.output
    assert_intact(before)
    recs = {Path(r["path"]).name: r for r in map(json.loads, (tmp_path / "d.jsonl").read_text().splitlines())}
    assert [Path(recs[n]["saved"]).name for n in ("bus.jpg", "zidane.jpg")] == ["bus_2.jpg", "zidane_2.jpg"]
    assert all(Path(r["saved"]).is_file() and Path(r["saved"]).parent == out for r in recs.values())
    assert len(recs) == 12 and len(list(out.glob("*.jpg"))) == 14
    # a second run replaces its own pictures (unchanged since), still not the user's
    again = run("infer", model, photos, "--save", out, "--json", tmp_path / "d.jsonl", "--quiet")
    assert again.exit_code == 0, again.output
    assert_intact(before)
    assert len(list(out.glob("*.jpg"))) == 14 and not (out / "bus_3.jpg").exists()
    # one of its pictures edited by the user is theirs now: the next picture goes beside it
    (out / "bus_2.jpg").write_bytes((out / "bus_2.jpg").read_bytes() + b"edited")
    before = shas(photos, out)
    assert run("infer", model, photos / "bus.jpg", "--save", out, "--quiet").exit_code == 0
    assert_intact(before)
    assert (out / "bus_3.jpg").is_file()


def test_infer_json_refuses_inputs_and_files_it_did_not_write(model, photos, tmp_path):
    mine = tmp_path / "dets.jsonl"
    mine.write_text("my notes\n")
    before = shas(tmp_path, model.parent)
    refused(run("infer", model, photos / "bus.jpg", "--json", photos / "bus.jpg", "--quiet"), 2, "--json",
            "the same file as the input")
    refused(run("infer", model, photos, "--json", photos / "zidane.jpg", "--quiet"), 2, "same file as the input")
    refused(run("infer", model, photos / "bus.jpg", "--json", model, "--quiet"), 2, "same file as the input")
    refused(run("infer", model, photos / "bus.jpg", "--json", mine, "--quiet"), 2, str(mine),
            "not written by trtbuild", "--overwrite")
    assert_intact(before)
    ok = run("infer", model, photos / "bus.jpg", "--json", mine, "--quiet", "--overwrite")
    assert ok.exit_code == 0 and json.loads(mine.read_text().splitlines()[0])["path"].endswith("bus.jpg")
    assert run("infer", model, photos / "zidane.jpg", "--json", mine, "--quiet").exit_code == 0  # its own now


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupted_infer_save_keeps_every_user_file(model, tmp_path, sig):
    """A real signal while infer writes its 4th picture into a folder of 200 user files (many named like its
    pictures): afterwards every user file is byte-identical; what the run wrote before the signal is kept, whole
    (an interrupt is how a live run ends) and recorded as trtbuild's, with its JSON lines complete; nothing is
    half-written; the rerun replaces only its own pictures."""
    source = photo_folder(tmp_path / "source")
    out = tmp_path / "out"
    out.mkdir()
    for i in range(200):
        pic = sorted(source.iterdir())[i % 12]
        shutil.copy(pic, out / (f"{pic.stem}.jpg" if i < 12 else f"{pic.stem}_{i}.jpg"))
    before = shas(source, out)
    dets = tmp_path / "dets.jsonl"
    done = subprocess.run([sys.executable, str(CHILD), sig, "open", ".jpg.", "4", "0", "--", "infer", str(model),
                           str(source), "--save", str(out), "--json", str(dets), "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert f"interrupt-test: {sig}" in done.stderr and done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert_intact(before)
    new = sorted(p for p in out.iterdir() if p not in before and p.name != owned.MANIFEST)
    assert 3 <= len(new) < 12 and all(p.name.endswith("_2.jpg") for p in new), new  # stopped midway, beside
    assert all(owned.is_ours(p) and cv2.imread(str(p)) is not None for p in new)  # whole pictures, recorded
    lines = [json.loads(line) for line in dets.read_text().splitlines()]  # every line complete JSON
    assert {Path(r["saved"]) for r in lines} <= set(new) and len(lines) >= len(new) - 1
    assert not [p for p in tmp_path.rglob(".*tmp*")]  # no temporary file left
    res = run("infer", model, source, "--save", out, "--quiet")
    assert res.exit_code == 0, res.output
    assert_intact(before)
    assert len(list(out.iterdir())) == 200 + 12 + 1  # its 12 pictures beside them (the earlier ones replaced)


# ------------------------------------------------------------------------------------------------ synth
def test_synth_replaces_only_what_its_record_lists(tmp_path):
    ds = tmp_path / "ds"
    for split in ("val",):  # a user's numbered data set, named exactly like synth's files
        (ds / "images" / split).mkdir(parents=True)
        (ds / "labels" / split).mkdir(parents=True)
        for i in range(3):
            shutil.copy(ultralytics_photos()[i % 2], ds / "images" / split / f"{i:06d}.jpg")
            (ds / "labels" / split / f"{i:06d}.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (ds / "data.yaml").write_text("names: [person]\n")
    before = shas(ds)
    refused(run("synth", "--out", ds, "--train", "0", "--val", "2", "--quiet"), 2, "not written by synth")
    refused(run("synth", "--out", ds, "--train", "0", "--val", "2", "--quiet", "--overwrite"), 2,
            "not written by synth")
    assert_intact(before)
    assert sorted(p for p in ds.rglob("*") if p.is_file()) == sorted(before)  # no file added, no record made

    own = tmp_path / "own"
    assert run("synth", "--out", own, "--train", "1", "--val", "3", "--quiet").exit_code == 0
    (own / "notes.md").write_text("mine, beside the data set")
    assert run("synth", "--out", own, "--train", "0", "--val", "2", "--quiet").exit_code == 0  # its own: replaced
    assert sorted(p.name for p in (own / "images" / "val").iterdir()) == ["000000.jpg", "000001.jpg"]
    assert not list((own / "images" / "train").iterdir())
    assert (own / "notes.md").read_text() == "mine, beside the data set"
    (own / "labels" / "val" / "000001.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # edited by the user: theirs now
    before = shas(own)
    refused(run("synth", "--out", own, "--train", "0", "--val", "2", "--quiet"), 2, "000001.txt",
            "changed since synth wrote it", "--overwrite")
    assert_intact(before)
    assert run("synth", "--out", own, "--train", "0", "--val", "2", "--quiet", "--overwrite").exit_code == 0
    assert (own / "notes.md").read_text() == "mine, beside the data set"


# ------------------------------------------------------------------------------------------------ simplify / stages
def test_an_output_that_is_an_input_is_refused(model, tmp_path):
    onnx = tmp_path / "m.onnx"
    shutil.copyfile(model.with_name("yolov8n.onnx"), onnx)
    before = shas(tmp_path)
    refused(run("simplify", onnx, "--out", onnx), 2, "--out", "the same file as the input")
    refused(run("simplify", onnx, "--out", onnx, "--overwrite"), 2, "the same file as the input")
    assert_intact(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    # after a real simplify (an up-to-date report), --out naming the input is still refused, not "up to date"
    assert run("simplify", onnx).exit_code == 0
    before = shas(tmp_path)
    refused(run("simplify", onnx, "--out", onnx), 2, "--out", "the same file as the input")
    assert_intact(before)


def test_a_stage_output_the_user_put_there_is_not_replaced(model, tmp_path):
    onnx = tmp_path / "m.onnx"
    shutil.copyfile(model.with_name("yolov8n.onnx"), onnx)
    (tmp_path / "m.sim.onnx").write_bytes(b"the user's own simplified model")
    before = shas(tmp_path)
    refused(run("simplify", onnx), 2, "m.sim.onnx", "not written by trtbuild", "--overwrite")
    assert_intact(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.sim.onnx"]  # refused before the work
    assert run("simplify", onnx, "--overwrite").exit_code == 0
    assert (tmp_path / "m.sim.onnx").read_bytes() != b"the user's own simplified model"
    assert owned.is_ours(tmp_path / "m.sim.onnx") and owned.is_ours(tmp_path / "m.simplify.json")


def test_atomic_writes_replace_only_their_own_files(tmp_path):
    mine = tmp_path / "report.json"
    mine.write_text("{}")
    with pytest.raises(owned.NotOursError, match="not written by trtbuild; pass overwrite=True"):
        write_bytes_atomic(mine, b"x")
    assert mine.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["report.json"]
    write_bytes_atomic(tmp_path / "new.json", b"1")
    write_bytes_atomic(tmp_path / "new.json", b"2")  # its own: replaced
    assert (tmp_path / "new.json").read_bytes() == b"2" and owned.is_ours(tmp_path / "new.json")
    (tmp_path / "new.json").write_bytes(b"3")  # changed by someone else: no longer trtbuild's
    with pytest.raises(owned.NotOursError, match="changed since trtbuild wrote it"):
        write_bytes_atomic(tmp_path / "new.json", b"4")
    assert not owned.is_ours(mine) and (tmp_path / "new.json").read_bytes() == b"3"


# ------------------------------------------------------------------------------------------------ stale stages
def _outputs(onnx_path: Path, batch: np.ndarray) -> np.ndarray:
    """The model's raw outputs for each image of ``batch`` (run one by one: the export has a static batch of 1)."""
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {sess.get_inputs()[0].name: image[None]})[0] for image in batch])


@pytest.mark.rtx
def test_a_stage_never_builds_from_an_intermediate_of_another_model(tmp_path):
    """Model A exported, simplified, made FP16; then model B (other weights, same name and shape) exported and
    simplified over it. ``build NAME.sim.onnx --precision fp16`` must not use A's NAME.fp16.onnx: it refuses in one
    line; ``trtbuild engine`` remakes the FP16 model, whose outputs are then B's (compared in ONNX Runtime)."""
    out = tmp_path / "engines"
    calib = photo_folder(tmp_path / "calib")
    common = ["--imgsz", "320", "--out-dir", out, "--name", "m", "--calib", calib, "--flavor", "rtx"]
    a = tmp_path / "a.pt"
    b = tmp_path / "b.pt"
    _checkpoint(a, seed=0)
    _checkpoint(b, seed=1)
    first = run("engine", "--model", a, *common, host=None)
    assert first.exit_code == 0, first.output
    batch = read_batch(ultralytics_photos(), (320, 320))
    out_a = _outputs(out / "m.fp16.onnx", batch)

    for cmd in (["export", b, "--imgsz", "320", "--out-dir", out, "--name", "m"], ["simplify", out / "m.onnx"]):
        res = run(*cmd)
        assert res.exit_code == 0, res.output
    before = shas(out)
    stale = run("build", out / "m.sim.onnx", "--precision", "fp16", "--flavor", "rtx", "--out-dir", out, host=None)
    refused(stale, 2, "m.fp16.onnx: not made from", "m.sim.onnx as it is now", "(`trtbuild engine`, --precision fp16")
    assert_intact(before)

    again = run("engine", "--model", b, *common, host=None)
    assert again.exit_code == 0, again.output
    out_b_sim, out_fp16 = _outputs(out / "m.sim.onnx", batch), _outputs(out / "m.fp16.onnx", batch)
    fp16_error = np.abs(out_fp16 - out_b_sim).max()  # FP16 rounding of B
    print(f"max |A - B| {np.abs(out_a - out_b_sim).max():.3f}, FP16 vs B {fp16_error:.3f}, "
          f"FP16 vs A {np.abs(out_fp16 - out_a).max():.3f}")
    assert np.abs(out_fp16 - out_a).max() > 10 * fp16_error  # the FP16 model is B's, not A's
    sidecar = json.loads((out / "m.fp16.rtx.engine.json").read_text())
    assert sidecar["lineage"]["onnx"]["sha256"] == hashlib.sha256((out / "m.fp16.onnx").read_bytes()).hexdigest()
    fp16_report = json.loads((out / "m.fp16.json").read_text())
    assert fp16_report["lineage"]["model"]["sha256"] == hashlib.sha256((out / "m.sim.onnx").read_bytes()).hexdigest()


def _checkpoint(path: Path, seed: int) -> None:
    """The reference model with its weights perturbed by ``seed`` (what a retrained model of the same shape looks
    like to trtbuild: same name, same graph, other weights); seed 0 leaves them as they are."""
    import torch
    from ultralytics import YOLO

    from ..conftest import SHAPES_MODEL

    yolo = YOLO(SHAPES_MODEL)
    if seed:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in yolo.model.parameters():
                p.add_(0.1 * p.std().nan_to_num() * torch.randn(p.shape, generator=gen))
    yolo.save(str(path))


# ------------------------------------------------------------------------------------------------ deploy
@pytest.mark.skipif(not __import__("importlib").util.find_spec("tritonclient"),
                    reason="tritonclient is not installed (the 'triton' extra)")
def test_deploy_force_replaces_only_its_own_model_folders(model, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "other" / "1").mkdir(parents=True)  # another model of the user's, and notes
    (repo / "other" / "config.pbtxt").write_text('name: "other"\n')
    (repo / "NOTES.md").write_text("my repository")
    before = shas(repo, model.parent)
    deploy = ["deploy", "triton", model, "--out", repo, "--backend", "python", "--name", "det"]
    assert run(*deploy).exit_code == 0
    assert_intact(before)
    dirs = ["det", "det_e2e", "det_postprocess", "det_preprocess"]
    assert sorted(p.name for p in repo.iterdir()) == sorted(["NOTES.md", "other", *dirs, "trtbuild-deploy.json",
                                                            owned.MANIFEST])
    refused(run(*deploy), 2, "already holds a model det/", "--force")
    res = run(*deploy, "--force", "--max-det", "100")  # its own folders, unchanged: replaced
    assert res.exit_code == 0, res.output
    assert_intact(before)
    assert 'string_value: "100"' in (repo / "det_postprocess" / "config.pbtxt").read_text()
    (repo / "det" / "my-notes.txt").write_text("mine")  # a user's file inside a model folder of trtbuild's
    before = shas(repo, model.parent)
    refused(run(*deploy, "--force"), 2, "det/my-notes.txt: was not written by trtbuild", "--overwrite")
    assert_intact(before)
    # a second model beside the first: the record lists both
    assert run("deploy", "triton", model, "--out", repo, "--backend", "python", "--name", "det2").exit_code == 0
    assert set(json.loads((repo / "trtbuild-deploy.json").read_text())["deployments"]) == {"det", "det2"}
    assert_intact({p: sha for p, sha in before.items() if p.name != "trtbuild-deploy.json"})  # that one is its own


@pytest.mark.skipif(not __import__("importlib").util.find_spec("tritonclient"),
                    reason="tritonclient is not installed (the 'triton' extra)")
def test_deploy_out_may_be_dot_but_never_the_models_folder(model, tmp_path, monkeypatch):
    before = shas(model.parent)
    refused(run("deploy", "triton", model, "--out", model.parent, "--backend", "python"), 2, "--out",
            "holds the model being deployed")
    assert_intact(before)
    assert sorted(p for p in model.parent.iterdir() if p.is_file() and p.name != owned.MANIFEST) == sorted(before)
    here = tmp_path / "served"
    here.mkdir()
    monkeypatch.chdir(here)
    res = run("deploy", "triton", model, "--out", ".", "--backend", "python")
    assert res.exit_code == 0, res.output
    assert (here / "yolov8n" / "1" / "model.onnx").read_bytes() == model.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left beside it


def test_clean_deletes_only_what_trtbuild_wrote(model, tmp_path):
    out = tmp_path / "engines"
    out.mkdir()
    shutil.copyfile(model.with_name("yolov8n.onnx"), out / "m.onnx")  # the user's own model
    (out / "README.md").write_text("mine")
    assert run("simplify", out / "m.onnx").exit_code == 0
    assert run("synth", "--out", out / "data", "--train", "1", "--val", "1", "--quiet").exit_code == 0
    (out / "data" / "labels" / "val" / "000000.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # edited: the user's now
    before = shas(out)
    res = run("clean", out)
    assert res.exit_code == 0 and "1 kept, changed since" in res.output, res.output
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != owned.MANIFEST)
    assert left == ["README.md", "data/labels/val/000000.txt", "m.onnx"]
    assert_intact({p: sha for p, sha in before.items() if str(p.relative_to(out)) in left})
