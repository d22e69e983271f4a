"""Commands that hand a model to a server or another tool: ``deploy triton``, ``deploy ultralytics``, ``serve``."""

from __future__ import annotations

import signal
import time

import click

from ..config import DeployConfig, UltralyticsConfig
from ..errors import ServerGoneError
from ..serve.triton_server import TritonServer
from ..tasks.deploy import deploy_triton, deploy_ultralytics
from .common import OVERWRITE_OPTION


def _ints(ctx, param, value):
    if value is None:
        return None
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        out = ()
    if not out or min(out) < 0:
        raise click.BadParameter(f"{value!r}: expected integers separated by commas, e.g. 0,1")
    return out


@click.group("deploy")
def deploy_cmd():
    """Hand a built model to a server: a Triton model repository, or an engine ultralytics' YOLO() loads."""


@deploy_cmd.command("triton")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--out", default="model_repository", show_default=True, type=click.Path(),
              help="The model repository folder to write (tritonserver --model-repository=OUT).")
@click.option("--name", default=None, help="Model name on the server [default: the model file's base name].")
@click.option("--backend", type=click.Choice(["auto", "tensorrt", "onnxruntime", "python"]), default="auto",
              show_default=True,
              help="auto: tensorrt_plan for an engine, onnxruntime_onnx for an ONNX; python: the ONNX in trtbuild's "
                   "ONNX Runtime runner inside Triton's Python backend (serves on a CPU-only host).")
@click.option("--max-batch", default=None, type=click.IntRange(min=1),
              help="Triton's max_batch_size [default: the engine profile's max batch; 8 for an ONNX].")
@click.option("--preferred-batch", default=None, callback=_ints,
              help="Dynamic batching's preferred sizes, e.g. 4,8 [default: the profile's opt and max batch].")
@click.option("--queue-delay-us", "max_queue_delay_us", default=500, show_default=True, type=click.IntRange(min=0),
              help="How long (µs) the dynamic batcher may hold a request to fill a batch.")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(min=1),
              help="Detector instances (per GPU where --gpus is given); pre/post-processing get as many.")
@click.option("--gpus", default=None, callback=_ints, help="GPUs to place the detector on, e.g. 0,1 [default: all].")
@click.option("--cuda-graphs", is_flag=True, help="tensorrt_plan: run the engine through CUDA graphs.")
@click.option("--warmup", default=0, show_default=True, type=click.IntRange(min=0),
              help="Zero-image warm-up requests Triton sends the detector when it loads it.")
@click.option("--conf", default=0.25, show_default=True, type=click.FloatRange(0, 1),
              help="Score threshold of the served postprocess.")
@click.option("--iou", default=0.7, show_default=True, type=click.FloatRange(0, 1), help="NMS IoU threshold.")
@click.option("--max-det", default=300, show_default=True, type=click.IntRange(min=1), help="Boxes per image.")
@click.option("--config-override", default=None,
              help="A config.pbtxt fragment merged into the detector's config, e.g. 'version_policy { latest "
                   "{ num_versions: 1 } }' (checked against Triton's schema).")
@click.option("--force", is_flag=True,
              help="Replace this model's four folders if OUT already has them (nothing else in OUT is touched).")
@OVERWRITE_OPTION
def deploy_triton_cmd(model, out, name, backend, max_batch, preferred_batch, max_queue_delay_us, instances, gpus,
                      cuda_graphs, warmup, conf, iou, max_det, config_override, force, overwrite):
    """Write a Triton model repository for MODEL (a trtbuild .engine, or an .onnx).

    Four models: NAME (the detector), NAME_preprocess (encoded image bytes → trtbuild's letterbox),
    NAME_postprocess (trtbuild's decode + NMS) and the ensemble NAME_e2e chaining them: one encoded image in,
    detections [N, 6] (x1, y1, x2, y2, score, class in original pixels) out. Every config.pbtxt is checked
    against Triton's model-config schema; a failed deploy leaves no folder behind. OUT may hold other models:
    only the four folders of NAME and trtbuild-deploy.json are written.

    \b
    Examples:
      trtbuild deploy triton engines/yolov8n.fp16.engine --out model_repository --instances 2 --gpus 0,1
      trtbuild deploy triton engines/yolov8n.onnx --backend python --out model_repository   # CPU host
      trtbuild serve model_repository          # a local tritonserver (the kit make install unpacks)
      trtbuild infer --triton grpc://localhost:8001 yolov8n photos/
    """
    cfg = DeployConfig(out=out, name=name, backend=backend, max_batch=max_batch, preferred_batch=preferred_batch,
                       max_queue_delay_us=max_queue_delay_us, instances=instances, gpus=gpus,
                       cuda_graphs=cuda_graphs, warmup=warmup, conf=conf, iou=iou, max_det=max_det,
                       config_override=config_override, force=force, overwrite=overwrite)
    res = deploy_triton(model, cfg)
    r, det = res.report, res.report["detector"]
    click.echo(f"deploy    {model} → {res.output}/ ({r['backend']}; models {', '.join(r['models'])}; "
               f"max batch {det.max_batch}, preferred {','.join(map(str, det.preferred)) or '-'}, "
               f"{instances} instance(s))")
    click.echo(f"serve it: trtbuild serve {res.output}   or   tritonserver --model-repository={res.output}")
    click.echo(f"query it: trtbuild infer --triton grpc://localhost:8001 {r['ensemble'][:-4]} IMAGE")


@deploy_cmd.command("ultralytics")
@click.argument("engine", type=click.Path(dir_okay=False))
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Output engine [default: ENGINE's name with .ultralytics before the suffix].")
@click.option("--force", is_flag=True, help="Replace an existing OUT.")
@OVERWRITE_OPTION
def deploy_ultralytics_cmd(engine, out, force, overwrite):
    """Write ENGINE with ultralytics' metadata header, for YOLO("x.engine").

    ultralytics prepends a JSON header (class names, stride, imgsz, task) to its engines; Triton and trtexec
    refuse such files, so trtbuild keeps plain engines and writes this copy only on request.

    \b
    Example:
      trtbuild deploy ultralytics engines/yolov8n.fp16.engine   # → engines/yolov8n.fp16.ultralytics.engine
    """
    res = deploy_ultralytics(engine, UltralyticsConfig(out=out, force=force, overwrite=overwrite))
    r = res.report
    click.echo(f"deploy    {engine} → {res.output} (header {r['header_bytes']} B + engine {r['engine_bytes']} B; "
               f"{len(r['metadata'].get('names', {}))} class names)")


@click.command("serve")
@click.argument("repository", type=click.Path(file_okay=False))
@click.option("--http-port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="HTTP/REST port.")
@click.option("--grpc-port", default=8001, show_default=True, type=click.IntRange(1, 65535), help="gRPC port.")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface).")
def serve_cmd(repository, http_port, grpc_port, address):
    """Serve a model REPOSITORY with the local tritonserver (from the nvidia-pytriton wheel) until Ctrl-C.

    \b
    Example:
      trtbuild deploy triton engines/yolov8n.onnx --backend python --out model_repository
      trtbuild serve model_repository
    """
    server = TritonServer(repository, http_port=http_port, grpc_port=grpc_port, address=address)
    with server:
        click.echo(f"serving {repository} at {server.http_url} and {server.grpc_url} (log {server.log}); Ctrl-C stops")
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the server on SIGTERM too
        try:
            while server.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            return
        raise ServerGoneError(f"tritonserver exited ({server.process.returncode}): {server.tail()}")
