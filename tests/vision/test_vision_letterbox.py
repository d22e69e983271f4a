"""trtbuild.vision letterbox/scale_boxes against ultralytics' predictor on real photos, plus the input readers."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from trtbuild.errors import InputError
from trtbuild.vision.io import iter_sources
import trtbuild.vision.letterbox as lb_module
from trtbuild.vision.letterbox import (
    PAD_VALUE,
    LetterboxInfo,
    letterbox,
    letterbox_batch,
    letterbox_info,
    letterbox_into,
    rect_hw,
    scale_boxes,
)

SHAPES = [640, (320, 480), (480, 320)]


def _photo_paths() -> list[Path]:
    import skimage
    import ultralytics

    assets = Path(ultralytics.__file__).parent / "assets"
    data = Path(skimage.__file__).parent / "data"
    return [assets / "bus.jpg", assets / "zidane.jpg"] + [
        data / n for n in ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")
    ]


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    from skimage import io as skio

    out = {}
    for p in _photo_paths():
        if p.parent.name == "assets":
            out[p.name] = cv2.imread(str(p))  # ultralytics' own samples, read as its loader does (BGR)
        else:
            rgb = skio.imread(p)[..., :3]
            out[p.name] = np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert all(img is not None and img.ndim == 3 for img in out.values())
    return out


@pytest.fixture(scope="module")
def predictor():
    """ultralytics' real DetectionPredictor, set up on a yolov8n model (rect=False, so auto=False as for ONNX)."""
    import torch
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect import DetectionPredictor

    torch.manual_seed(0)
    model = YOLO("yolov8n.yaml").model
    pred = DetectionPredictor(overrides=dict(imgsz=640, verbose=False, device="cpu"))
    pred.setup_model(model, verbose=False)
    assert not pred.args.rect
    return pred


def _ultralytics_preprocess(predictor, img: np.ndarray, shape) -> np.ndarray:
    predictor.imgsz = (shape, shape) if isinstance(shape, int) else tuple(shape)
    return predictor.preprocess([img]).numpy()[0]


def _ultralytics_letterbox(img: np.ndarray, shape) -> np.ndarray:
    """LetterBox as configured for a static ONNX model + the predictor's uint8→float normalisation."""
    import torch
    from ultralytics.data.augment import LetterBox

    lb = LetterBox(shape, auto=False, scaleup=True, center=True, stride=32)(image=img)
    t = torch.from_numpy(lb).unsqueeze(0).permute(0, 3, 1, 2).contiguous().flip(1).float().div_(255)
    return t.numpy()[0]


@pytest.mark.parametrize("shape", SHAPES)
def test_letterbox_equals_ultralytics_predictor(photos, predictor, shape):
    for name, img in photos.items():
        ours, info = letterbox(img, shape)
        ref = _ultralytics_preprocess(predictor, img, shape)
        assert ours.dtype == np.float32 and ours.flags.c_contiguous
        assert ours.shape == ref.shape == (3, *info.new_shape), name
        np.testing.assert_array_equal(ours, ref, err_msg=f"{name} at {shape}")
        np.testing.assert_array_equal(ours, _ultralytics_letterbox(img, shape), err_msg=name)


def test_letterbox_without_resize_and_odd_sizes(predictor):
    rng = np.random.default_rng(0)
    for hw, shape in [((640, 480), 640), ((480, 640), 640), ((1, 300), 640), ((333, 1), (320, 480)), ((7, 5), 64)]:
        img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        ours, info = letterbox(img, shape)
        np.testing.assert_array_equal(ours, _ultralytics_letterbox(img, shape), err_msg=str((hw, shape)))
        assert min(info.unpad_shape) >= 1


def test_padding_and_channel_order():
    img = np.zeros((100, 200, 3), np.uint8)
    img[..., 0] = 10  # B
    img[..., 2] = 250  # R
    x, info = letterbox(img, 200)
    assert info.pad == (0.0, 50.0) and info.unpad_shape == (100, 200)
    np.testing.assert_array_equal(x[:, :50], np.float32(PAD_VALUE) / np.float32(255))
    np.testing.assert_array_equal(x[:, 150:], np.float32(PAD_VALUE) / np.float32(255))
    assert np.all(x[0, 50:150] == np.float32(250) / np.float32(255))  # channel 0 is R
    assert np.all(x[2, 50:150] == np.float32(10) / np.float32(255))


def test_info_matches_ultralytics_params():
    from ultralytics.data.augment import LetterBox

    rng = np.random.default_rng(1)
    for _ in range(500):
        h, w = (int(v) for v in rng.integers(1, 4000, 2))
        target = (int(rng.integers(32, 1300)), int(rng.integers(32, 1300)))
        p = LetterBox(target, auto=False).get_params({"img": np.empty((h, w, 3), np.uint8)})
        info = letterbox_info((h, w), target)
        assert info.unpad_shape == (p["new_unpad"][1], p["new_unpad"][0])
        assert info.pad == (p["left"], p["top"])
        assert info.new_shape == target and info.orig_shape == (h, w)
        assert p["top"] + p["bottom"] + info.unpad_shape[0] == target[0]
        assert p["left"] + p["right"] + info.unpad_shape[1] == target[1]


def test_rect_size_and_pixels_match_ultralytics_auto_letterbox(photos):
    """A model with a dynamic H and W runs a frame at ``rect_hw`` (ultralytics' ``LetterBox(auto=True)``): the same
    size on 500 random frames and targets, and the same pixels on the photos."""
    from ultralytics.data.augment import LetterBox

    rng = np.random.default_rng(2)
    for _ in range(500):
        h, w = (int(v) for v in rng.integers(1, 4000, 2))
        target = int(rng.choice([320, 480, 640, 1280]))
        out = LetterBox(target, auto=True, stride=32)(image=np.zeros((h, w, 3), np.uint8))
        assert rect_hw((h, w), target, 32) == out.shape[:2], (h, w, target)
    assert rect_hw((720, 1280), 640, 32) == (384, 640)
    for name, img in photos.items():
        hw = rect_hw(img.shape, 640, 32)
        ref = LetterBox(640, auto=True, stride=32)(image=img)
        ref = np.ascontiguousarray(ref[..., ::-1].transpose(2, 0, 1)).astype(np.float32) / np.float32(255)
        np.testing.assert_array_equal(letterbox(img, hw)[0], ref, err_msg=name)


def test_batch_writes_into_preallocated_buffer(photos):
    imgs = list(photos.values())
    out = np.full((len(imgs) + 1, 3, 320, 480), np.nan, np.float32)
    batch, infos = letterbox_batch(imgs, (320, 480), out=out)
    assert batch.shape == (len(imgs), 3, 320, 480) and np.shares_memory(batch, out)
    assert np.isnan(out[-1]).all()  # slots past the images are left alone
    for i, img in enumerate(imgs):
        single, info = letterbox(img, (320, 480))
        np.testing.assert_array_equal(batch[i], single)
        assert infos[i] == info
    fresh, _ = letterbox_batch(imgs[:2], 640)
    assert fresh.shape == (2, 3, 640, 640)


def test_batch_rejects_bad_buffers(photos):
    img = next(iter(photos.values()))
    for bad in (
        np.zeros((1, 3, 640, 640), np.float64),
        np.zeros((1, 3, 640, 320), np.float32),
        np.zeros((0, 3, 640, 640), np.float32),
        np.zeros((1, 640, 640, 3), np.float32).transpose(0, 3, 1, 2),
    ):
        with pytest.raises(ValueError):
            letterbox_batch([img], 640, out=bad)


def test_rejects_non_bgr_uint8():
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32)):
        with pytest.raises(InputError, match="BGR uint8"):
            letterbox(bad, 64)


def test_threads_do_not_share_scratch(photos):
    imgs = list(photos.values())
    expected = [letterbox(img, 640)[0] for img in imgs]
    errors = []

    def work(k):
        for _ in range(5):
            for i in range(len(imgs)):
                j = (i + k) % len(imgs)
                if not np.array_equal(letterbox(imgs[j], 640)[0], expected[j]):
                    errors.append(j)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_letterbox_into_slots_of_one_buffer(photos):
    imgs = list(photos.values())
    batch = np.full((len(imgs) + 1, 3, 320, 480), np.nan, np.float32)
    for i, img in enumerate(imgs):
        info = letterbox_into(img, (320, 480), batch[i])
        single, expected = letterbox(img, (320, 480))
        assert isinstance(info, LetterboxInfo) and info == expected
        np.testing.assert_array_equal(batch[i], single)
    assert np.isnan(batch[-1]).all()  # only the slot given is written
    # a slot that held another image (other padding) is fully overwritten
    letterbox_into(imgs[1], (320, 480), batch[0])
    np.testing.assert_array_equal(batch[0], letterbox(imgs[1], (320, 480))[0])


def test_letterbox_into_rejects_bad_slots(photos):
    img = next(iter(photos.values()))
    for bad in (
        np.zeros((3, 640, 640), np.float64),
        np.zeros((3, 640, 320), np.float32),
        np.zeros((1, 3, 640, 640), np.float32),
        np.zeros((640, 640, 3), np.float32).transpose(2, 0, 1),
        [[0.0]],
    ):
        with pytest.raises(ValueError, match="out_slot"):
            letterbox_into(img, 640, bad)
    with pytest.raises(InputError, match="BGR uint8"):
        letterbox_into(img[..., 0], 640, np.zeros((3, 640, 640), np.float32))


def test_letterbox_into_from_worker_threads(photos):
    """Several threads letterbox into different slots of one shared buffer at once, as the streaming layer does."""
    from concurrent.futures import ThreadPoolExecutor

    imgs = list(photos.values())
    expected = np.stack([letterbox(img, 640)[0] for img in imgs])
    batch = np.full((len(imgs), 3, 640, 640), np.nan, np.float32)
    rng = np.random.default_rng(4)
    with ThreadPoolExecutor(4) as pool:
        for rnd in range(4):
            order = rng.permutation(len(imgs)).tolist()  # submission order; image j → slot (j + rnd) % n
            jobs = [pool.submit(letterbox_into, imgs[j], 640, batch[(j + rnd) % len(imgs)]) for j in order]
            infos = [f.result() for f in jobs]
            assert infos == [letterbox_info(imgs[j].shape, 640) for j in order]
            for j in range(len(imgs)):
                np.testing.assert_array_equal(batch[(j + rnd) % len(imgs)], expected[j], err_msg=f"round {rnd}")


def test_lut_fallback_is_identical(photos, monkeypatch):
    """Where cv2.divide were not exact, the cv2.LUT path takes over with the very same output."""
    assert lb_module._divide_is_exact() == lb_module._EXACT_DIVIDE
    fast = {name: letterbox(img, (320, 480))[0] for name, img in photos.items()}
    monkeypatch.setattr(lb_module, "_EXACT_DIVIDE", not lb_module._EXACT_DIVIDE)
    for name, img in photos.items():
        np.testing.assert_array_equal(letterbox(img, (320, 480))[0], fast[name], err_msg=name)


def test_scale_boxes_matches_ultralytics(photos):
    import torch
    from ultralytics.utils import ops

    rng = np.random.default_rng(2)
    for img in photos.values():
        for shape in SHAPES:
            _, info = letterbox(img, shape)
            h, w = info.new_shape
            xy = rng.uniform(-50, [w + 50, h + 50], (200, 2))
            wh = rng.uniform(0, 300, (200, 2))
            boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
            ref = ops.scale_boxes((h, w), torch.from_numpy(boxes.copy()), img.shape).numpy()
            ours = scale_boxes(boxes, info)
            np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)
            assert ours is not boxes and not np.shares_memory(ours, boxes)


def test_scale_boxes_round_trip(photos):
    rng = np.random.default_rng(3)
    for img in photos.values():
        _, info = letterbox(img, (320, 480))
        h0, w0 = info.orig_shape
        x1 = rng.uniform(0, w0 - 1, 100)
        y1 = rng.uniform(0, h0 - 1, 100)
        orig = np.stack([x1, y1, rng.uniform(x1, w0), rng.uniform(y1, h0)], 1).astype(np.float32)
        gx, gy = info.gain
        fwd = orig * np.array([gx, gy, gx, gy], np.float32) + np.array(info.pad * 2, np.float32)
        back = scale_boxes(fwd, info)
        np.testing.assert_allclose(back, orig, atol=1e-3 * max(h0, w0) / 100)
        # boxes running off the letterboxed image are clipped to the original image
        outside = scale_boxes(np.array([[-100, -100, 1e4, 1e4]], np.float32), info)
        np.testing.assert_array_equal(outside, [[0, 0, w0, h0]])


# --- input reading (trtbuild.vision.io), the step before letterbox ---------------------------------------------


def test_iter_sources_image_folder_and_video(tmp_path, photos):
    imgs = list(photos.items())[:3]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name, img in imgs:
        cv2.imwrite(str(folder / (Path(name).stem + ".png")), img)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    (folder / "sub").mkdir()
    skipped = []
    got = list(iter_sources(folder, on_skip=lambda p, why: skipped.append((p.name, why))))
    assert [Path(s).name for s, _ in got] == sorted(Path(n).stem + ".png" for n, _ in imgs)
    for (sid, frame), (name, img) in zip(got, sorted(imgs, key=lambda kv: Path(kv[0]).stem)):
        np.testing.assert_array_equal(frame, img)
    assert sorted(n for n, _ in skipped) == ["broken.jpg", "notes.txt"]

    single = list(iter_sources(folder / (Path(imgs[0][0]).stem + ".png")))
    assert len(single) == 1 and single[0][1].shape == imgs[0][1].shape

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG/AVI")
    for i in range(5):
        writer.write(np.full((48, 64, 3), i * 40, np.uint8))
    writer.release()
    frames = list(iter_sources(video))
    assert [s for s, _ in frames] == [f"{video}#{i}" for i in range(5)]
    assert all(f.shape == (48, 64, 3) for _, f in frames)


def test_iter_sources_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty"):
        list(iter_sources(empty))
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("x")
    with pytest.raises(InputError, match="no image"):
        list(iter_sources(tmp_path / "txt"))
    with pytest.raises(InputError, match="no such file or folder"):
        list(iter_sources(tmp_path / "missing.jpg"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(InputError, match="cannot read image"):
        list(iter_sources(bad))
    with pytest.raises(InputError, match="neither an image"):
        list(iter_sources(tmp_path / "txt" / "a.txt"))
    badvid = tmp_path / "bad.mp4"
    badvid.write_bytes(b"nope")
    with pytest.raises(InputError):
        list(iter_sources(badvid))
