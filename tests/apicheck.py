"""Check the TensorRT names trtbuild uses against API lists taken from the real bindings wheels.

Why: TensorRT 11 dropped weak typing (``BuilderFlag.FP16``/``INT8``, INT8 calibrators), and no
GPU is needed to see that a 10.x-only name sits on a code path that also runs on 11.x. The lists
in ``tests/trt_api/`` (one per TensorRT version, made by ``scripts/trt_api_lists.py`` from the
``tensorrt-cu12/cu13-bindings`` wheels) say which qualified names exist; ``API_USES`` in
``tests/api_uses.py`` says which names the code uses and for which TensorRT majors.

``check`` reports (a) every ``tensorrt`` attribute chain found in trtbuild/ that ``API_USES``
does not declare, and (b) every declared name missing from the list of a version it claims
(``"10"`` covers 10.3.0 and 10.13.3.9, ``"11"`` covers 11.4.0.106; ``"10.13"`` only that one).

``used_names`` is an AST scan, honest about its limits. Found: ``tensorrt`` imported any way
(``import tensorrt as trt`` at module level or inside a function, ``from tensorrt import X``,
``importlib.import_module("tensorrt")``), then every attribute chain on it (``trt.BuilderFlag.FP16``,
``getattr(trt, "__version__")``). Methods are attributed only where the object's type is visible:
``x = trt.Builder(...)``, a parameter/variable annotated ``trt.ICudaEngine`` (also as a string),
results of the factory methods in ``RETURNS``, and ``self.x`` assigned those in the same file.
Anything else (objects passed around untyped, ``getattr`` with a computed name) is not seen, so
type-annotate TensorRT objects in TensorRT-facing code to have their methods checked.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "trtbuild"
LISTS_DIR = Path(__file__).resolve().parent / "trt_api"
# what a method or property returns, for following TensorRT objects through variables
RETURNS = {
    "Builder.create_network": "INetworkDefinition",
    "Builder.create_builder_config": "IBuilderConfig",
    "Builder.create_optimization_profile": "IOptimizationProfile",
    "Builder.build_serialized_network": "IHostMemory",
    "Runtime.deserialize_cuda_engine": "ICudaEngine",
    "ICudaEngine.create_execution_context": "IExecutionContext",
    "ICudaEngine.create_engine_inspector": "EngineInspector",
    "ICudaEngine.serialize": "IHostMemory",
    "INetworkDefinition.get_input": "ITensor",
    "INetworkDefinition.get_output": "ITensor",
    "INetworkDefinition.get_layer": "ILayer",
    "ILayer.get_output": "ITensor",
    "ILayer.get_input": "ITensor",
}


@dataclass
class ApiList:
    """One committed list: ``[qualified]`` names, ``[bases]``, ``[bare]`` strings, ``[absent]`` probes."""

    version: str
    header: dict[str, str] = field(default_factory=dict)
    qualified: set[str] = field(default_factory=set)
    bases: dict[str, list[str]] = field(default_factory=dict)
    bare: set[str] = field(default_factory=set)
    absent: set[str] = field(default_factory=set)

    def __contains__(self, name: str) -> bool:
        if name in self.qualified:
            return True
        owner, _, member = name.rpartition(".")
        return bool(owner) and any(f"{b}.{member}" in self for b in self.bases.get(owner, ()))

    def why_missing(self, name: str) -> str:
        last = name.rsplit(".", 1)[-1]
        if last in self.absent:
            return f"proven absent: the bytes '{last}\\0' occur nowhere in its tensorrt.so"
        if last in self.bare:
            return f"'{last}' exists only as a string or elsewhere, not as {name}"
        return "not found"


RTX = "rtx"  # TensorRT-RTX lists are named tensorrt_rtx-<version>.txt and versioned "rtx<version>" ("rtx1.7.1.116")


def _list_file(version: str, lists_dir: Path) -> Path:
    if version.startswith(RTX):
        return lists_dir / f"tensorrt_rtx-{version[len(RTX):]}.txt"
    return lists_dir / f"tensorrt-{version}.txt"


def available_versions(lists_dir: Path = LISTS_DIR) -> list[str]:
    """Standard TensorRT versions ("10.3.0", …) in order, then TensorRT-RTX ones ("rtx1.7.1.116")."""
    found = [p.name[len("tensorrt-"):-len(".txt")] for p in lists_dir.glob("tensorrt-*.txt")]
    rtx = [RTX + p.name[len("tensorrt_rtx-"):-len(".txt")] for p in lists_dir.glob("tensorrt_rtx-*.txt")]
    key = lambda v: [int(x) for x in v.removeprefix(RTX).split(".")]  # noqa: E731
    return sorted(found, key=key) + sorted(rtx, key=key)


def matches(spec: str, version: str) -> bool:
    """``"10"`` and ``"10.13"`` match ``10.13.3.9``; ``"10.1"`` does not (whole components); ``"rtx1"`` matches
    ``rtx1.7.1.116``; ``"rtx"`` matches every TensorRT-RTX version."""
    if spec == RTX:
        return version.startswith(RTX)
    return version.split(".")[: len(spec.split("."))] == spec.split(".")


def load_api(version: str, lists_dir: Path = LISTS_DIR) -> ApiList:
    """The list of ``version``: exact (``"10.3.0"``) or a prefix naming one list (``"10.3"``)."""
    hits = [v for v in available_versions(lists_dir) if matches(version, v)]
    if len(hits) != 1:
        raise LookupError(f"TensorRT {version}: {len(hits)} API lists match in {lists_dir} {hits}")
    api, section = ApiList(hits[0]), None
    for line in _list_file(hits[0], lists_dir).read_text().splitlines():
        if line.startswith("# "):
            key, sep, value = line[2:].partition(": ")
            if sep and re.fullmatch(r"[\w-]+", key):
                api.header[key] = value
        elif line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and section == "bases":
            cls, *bases = line.split()
            api.bases[cls] = bases
        elif line and section in ("qualified", "bare", "absent"):
            getattr(api, section).add(line)
    return api


# ------------------------------------------------------------------ source scan
def _annotation_type(node: ast.AST | None, aliases: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return None
    chain = _chain(node, aliases) if node is not None else None
    return chain if chain and "." not in chain else None


def _chain(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """``"BuilderFlag.FP16"`` for ``trt.BuilderFlag.FP16`` when ``trt`` is a tensorrt alias; ``""`` for
    ``trt`` itself; None when the expression is not on tensorrt."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in aliases:
        return ".".join(([aliases[node.id]] if aliases[node.id] else []) + parts[::-1])  # "": the module
    return None


MODULES = ("tensorrt", "tensorrt_rtx")  # standard TensorRT and TensorRT-RTX: one API, checked per list


def _is_tensorrt_import(value: ast.AST) -> bool:
    """``importlib.import_module("tensorrt")`` (or "tensorrt_rtx"), or trtbuild's ``trt_module(flavor)``."""
    if not isinstance(value, ast.Call):
        return False
    func = ast.unparse(value.func)
    return func.split(".")[-1] == "trt_module" or (
        func in ("importlib.import_module", "import_module")
        and [ast.unparse(a).strip("'\"") for a in value.args] in ([m] for m in MODULES))


class _Scan(ast.NodeVisitor):
    """Scope-aware walk: ``aliases`` maps local names to a tensorrt path ("" is the module itself),
    ``types`` maps variables (and ``self.x``) to a TensorRT class name."""

    def __init__(self, file: str):
        self.file, self.found = file, set()
        self.aliases: dict[str, str] = {}
        self.types: dict[str, str] = {}
        self.self_types: dict[str, str] = {}

    def use(self, name: str, node: ast.AST):
        self.found.add((name, self.file, node.lineno))

    def type_of(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Call):
            func = node.func
            chain = _chain(func, self.aliases)
            if chain and "." not in chain and chain[:1].isupper():
                return chain  # trt.Builder(logger)
            if isinstance(func, ast.Attribute):
                owner = self.type_of(func.value)
                return RETURNS.get(f"{owner}.{func.attr}") if owner else None
        if isinstance(node, ast.Attribute) and not _chain(node, self.aliases):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                return self.self_types.get(node.attr)
            owner = self.type_of(node.value)
            return RETURNS.get(f"{owner}.{node.attr}") if owner else None
        if isinstance(node, ast.Name):
            return self.types.get(node.id)
        return None

    def bind(self, target: ast.AST, value: ast.AST | None, annotation: ast.AST | None = None):
        typ = _annotation_type(annotation, self.aliases) or (self.type_of(value) if value is not None else None)
        if isinstance(target, ast.Name):
            if value is not None and _is_tensorrt_import(value):
                self.aliases[target.id] = ""
                return
            self.aliases.pop(target.id, None)  # e.g. trt = tensorrt_info(): no longer the module
            if typ:
                self.types[target.id] = typ
            else:
                self.types.pop(target.id, None)
        elif typ and isinstance(target, ast.Attribute) and ast.unparse(target.value) == "self":
            self.self_types[target.attr] = typ

    # -- scopes
    def visit_FunctionDef(self, node):
        saved = dict(self.aliases), dict(self.types)
        for stmt in node.body:  # `import tensorrt as trt` inside the body also types the parameters' annotations
            if isinstance(stmt, ast.Import):
                self.aliases.update({a.asname or a.name: "" for a in stmt.names if a.name in MODULES})
        for arg in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
            self.types.pop(arg.arg, None)
            self.aliases.pop(arg.arg, None)
            typ = _annotation_type(arg.annotation, self.aliases)
            if typ:
                self.types[arg.arg] = typ
        for stmt in node.body:
            self.visit(stmt)
        self.aliases, self.types = saved
        for deco in node.decorator_list:
            self.visit(deco)

    visit_AsyncFunctionDef = visit_FunctionDef

    # -- bindings
    def visit_Import(self, node):
        for a in node.names:
            root = a.name.partition(".")[0]
            if root in MODULES:
                self.aliases[a.asname or root] = a.name.partition(".")[2] if a.asname else ""

    def visit_ImportFrom(self, node):
        if node.module in MODULES and not node.level:
            for a in node.names:
                self.aliases[a.asname or a.name] = a.name
                self.use(a.name, node)

    def visit_Assign(self, node):
        self.visit(node.value)
        for t in node.targets:
            self.bind(t, node.value)
            if not isinstance(t, ast.Name):
                self.visit(t)

    def visit_With(self, node):
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self.bind(item.optional_vars, item.context_expr)
        for stmt in node.body:
            self.visit(stmt)

    visit_AsyncWith = visit_With

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)
        self.bind(node.target, node.value, node.annotation)

    # -- uses
    def visit_Attribute(self, node):
        chain = _chain(node, self.aliases)
        if chain:
            return self.use(chain, node)
        owner = self.type_of(node.value)
        if owner:
            self.use(f"{owner}.{node.attr}", node)
        self.generic_visit(node)

    def visit_Call(self, node):
        if (isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr", "setattr")
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)):
            chain = _chain(node.args[0], self.aliases)
            owner = chain if chain is not None else self.type_of(node.args[0])
            if owner is not None:
                self.use(f"{owner}.{node.args[1].value}" if owner else node.args[1].value, node)
        self.generic_visit(node)


def used_names(paths) -> set[tuple[str, str, int]]:
    """``(qualified name, file, line)`` for every TensorRT name the files (or directories) use."""
    out = set()
    for path in map(Path, paths):
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            scan = _Scan(str(file))
            scan.visit(ast.parse(file.read_text(), filename=str(file)))
            out |= scan.found
    return out


def check(uses_table: dict[str, tuple[str, ...]], versions=None, paths=None,
          lists_dir: Path = LISTS_DIR) -> list[str]:
    """Problems, as sentences; empty when (a) every name used in ``paths`` (default: trtbuild/) is in
    ``uses_table`` and (b) every name there exists in each list of ``versions`` (default: all
    committed lists) that its claimed majors/versions cover."""
    problems = []
    for name, file, line in sorted(used_names(paths or [PACKAGE]), key=lambda u: (u[1], u[2], u[0])):
        if name not in uses_table:
            problems.append(f"{file}:{line}: tensorrt.{name} is used but not declared in API_USES")
    lists = [load_api(v, lists_dir) for v in (versions or available_versions(lists_dir))]
    for name, claims in sorted(uses_table.items()):
        for claim in claims:
            covered = [api for api in lists if matches(str(claim), api.version)]
            if not any(matches(str(claim), v) for v in available_versions(lists_dir)):
                problems.append(f"API_USES[{name!r}] claims TensorRT {claim}, which has no API list in {lists_dir}")
            for api in covered:
                if name not in api:
                    problems.append(f"API_USES[{name!r}] claims TensorRT {claim}, but TensorRT {api.version} "
                                    f"has no {name} ({api.why_missing(name)})")
    return problems
