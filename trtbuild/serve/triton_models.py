"""The models Triton's Python backend runs, so a served image goes through exactly ``trtbuild infer``'s code.

``Preprocess``: encoded image bytes → ``vision.io.decode_image`` → ``letterbox_batch`` (the inference letterbox) →
the detector's input, plus each image's original size. ``Detector``: the CPU-servable model step, trtbuild's ONNX
Runtime runner on the requests' images batched together. ``Postprocess``: the raw head → ``vision.decode.postprocess``
(decode + NMS, boxes mapped back with the same ``letterbox_info``) → ``detections`` [N, 6] and ``num_detections``.

Each deployed ``model.py`` is a two-line shim that puts trtbuild on ``sys.path`` (Triton's stub does not inherit
``PYTHONPATH``) and names one of these classes. A request that cannot be served (bytes that are not an image, a
wrong shape) gets an error response; the others in the same batch are served.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..runtime.onnx import OnnxRunner
from ..vision.decode import postprocess, postprocess_end2end
from ..vision.io import decode_image
from ..vision.letterbox import letterbox_batch, letterbox_info


def _pb():
    """``triton_python_backend_utils``: it exists only inside Triton's Python backend stub."""
    import triton_python_backend_utils as pb_utils

    return pb_utils


class _Model:
    def initialize(self, args: dict) -> None:
        self.pb = _pb()
        self.config = json.loads(args["model_config"])
        self.params = {k: json.loads(v["string_value"]) for k, v in self.config.get("parameters", {}).items()}
        self.args = args

    def _error(self, message: str):
        return self.pb.InferenceResponse(output_tensors=[], error=self.pb.TritonError(message))

    def _input(self, request, name: str) -> np.ndarray:
        return self.pb.get_input_tensor_by_name(request, name).as_numpy()

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self.pb.InferenceResponse(output_tensors=self.run(request)))
            except ValueError as exc:  # a request this model cannot serve; the rest of the batch still is
                responses.append(self._error(str(exc)))
        return responses

    def finalize(self) -> None:
        pass


class Preprocess(_Model):
    """``image`` [B, 1] encoded bytes → the detector's input [B, 3, H, W] and ``orig_size`` [B, 2] (h, w)."""

    def initialize(self, args: dict) -> None:
        super().initialize(args)
        self.imgsz = tuple(self.params["imgsz"])
        self.dtype = np.dtype(self.params["dtype"])
        self.input_name = self.params["input_name"]

    def run(self, request):
        blobs = self._input(request, "image").reshape(-1)
        frames = []
        for i, blob in enumerate(blobs):
            frame = decode_image(blob if isinstance(blob, bytes) else bytes(blob))
            if frame is None:
                raise ValueError(f"image {i} of the request is not an image OpenCV can decode "
                                 "(send the encoded bytes of a JPEG, PNG, …)")
            frames.append(frame)
        batch, _ = letterbox_batch(frames, self.imgsz)
        sizes = np.array([f.shape[:2] for f in frames], np.int32)
        return [self.pb.Tensor(self.input_name, batch.astype(self.dtype, copy=False)),
                self.pb.Tensor("orig_size", sizes)]


class Detector(_Model):
    """The model step on the CPU: the requests Triton's dynamic batcher gathered, in one ONNX Runtime call per
    input shape (a dynamic-H/W model may get several), one call per image for a static-batch model. A request
    that does not fit gets its own error response; the others are served."""

    def initialize(self, args: dict) -> None:
        super().initialize(args)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.runner = OnnxRunner(version_dir / "model.onnx", threads=int(self.params.get("threads", 1)))
        self.input_name = self.runner.input_specs[0].name
        self.output_name = self.runner.output_specs[0].name
        self.want = tuple(self.runner.input_specs[0].shape[1:])
        self.stride = self.runner.info.stride

    def _check(self, x: np.ndarray) -> np.ndarray:
        fits = x.ndim == 4 and all(not isinstance(w, int) or w <= 0 or w == d for w, d in zip(self.want, x.shape[1:]))
        if not fits or x.shape[2] % self.stride or x.shape[3] % self.stride or min(x.shape[2:]) < self.stride:
            raise ValueError(f"input {self.input_name} of shape {list(x.shape)} does not fit the model's "
                             f"[B, {', '.join(str(d) for d in self.want)}] (height and width: multiples of "
                             f"{self.stride})")
        return x

    def _run(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        """One ONNX Runtime call for requests of the same shape (a static-batch model: one call per image)."""
        if self.runner.static_batch:
            return [np.concatenate([self.runner.infer(x[i : i + 1])[0] for i in range(len(x))]) for x in xs]
        joined = self.runner.infer(np.concatenate(xs))[0]
        return np.split(joined, np.cumsum([len(x) for x in xs])[:-1])

    def execute(self, requests):
        groups: dict[tuple, list[tuple[int, np.ndarray]]] = {}
        results: dict[int, object] = {}
        for i, request in enumerate(requests):
            try:
                x = self._check(self._input(request, self.input_name))
                groups.setdefault(x.shape[1:], []).append((i, x))
            except ValueError as exc:
                results[i] = self._error(str(exc))
        for members in groups.values():
            try:
                outputs = self._run([x for _, x in members])
            except Exception as exc:  # noqa: BLE001 - ONNX Runtime's failure answers these requests, not the rest
                results.update((i, self._error(f"the detector failed: {exc}")) for i, _ in members)
                continue
            for (i, _), out in zip(members, outputs):
                results[i] = self.pb.InferenceResponse(output_tensors=[self.pb.Tensor(self.output_name, out)])
        return [results[i] for i in range(len(requests))]


class Postprocess(_Model):
    """The raw head [B, 4+nc, A] and ``orig_size`` [B, 2] → ``detections`` [B, N, 6] (rows past ``num_detections``
    are zero) and ``num_detections`` [B, 1]: trtbuild's decode + NMS with the deployment's thresholds."""

    def initialize(self, args: dict) -> None:
        super().initialize(args)
        self.imgsz = tuple(self.params["imgsz"])
        self.conf, self.iou, self.max_det = float(self.params["conf"]), float(self.params["iou"]), \
            int(self.params["max_det"])
        self.end2end = bool(self.params.get("end2end"))
        self.output_name = self.params["output_name"]

    def run(self, request):
        raw = self._input(request, self.output_name).astype(np.float32, copy=False)
        sizes = self._input(request, "orig_size")
        infos = [letterbox_info((int(h), int(w)), self.imgsz) for h, w in sizes.reshape(-1, 2)]
        if self.end2end:
            dets = postprocess_end2end(raw, infos, conf=self.conf, max_det=self.max_det)
        else:
            dets = postprocess(raw, infos, conf=self.conf, iou=self.iou, max_det=self.max_det)
        n = max((len(d) for d in dets), default=0)
        out = np.zeros((len(dets), n, 6), np.float32)
        for row, d in zip(out, dets):
            k = len(d)
            row[:k, :4], row[:k, 4], row[:k, 5] = d.boxes, d.scores, d.class_ids
        counts = np.array([[len(d)] for d in dets], np.int32)
        return [self.pb.Tensor("detections", out), self.pb.Tensor("num_detections", counts)]
