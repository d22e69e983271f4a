"""A client of a deployed ensemble (``NAME_e2e``) over HTTP or gRPC, through ``tritonclient``.

The URL's scheme picks the protocol: ``http://host:8000`` or ``grpc://host:8001`` (no scheme: port 8001 is gRPC,
any other HTTP). The ensemble's own config says the class names and the thresholds its postprocess applies, so a
client never guesses them. Every failure is one ``ServerError`` line naming the URL: no server there, no such
model, the server stopped answering, or the request was refused (with the server's reason).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from ..errors import DependencyMissingError, InputError, ServerError, ServerGoneError
from ..vision.decode import Detections
from .triton_config import E2E, TRITON_HINT

PROTOCOLS = ("http", "grpc")


@dataclass(frozen=True)
class Endpoint:
    protocol: str  # "http" / "grpc"
    address: str  # host:port, as tritonclient takes it

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.address}"


def parse_url(url: str) -> Endpoint:
    """``http://h:p``, ``grpc://h:p`` or ``h:p`` (8001 → gRPC, else HTTP) → Endpoint; InputError otherwise."""
    text = url if "://" in url else f"//{url}"
    parts = urlsplit(text)
    scheme = parts.scheme or None
    try:
        port = parts.port
    except ValueError:
        port = None
    if scheme not in (None, *PROTOCOLS) or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise InputError(f"triton={url!r}: expected a server address such as grpc://localhost:8001 or "
                         "http://localhost:8000", param="triton")
    protocol = scheme or ("grpc" if port == 8001 else "http")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return Endpoint(protocol, f"{host}:{port}")


def _modules(protocol: str):
    try:
        if protocol == "grpc":
            import tritonclient.grpc as client
        else:
            import tritonclient.http as client
        from tritonclient.utils import InferenceServerException
    except ImportError:
        raise DependencyMissingError(f"tritonclient is not installed: {TRITON_HINT}") from None
    return client, InferenceServerException


class TritonClient:
    """One connection to the server at ``url`` serving the ensemble of ``model`` (``NAME`` or ``NAME_e2e``).

    ``detect(blobs)`` sends encoded images (JPEG, PNG, … bytes) in one request and returns one ``Detections`` per
    image, in the image's own pixels; ``names``, ``conf``, ``iou``, ``max_det`` and ``max_batch`` come from the
    ensemble's config. Not thread-safe: give each thread its own client.
    """

    def __init__(self, url: str, model: str, timeout: float = 60.0):
        self.endpoint = parse_url(url)
        self.url = self.endpoint.url
        self.module, self.exception = _modules(self.endpoint.protocol)
        self.timeout = timeout
        grpc = self.endpoint.protocol == "grpc"
        try:
            self.client = (self.module.InferenceServerClient(self.endpoint.address) if grpc else
                           self.module.InferenceServerClient(self.endpoint.address, connection_timeout=timeout,
                                                             network_timeout=timeout))
        except Exception as exc:  # noqa: BLE001 - tritonclient raises several kinds for a bad address
            raise ServerError(f"{self.url}: cannot open a Triton client ({exc})") from None
        self.model = model if model.endswith(E2E) else model + E2E
        self._call(self.client.is_server_live, what="is the server running?")
        if not self._call(self.client.is_model_ready, self.model):
            raise ServerError(f"{self.url}: no ready model {self.model!r} (models there: {self._models()}); "
                              "deploy one there with `trtbuild deploy triton`")
        config = self.model_config(self.model)
        params = {k: json.loads(v["string_value"]) for k, v in config.get("parameters", {}).items()}
        if "detector" not in params:
            raise ServerError(f"{self.url}: {self.model} is not an ensemble written by `trtbuild deploy triton` "
                              "(its config has no detector parameters)")
        self.detector = params["detector"]
        self.names = {int(k): v for k, v in params["names"].items()}
        self.conf, self.iou, self.max_det = float(params["conf"]), float(params["iou"]), int(params["max_det"])
        self.imgsz = tuple(params["imgsz"])
        self.max_batch = int(config.get("max_batch_size", 0)) or 1

    def _call(self, fn, *args, what: str = "", **kwargs):
        """``fn(*args)``; every failure → one ServerError naming the URL (and the server's reason)."""
        try:
            return fn(*args, **kwargs)
        except self.exception as exc:
            message = exc.message() if hasattr(exc, "message") and exc.message() else str(exc)
            status = str(exc.status() or "") if hasattr(exc, "status") else ""
            if "UNAVAILABLE" in status or "connect" in message.lower() or "unavailable" in message.lower():
                raise ServerGoneError(f"{self.url}: no Triton server answers ({message.strip()}){'; ' + what if what else ''}"
                                  ) from None
            raise ServerError(f"{self.url}: Triton refused the request: {message.strip()}") from None
        except (OSError, EOFError) as exc:  # HTTP: connection refused / reset, server gone
            raise ServerGoneError(f"{self.url}: no Triton server answers ({exc.__class__.__name__}: {exc})"
                              f"{'; ' + what if what else ''}") from None

    def _models(self) -> str:
        try:
            index = self.client.get_model_repository_index(**({"as_json": True} if self._grpc else {}))
        except Exception:  # noqa: BLE001 - only for the message
            return "unknown"
        rows = index.get("models", []) if isinstance(index, dict) else index
        return ", ".join(sorted(r["name"] for r in rows)) or "none"

    @property
    def _grpc(self) -> bool:
        return self.endpoint.protocol == "grpc"

    def model_config(self, name: str) -> dict:
        got = self._call(self.client.get_model_config, name, **({"as_json": True} if self._grpc else {}))
        return got.get("config", got) if self._grpc else got

    def request(self, blobs: list[bytes]) -> dict[str, np.ndarray]:
        """Raw outputs of one ensemble request carrying ``blobs`` (``[n, 1]`` BYTES)."""
        data = np.empty((len(blobs), 1), dtype=object)
        data[:, 0] = blobs
        inp = self.module.InferInput("image", list(data.shape), "BYTES")
        inp.set_data_from_numpy(data)
        names = ("detections", "num_detections", "orig_size")
        outputs = [self.module.InferRequestedOutput(n) for n in names]
        timeout = {"client_timeout": self.timeout} if self._grpc else {}
        result = self._call(self.client.infer, self.model, [inp], outputs=outputs, **timeout)
        return {n: result.as_numpy(n) for n in names}

    def detect(self, blobs: list[bytes]) -> list[Detections]:
        """One request of ``len(blobs)`` encoded images → their detections (original pixels, best score first)."""
        out = self.request(blobs)
        dets = out["detections"].reshape(len(blobs), -1, 6)
        counts = out["num_detections"].reshape(-1)
        return [Detections(d[:k, :4].astype(np.float32), d[:k, 4].astype(np.float32), d[:k, 5].astype(np.int64))
                for d, k in zip(dets, counts.astype(int))]

    def statistics(self, name: str | None = None) -> dict:
        """Cumulative server statistics of ``name`` (default: the detector): ``requests`` served, ``failures``,
        ``executions``, ``compute_ns`` (input + infer + output), ``queue_ns`` and ``batches``, the count of model
        executions per batch size as Triton's dynamic batcher formed them. Subtract two readings for an interval."""
        name = name or self.detector
        got = self._call(self.client.get_inference_statistics, name, **({"as_json": True} if self._grpc else {}))
        rows = got.get("model_stats", [])
        stats = rows[0] if rows else {}
        inference = stats.get("inference_stats", {})
        ns = lambda key: int(inference.get(key, {}).get("ns", 0))  # noqa: E731
        return {"model": name, "requests": int(inference.get("success", {}).get("count", 0)),
                "failures": int(inference.get("fail", {}).get("count", 0)),
                "executions": int(stats.get("execution_count", 0)),
                "compute_ns": ns("compute_input") + ns("compute_infer") + ns("compute_output"),
                "queue_ns": ns("queue"),
                "batches": dict(sorted((int(b["batch_size"]), int(b["compute_infer"].get("count", 0)))
                                       for b in stats.get("batch_stats", [])))}

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing a client whose server is gone
            pass

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
