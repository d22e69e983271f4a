"""What TensorRT made of the ONNX graph (``trtbuild inspect``): engine layers, the ONNX nodes each one absorbed,
their precision and tactic, and the ONNX nodes that were eliminated or folded.

Input is the engine inspector's JSON (``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)``),
which ``trtbuild build`` saves as ``<engine>.layers.json``. Both layouts are read: TensorRT 10.x (``Bindings``,
per-tensor ``Format/Datatype``) and 11.x (``I/O Tensors`` objects, ``Format`` and ``DataType`` split), plus the
names-only layout of engines built below ``ProfilingVerbosity.DETAILED``. The fields and where they are documented
are listed in tests/fixtures/inspector/README.md.

Hand-written because no library maps engine layers back to ONNX nodes: NVIDIA's TREx only displays the raw
``Metadata`` string, ships as source in the TensorRT repository (removed in its 11.1 release) and pulls in pandas
and plotting stacks; Polygraphy prints the inspector output without parsing it.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..artifacts import atomic_path, sha256_file
from ..console import table
from ..errors import InputError
from ..layout import engine_of_layers, layers_path
from ..onnx.graph import load_onnx
from .engine_file import inspector_json
from .host import Host, probe_host
from .sidecar import read_sidecar

LAYOUT_10, LAYOUT_11, LAYOUT_NAMES = "10.x", "11.x", "names-only"
REBUILD_HINT = ("rebuild the engine with detailed profiling verbosity (`trtbuild build MODEL.onnx --force` does; "
                "trtexec needs --profilingVerbosity=detailed)")
# "[ONNX Layer: name]" entries; TensorRT 10 joins several with \x1e (TREx also strips \x1f).
_ONNX_LAYER = re.compile(r"\[ONNX Layer: (.*?)\](?=\s*(?:$|[\x1e\x1f]|\[))", re.S)
_OTHER_PROFILE = re.compile(r"\[profile [1-9][0-9]*\]")  # layers of optimization profiles other than the first
_LAYERS_KEYS = ("Layers", "layers", "LayerInfo")
_DTYPE_KEYS = ("DataType", "Datatype", "Format/Datatype", "Format/DataType", "Format", "Type")  # first hit wins
_PRECISIONS = {
    "fp32": "FP32", "float": "FP32", "float32": "FP32", "fp16": "FP16", "half": "FP16", "float16": "FP16",
    "bfloat16": "BF16", "bf16": "BF16", "int8": "INT8", "uint8": "UINT8", "int4": "INT4", "int32": "INT32",
    "int64": "INT64", "fp8": "FP8", "e4m3": "FP8", "fp4": "FP4", "fp4e2m1": "FP4", "bool": "BOOL",
    "double": "FP64", "fp64": "FP64",
}


def precision_of(text: object) -> str | None:
    """``FP16`` for "Half", "Channel major FP16 format where channel % 8 == 0", ...; None when no type is named."""
    if not isinstance(text, str):
        return None
    for token in re.findall(r"[A-Za-z0-9]+", text):
        if token.lower() in _PRECISIONS:
            return _PRECISIONS[token.lower()]
    return None


@dataclass
class TensorInfo:
    name: str
    datatype: str | None  # the raw DataType / Format/Datatype string
    precision: str | None


@dataclass
class EngineLayer:
    name: str
    layer_type: str | None = None
    precision: str | None = None  # from the outputs' data types ("FP16", "INT8+FP16" when they differ)
    tactic: str | None = None
    onnx_nodes: list[str] = field(default_factory=list)
    nodes_from: str = "metadata"  # "metadata", or "name" (guessed from "a + b" names: no Metadata field)
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)


@dataclass
class EngineLayers:
    layout: str  # LAYOUT_10, LAYOUT_11 or LAYOUT_NAMES
    layers: list[EngineLayer]
    io_tensors: list[dict] = field(default_factory=list)  # {"name", "mode", "precision"}
    skipped_profile_layers: int = 0

    @property
    def detailed(self) -> bool:
        return self.layout != LAYOUT_NAMES


def metadata_nodes(meta: object) -> list[str]:
    """ONNX node names in a layer's ``Metadata`` (a string in 10.x; lists and dicts are accepted too)."""
    if isinstance(meta, list):
        meta = "\x1e".join(str(m) for m in meta)
    elif isinstance(meta, dict):
        meta = "\x1e".join(str(v) for v in meta.values())
    text = str(meta or "")
    found = _ONNX_LAYER.findall(text) or re.split(r"[\x1e\x1f]", text)
    return list(dict.fromkeys(n.strip() for n in found if n.strip()))


def name_nodes(name: str) -> list[str]:
    """Best guess of the ONNX nodes in a layer named like "a + PWN(PWN(b), c)" (no Metadata to go by)."""
    if name.startswith("Reformatting CopyNode") or "ForeignNode[" in name:
        return []
    pieces = re.split(r" \+ |, |\b[A-Za-z]+\(|\)", name)
    return list(dict.fromkeys(p.strip() for p in pieces if p.strip()))


def _tensor(raw: dict) -> TensorInfo:
    dtype = next((raw[k] for k in _DTYPE_KEYS if isinstance(raw.get(k), str)), None)
    prec = precision_of(dtype) or precision_of(raw.get("Format"))
    return TensorInfo(str(raw.get("Name", "")), dtype, prec)


def _layer(raw: dict, index: int) -> EngineLayer:
    name = str(raw.get("Name") or f"layer {index}")
    ins = [_tensor(t) for t in raw.get("Inputs") or [] if isinstance(t, dict)]
    outs = [_tensor(t) for t in raw.get("Outputs") or [] if isinstance(t, dict)]
    precs = list(dict.fromkeys(t.precision for t in outs if t.precision))
    tactic = raw.get("TacticName") or raw.get("TacticValue") or raw.get("Tactic")
    if "Metadata" in raw:
        nodes, source = metadata_nodes(raw["Metadata"]), "metadata"
    else:
        nodes, source = name_nodes(name), "name"
    return EngineLayer(name, str(raw.get("LayerType") or raw.get("ParameterType") or "") or None,
                       "+".join(precs) or None, str(tactic) if tactic is not None else None, nodes, source, ins, outs)


def _io_tensors(top: dict) -> list[dict]:
    if isinstance(top.get("I/O Tensors"), list):
        return [{"name": str(t.get("Name", "")), "mode": t.get("IOMode"),
                 "precision": precision_of(t.get("DataType") or t.get("Datatype"))}
                for t in top["I/O Tensors"] if isinstance(t, dict)]
    names = top.get("Bindings") if isinstance(top.get("Bindings"), list) else []
    return [{"name": str(b), "mode": None, "precision": None} for b in names if not _OTHER_PROFILE.search(str(b))]


def parse_inspector(data: str | bytes | dict | list, source: str = "inspector JSON") -> EngineLayers:
    """The engine layers in an inspector JSON (text or parsed); InputError naming ``source`` when it is not one."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise InputError(f"{source}: not valid JSON ({exc}); pass the <engine>.layers.json written by "
                             "`trtbuild build` (or trtexec's layer-info export)") from None
    top = data if isinstance(data, dict) else {}
    lists = [top[k] for k in _LAYERS_KEYS if isinstance(top.get(k), list)]
    raw = data if isinstance(data, list) else (lists[0] if lists else None)
    if raw is None or any(not isinstance(x, (str, dict)) for x in raw):
        raise InputError(f'{source}: not TensorRT engine-inspector JSON (no "Layers" list of names or objects); pass '
                         "the <engine>.layers.json written by `trtbuild build` (or trtexec's layer-info export)")
    kept = [x for x in raw if not _OTHER_PROFILE.search(x if isinstance(x, str) else str(x.get("Name", "")))]
    layers = [EngineLayer(x, nodes_from="name", onnx_nodes=name_nodes(x)) if isinstance(x, str) else _layer(x, i)
              for i, x in enumerate(kept)]
    tensors = [t for x in kept if isinstance(x, dict) for k in ("Inputs", "Outputs") for t in x.get(k) or []
               if isinstance(t, dict)]
    split = any(("DataType" in t or "Datatype" in t) and "Format/Datatype" not in t for t in tensors)
    if not any(isinstance(x, dict) for x in kept):
        layout = LAYOUT_NAMES
    elif "I/O Tensors" in top or (split and "Bindings" not in top):
        layout = LAYOUT_11
    else:
        layout = LAYOUT_10
    return EngineLayers(layout, layers, _io_tensors(top), len(raw) - len(kept))


def summarize(layers: EngineLayers, onnx_nodes: list[str] | None) -> dict:
    """Everything the report shows, as plain data: headline, per-layer rows, fused groups, eliminated ONNX nodes,
    precision histogram and notes. ``onnx_nodes``: the ONNX graph's node names in graph order (None: unknown)."""
    known = set(onnx_nodes) if onnx_nodes is not None else None
    rows = []
    for layer in layers.layers:
        nodes = layer.onnx_nodes
        if known is not None and layer.nodes_from == "name":  # guesses from the name: keep only real node names
            nodes = [n for n in nodes if n in known]
        rows.append({"name": layer.name, "type": layer.layer_type, "precision": layer.precision or "unknown",
                     "tactic": layer.tactic, "absorbed": len(nodes), "onnx_nodes": nodes,
                     "nodes_from": layer.nodes_from})
    absorbed = {n for r in rows for n in r["onnx_nodes"]}
    m = len(rows)
    notes = []
    if not layers.detailed:
        notes.append(("no layer information at all" if not rows else "layer names only") +
                      f": precision and tactic unknown; {REBUILD_HINT}")
    if any(r["nodes_from"] == "name" for r in rows):
        notes.append("layers without Metadata: their ONNX nodes are guessed from the layer names")
    if layers.skipped_profile_layers:
        notes.append(f"{layers.skipped_profile_layers} layer(s) of optimization profiles other than the first "
                     "left out (they repeat the first profile's layers)")
    if onnx_nodes is None:
        headline, eliminated, unmatched = f"ONNX node count unknown (pass --onnx) → {m} engine layers", None, None
    else:
        headline = f"{len(onnx_nodes)} ONNX nodes → {m} engine layers"
        eliminated = [n for n in onnx_nodes if n not in absorbed]
        unmatched = sorted(absorbed - known)
        if unmatched:
            notes.append(f"{len(unmatched)} node name(s) in the engine are not in this ONNX: was the engine built "
                         "from another model?")
    hist = dict(Counter(r["precision"] for r in rows).most_common())
    fused = sorted((r for r in rows if r["absorbed"] > 1), key=lambda r: -r["absorbed"])
    return {"headline": headline, "layout": layers.layout, "detailed": layers.detailed, "engine_layers": m,
            "onnx_nodes": None if onnx_nodes is None else len(onnx_nodes), "layers": rows,
            "fused_groups": [{"layer": r["name"], "onnx_nodes": r["onnx_nodes"]} for r in fused],
            "eliminated": eliminated, "unmatched": unmatched, "precision_histogram": hist,
            "io_tensors": layers.io_tensors, "notes": notes}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text, so not an engine-inspector JSON; pass the <engine>.layers.json "
                         "written by `trtbuild build`") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__}); check the file and its "
                         "permissions") from None


def _load_input(path: Path, host: Host | None) -> tuple[str, Path, Path | None]:
    """(inspector JSON text, the file it came from, the engine path when known)."""
    if path.name.endswith(".json"):
        if not path.is_file():
            raise InputError(f"{path}: no such file; pass an engine's .layers.json or the .engine itself")
        return _read_text(path), path, engine_of_layers(path)
    if path.suffix.lower() == ".onnx":
        raise InputError(f"{path}: an ONNX model, not an engine; inspect reads an engine (or its .layers.json): build "
                         f"one with `trtbuild build {path}`, or see what TensorRT makes of the ONNX with "
                         f"`trtbuild check {path}`")
    layers_file = layers_path(path)
    if layers_file.is_file():
        return _read_text(layers_file), layers_file, path
    if not path.is_file():
        raise InputError(f"{path}: no such engine and no {layers_file.name} beside it; build one with "
                         "`trtbuild build MODEL.onnx`")
    meta = read_sidecar(path)
    host = host or probe_host()
    if meta and meta.get("flavor") == "rtx" and host.gpu is None:
        source = os.path.normpath(path.parent / meta["source_onnx"]) if meta.get("source_onnx") else "MODEL.onnx"
        raise InputError(f"{path}: a TensorRT-RTX engine, built ahead of time with no GPU, so without "
                         f"{layers_file.name}; its layers can be read only where it can be deserialized, on an RTX GPU "
                         f"(run inspect there). Here, `trtbuild check {source}` shows the layers "
                         "TensorRT-RTX parsed")
    return inspector_json(path, host), path, path  # needs TensorRT: DependencyMissingError without it


def _onnx_node_names(path: Path) -> list[str]:
    return [n.name or f"{n.op_type}#{i}" for i, n in enumerate(load_onnx(path, check=False).graph.node)]


def _source_onnx(engine: Path | None, notes: list[str]) -> Path | None:
    """The ONNX the engine was built from, per its sidecar, when that file still exists unchanged."""
    meta = read_sidecar(engine) if engine is not None else None
    if not meta or not meta.get("source_onnx"):
        return None
    src = Path(os.path.normpath(engine.parent / meta["source_onnx"]))  # absolute source_onnx stays as is
    if not src.is_file():
        notes.append(f"the engine's source ONNX {src} is missing; pass --onnx to count ONNX nodes")
        return None
    if meta.get("source_onnx_sha256") and sha256_file(src) != meta["source_onnx_sha256"]:
        notes.append(f"{src} changed since the engine was built; pass --onnx {src} to compare anyway")
        return None
    return src


def inspect_path(path: str | Path, onnx: str | Path | None = None, host: Host | None = None) -> dict:
    """``summarize`` of an engine (or its .layers.json) against ``onnx`` or, by default, the sidecar's source ONNX."""
    text, source, engine = _load_input(Path(path), host)
    layers = parse_inspector(text, source=str(source))
    notes: list[str] = []
    onnx_path = Path(onnx) if onnx else _source_onnx(engine, notes)
    report = summarize(layers, _onnx_node_names(onnx_path) if onnx_path else None)
    report.update(input=str(source), onnx=str(onnx_path) if onnx_path else None, notes=notes + report["notes"])
    return report


def _short(text: object, width: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _listing(names: list[str], limit: int) -> str:
    more = f" … (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _shown(report: dict, top: int | None) -> list[dict]:
    rows = report["layers"]
    return sorted(rows, key=lambda r: -r["absorbed"])[:top] if top else rows


def format_text(report: dict, top: int | None = None) -> str:
    rows = _shown(report, top)
    out = [report["headline"], ""]
    title = f"engine layers (top {len(rows)} by ONNX nodes absorbed)" if top else "engine layers"
    out += [title, table([(_short(r["name"], 56), _short(r["type"], 22), r["precision"], _short(r["tactic"], 40),
                           r["absorbed"]) for r in rows], ("layer", "type", "precision", "tactic", "ONNX nodes"))]
    groups = report["fused_groups"][:top] if top else report["fused_groups"]
    if groups:
        out += ["", "fused groups (engine layer → the ONNX nodes it absorbed)"]
        out += [f"  {_short(g['layer'], 56)} → {_listing(g['onnx_nodes'], 8)}" for g in groups]
    if report["eliminated"] is not None:
        out += ["", f"eliminated or folded: {len(report['eliminated'])} ONNX node(s) in no engine layer"]
        if report["eliminated"]:
            out.append("  " + _listing(report["eliminated"], 30))
    width = max(report["precision_histogram"].values(), default=1)
    out += ["", "precision histogram (engine layers)"]
    out += [f"  {p:<9} {n:>4}  " + "█" * max(1, round(30 * n / width))
            for p, n in report["precision_histogram"].items()]
    out += [f"note: {n}" for n in report["notes"]]
    return "\n".join(out)


def format_markdown(report: dict, top: int | None = None) -> str:
    def cell(x: object) -> str:
        return str("" if x is None else x).replace("|", "\\|").replace("\x1e", " ")

    out = [f"# Engine layers: {cell(report['input'])}", "", f"**{report['headline']}** (inspector layout "
           f"{report['layout']}{', ONNX ' + cell(report['onnx']) if report['onnx'] else ''})", "",
           "## Precision histogram", "", "| precision | engine layers |", "|---|---:|"]
    out += [f"| {p} | {n} |" for p, n in report["precision_histogram"].items()]
    out += ["", "## Engine layers", "", "| layer | type | precision | tactic | ONNX nodes |", "|---|---|---|---|---:|"]
    out += [f"| {cell(r['name'])} | {cell(r['type'])} | {r['precision']} | {cell(_short(r['tactic'], 60))} | "
            f"{r['absorbed']} |" for r in _shown(report, top)]
    if report["fused_groups"]:
        out += ["", "## Fused groups", ""]
        out += [f"- `{cell(g['layer'])}` → " + ", ".join(f"`{cell(n)}`" for n in g["onnx_nodes"])
                for g in report["fused_groups"]]
    if report["eliminated"] is not None:
        out += ["", f"## Eliminated or folded ONNX nodes ({len(report['eliminated'])})", ""]
        out += [", ".join(f"`{cell(n)}`" for n in report["eliminated"]) or "none"]
    if report["notes"]:
        out += ["", "## Notes", ""] + [f"- {cell(n)}" for n in report["notes"]]
    return "\n".join(out) + "\n"


def plot_histogram(report: dict, path: str | Path, overwrite: bool = False) -> Path:
    """Bar chart of engine layers per precision (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = report["precision_histogram"]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(hist) + 2.5), 3.6), constrained_layout=True)
    bars = ax.bar(list(hist), list(hist.values()), color="#4C72B0", width=0.6, zorder=2)
    ax.bar_label(bars, padding=2, fontsize=9)
    ax.set_ylim(0, 1.15 * max(hist.values(), default=1))
    ax.set_ylabel("engine layers")
    ax.set_title(_short(report["headline"], 70), fontsize=10)
    ax.grid(axis="y", alpha=0.3, zorder=0)
    with atomic_path(path, suffix=".png", overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
