"""Extract the Python API names of the real TensorRT bindings wheels into tests/trt_api/ lists.

Why: TensorRT cannot be installed here, but ``tensorrt-cu12-bindings`` (10.x) and
``tensorrt-cu13-bindings`` (11.x) are on PyPI, and their ``tensorrt_bindings/tensorrt.so`` is the real
pybind11 module; ``tests/apicheck.py`` checks trtbuild's TensorRT names against the lists. The
wheels ship no ``.pyi`` stubs and the .so does not import without libnvinfer: names are read statically.

Method (needs binutils ``objdump``): pybind11 builds signatures such as ``get_tensor_name(self: ...)``
at import time, so they are not in the binary; its registration code is. ``objdump -d -C`` is walked
per function with a small symbolic model of registers, SSE registers and stack slots, decoding the
calls that receive a Python name: class/enum creation (``class_<T>::class_``, ``enum_<T>::enum_``,
or inlined, the ``type_record`` name given to ``generic_type::initialize``), members
(``class_<T>::def*``, ``enum_<T>::value``: name in %rsi) and their inlined forms (``add_class_method``,
``def_property_static_impl``, ``enum_base::value``, the ``sibling`` ``PyObject_GetAttrString`` of LTO
clones holding their name as a constant). Identical template instances are folded, so a callee named
``class_<DefaultLogger>::def_property_static`` may serve every class: the owner is the object the call
is made on, tracked from its creation, and names baked into a helper go to the owner of each call
site. ``export_values()`` copies enum members to the enclosing scope, C++ nesting gives
``ILogger.Severity``, ``m.attr("float16") = ...`` module attributes. The wheel's ``__init__.py``
(``__version__``, ``volume``, the ``Logger.WARNING`` aliases) is read with ``ast``.

Tail merging: the linker stores ``"INT8"`` as the tail of ``"UINT8"``, so a ``strings`` dump cannot
tell whether ``INT8`` is a name. Names here are read at the exact address a call receives, up to the
NUL: ``BuilderFlag.INT8`` is ``&"UINT8"[1]``, and a tail counts only when code points at it. ``[bare]``
is the set of identifier strings code references by exact address.

What it proves: a ``[qualified]`` entry is a decoded registration (present). A missing name was not
found, which is no proof (a registration pattern the decoder misses looks the same). Absence is
proven at byte level only: ``[absent]`` holds the probe names (defaults, ``--probe``, the parts of
``API_USES`` in tests/api_uses.py) whose bytes ``NAME\\0`` occur nowhere in the .so, not even as
the tail of a longer string, nor in ``__init__.py``; short names such as ``INT8`` rarely qualify.

Usage: python scripts/trt_api_lists.py [--cache DIR] [--out tests/trt_api] [--version V]
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import hashlib
import re
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = {"10.3.0": "tensorrt-cu12-bindings==10.3.0", "10.13.3.9": "tensorrt-cu12-bindings==10.13.3.9",
          "11.4.0.106": "tensorrt-cu13-bindings==11.4.0.106"}
PIP_TAGS = ["--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
            "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64"]
PROBES = ["FP16", "INT8", "IInt8EntropyCalibrator2", "IInt8Calibrator", "int8_calibrator",
          "set_calibration_profile", "platform_has_fast_fp16", "platform_has_fast_int8"]
IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
LINE = re.compile(r"^\s*([0-9a-f]+):\t(\S+)\s*(.*)$")
FUNC = re.compile(r"^([0-9a-f]+) <(.*)>:$")
COMMENT = re.compile(r"\s+#\s+[0-9a-f]+ <")  # not a bare '#': lambdas demangle as '{lambda(...)#1}'
REG = {f"{p}{r}{s}": f"r{r}x" for r in "abcd" for p, s in (("r", "x"), ("e", "x"), ("", "x"), ("", "l"))}
REG.update({f"{p}{r}{s}": f"r{r}" for r in ("si", "di", "bp", "sp")
            for p, s in (("r", ""), ("e", ""), ("", ""), ("", "l"))})
REG.update({f"r{n}{s}": f"r{n}" for n in range(8, 16) for s in ("", "d", "w", "b")})
CALLER_SAVED = ("rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11")
MODULE = "<module>"
DEF_SINKS = ("pybind11::detail::add_class_method(", "pybind11::detail::generic_type::def_property_static_impl(",
             "pybind11::detail::enum_base::value(", "PyObject_GetAttrString")
KEEP_DUNDER = ("__init__", "__call__", "__enter__", "__exit__")


class Elf:
    """The loaded sections of a 64-bit little-endian ELF file, to read C strings by address."""

    def __init__(self, data: bytes):
        (shoff,), (size, count) = struct.unpack_from("<Q", data, 0x28), struct.unpack_from("<HH", data, 0x3A)
        heads = (struct.unpack_from("<IIQQQQ", data, shoff + i * size) for i in range(count))
        self.data = data
        self.sections = [(addr, off, size) for _, typ, _, addr, off, size in heads if addr and typ != 8]  # 8: NOBITS

    def cstr(self, addr: int) -> bytes | None:
        for base, off, size in self.sections:
            if base <= addr < base + size:
                end = self.data.find(b"\0", off + addr - base, off + size)
                return self.data[off + addr - base:end] if end >= 0 else None
        return None


def template_args(s: str, start: int) -> tuple[list[str], int]:
    """Top-level arguments of the ``<...>`` opening at s[start], and the index after it."""
    depth, args, cur = 0, [], start + 1
    for i in range(start, len(s)):
        if s[i] in "<({[":
            depth += 1
        elif s[i] in ">)}]":
            depth -= 1
            if depth == 0:
                return args + [s[cur:i].strip()], i + 1
        elif s[i] == "," and depth == 1:
            args, cur = args + [s[cur:i].strip()], i + 1
    return args, len(s)


def pybind_member(sym: str) -> tuple[str, list[str], str] | None:
    """``('class_'|'enum_'|'module_', template args, member)`` for a demangled pybind11 method."""
    depth, start = 0, 0
    for i, c in enumerate(sym):  # drop the return type and the parameter list
        if c == "(" and depth == 0:
            sym = sym[start:i]
            break
        depth += (c in "<({[") - (c in ">)}]")
        start = i + 1 if c == " " and depth == 0 else start
    for kind in ("class_", "enum_"):
        if sym.startswith(f"pybind11::{kind}<"):
            args, j = template_args(sym, len(kind) + 10)
            m = re.match(r"::(~?\w+)", sym[j:])
            return (kind, args, m.group(1)) if m else None
    m = re.match(r"pybind11::module_::(\w+)", sym)
    return ("module_", [], m.group(1)) if m else None


def reg(op: str) -> str | None:
    return REG.get(op[1:]) if op.startswith("%") else None


def full(op: str) -> bool:  # a 64-bit general register
    return bool(reg(op)) and op[1:] == reg(op)


def operands(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for c in text:
        depth += (c == "(") - (c == ")")
        out, cur = (out + [cur], "") if c == "," and depth == 0 else (out, cur + c)
    return [o.strip() for o in out + ([cur] if cur else [])]


class Registry:
    """What the scan learns, keyed by C++ type."""

    def __init__(self):
        self.pyname: dict[str, str] = {}
        self.bases: dict[str, list[str]] = defaultdict(list)
        self.members: dict[str, set[str]] = defaultdict(set)
        self.values: dict[str, set[str]] = defaultdict(set)  # enum members
        self.exported: set[str] = set()                      # enums with export_values()
        self.module_names: set[str] = set()
        self.attrs: set[str] = set()  # x.attr("n") = v; in TensorRT only the module's DataType aliases
        self.baked: dict[int, set[tuple[str, bool]]] = defaultdict(set)  # helper -> its constant names
        self.sites: dict[int, set[str]] = defaultdict(set)   # helper -> owners at its call sites
        self.owner: dict[int, str] = {}                      # helper -> T of its own symbol
        self.stats: dict[str, int] = defaultdict(int)

    def add(self, owner: str | None, name: str | None, value: bool = False):
        if name and owner == MODULE:
            self.module_names.add(name)
        elif name and owner:
            (self.values if value else self.members)[owner].add(name)

    def resolve_baked(self):
        for func, names in self.baked.items():
            for owner in self.sites.get(func) or {self.owner.get(func)}:
                for name, value in names:
                    self.add(owner, name, value)


class Scanner:
    """Per-function linear walk. Values: ``("a", addr)`` a rip-relative address, ``("s", base, off)``
    a stack address, ``("ld", slot, n)`` what the n-th store left in a slot (an opaque identity)."""

    def __init__(self, elf: Elf, registry: Registry):
        self.elf, self.r, self.referenced = elf, registry, set()

    def start_function(self, addr: int, sym: str):
        self.addr, self.regs, self.xmm, self.stack, self.rsp = addr, {}, {}, {}, 0
        self.version: dict[tuple, int] = defaultdict(int)
        self.obj_class: dict[object, str] = {}
        self.current = self.last_class = self.last_str_store = None
        self.in_record, self.record_base, self.record_strs = False, None, []
        pm = pybind_member(sym) if "[clone .cold" not in sym else None
        self.ctx = pm[1][0] if pm and pm[0] != "module_" else MODULE if pm and pm[2] == "def" else None
        if self.ctx:
            self.r.owner[addr] = self.ctx

    def slot(self, mem: str):
        m = re.fullmatch(r"(-?0x[0-9a-f]+|-?\d+)?\((%\w+)\)", mem)
        if not m:
            return None
        off, base = int(m.group(1) or "0", 0), reg(m.group(2))
        if base in ("rbp", "rsp"):  # rsp-relative slots normalised to rsp at function entry
            return (base, off + (self.rsp if base == "rsp" else 0))
        v = self.regs.get(base)
        return (v[1], v[2] + off) if isinstance(v, tuple) and v[0] == "s" else None

    def read(self, op: str):
        s = None if reg(op) else self.slot(op)
        if reg(op) or s is None:
            return self.regs.get(reg(op))
        return self.stack.get(s, ("ld", s, self.version[s]))

    def store(self, s, v):
        self.stack[s], self.version[s] = v, self.version[s] + 1

    def ident(self, value) -> str | None:
        s = self.elf.cstr(value[1]) if isinstance(value, tuple) and value[0] == "a" else None
        return s.decode() if s and IDENT.fullmatch(s) else None

    def define(self, args: list[str], name: str | None, obj):
        t = args[0]
        if name:  # a constprop clone of a constructor holds its own name: found when it is scanned
            self.r.pyname.setdefault(t, name)
        self.r.bases[t] += [b for b in args[1:] if b not in self.r.bases[t]]
        self.current = t
        if obj is not None:
            self.obj_class[obj] = t
            if obj[0] == "s":  # an enum_'s enum_base member sits at +8
                self.obj_class[("s", obj[1], obj[2] + 8)] = t

    def on_call(self, target: int, sym: str):
        rdi, rsi, rdx = (self.regs.get(r) for r in ("rdi", "rsi", "rdx"))
        name, pm, ret = self.ident(rsi), pybind_member(sym), None
        member = pm[2] if pm and pm[0] != "module_" else None
        if member in ("class_", "enum_"):
            self.define(pm[1], self.ident(rdx), rdi)
        elif member and (member.startswith("def") or member == "value"):
            owner = self.obj_class.get(rdi) or (self.ctx if self.ctx != MODULE else None)
            self.r.stats["object" if owner else "callee-T"] += 1
            owner = owner or pm[1][0]
            if member != "def_buffer":
                self.r.add(owner, name, member == "value")
            self.r.sites[target].add(owner)
            ret = rdi  # def() returns *this
        elif member == "export_values" or sym.startswith("pybind11::detail::enum_base::export_values"):
            self.r.exported.add(self.obj_class.get(rdi) or self.ctx or self.current)
        elif pm and pm[0] == "module_" and pm[2] == "def":
            self.r.add(MODULE, name)
            self.r.sites[target].add(MODULE)
            ret = rdi
        elif sym.startswith("pybind11::detail::type_record::type_record()"):
            self.in_record, self.record_base, self.record_strs = True, rdi, []
        elif sym.startswith("pybind11::detail::generic_type::initialize("):
            base = rsi if rsi is not None else self.record_base  # type_record: scope, then name
            found = self.ident(self.stack.get((base[1], base[2] + 8))) if base and base[0] == "s" else None
            if self.last_class:
                self.define(self.last_class, found or next(iter(self.record_strs), None), rdi)
            self.in_record = False
        elif sym.startswith(DEF_SINKS) and name:
            value = sym.startswith("pybind11::detail::enum_base::value(")
            if rdi in self.obj_class:
                self.r.add(self.obj_class[rdi], name, value)
            elif self.ctx:  # a constant inside a helper: given to the owner of each call site
                self.r.baked[self.addr].add((name, value))
            elif not sym.startswith("PyObject_GetAttrString"):
                self.r.stats["last-created"] += 1
                self.r.add(self.current, name, value)
        elif "accessor_policies::str_attr>::operator=" in sym and self.last_str_store:
            self.r.attrs.add(self.last_str_store)
        for r in CALLER_SAVED:
            self.regs.pop(r, None)
        self.xmm.clear()
        self.last_str_store = None
        if ret is not None:
            self.regs["rax"] = ret

    def step(self, mnem: str, text: str):
        comment = None
        cm = COMMENT.search(text)
        if cm:
            text, comment = text[:cm.start()], text[cm.start():].split("#", 1)[1].strip()
        text = text.strip()
        if mnem.startswith("call"):
            m = re.match(r"([0-9a-f]+) <(.*)>$", text)
            if m:
                return self.on_call(int(m.group(1), 16), m.group(2))
            for r in CALLER_SAVED:
                self.regs.pop(r, None)
            return
        ops = operands(text)
        if self.vector_op(mnem, ops):
            return
        if comment and " <" in comment and "pybind11::class_<" in comment:
            pm = pybind_member(comment.split(" <", 1)[1][:-1])
            if pm and pm[0] == "class_" and pm[2].startswith(("init_instance", "dealloc")):
                self.last_class = pm[1]
        if mnem.startswith("lea") and len(ops) == 2 and reg(ops[1]):
            if ops[0].endswith("(%rip)") and comment:
                v = ("a", int(comment.split()[0], 16))
                s = self.ident(v)
                if s:
                    self.referenced.add(s)
                    self.record_strs += [s] if self.in_record else []
            else:
                s = self.slot(ops[0])
                v = ("s",) + s if s is not None else None
            self.regs[reg(ops[1])] = v
            return
        if mnem in ("mov", "movq") and len(ops) == 2:
            src, dst = ops
            if full(dst) and (full(src) or self.slot(src) is not None):
                self.regs[reg(dst)] = self.read(src)
                return
            if full(src) and self.slot(dst) is not None:
                v = self.regs.get(reg(src))
                self.store(self.slot(dst), v)
                self.last_str_store = self.ident(v) or self.last_str_store
                return
        if ops and not mnem.startswith(("cmp", "test", "push", "j", "nop", "bt")):
            if reg(ops[-1]):  # anything else overwrites its last operand
                self.regs.pop(reg(ops[-1]), None)
            elif self.slot(ops[-1]) is not None:
                self.store(self.slot(ops[-1]), None)

    def vector_op(self, mnem: str, ops: list[str]) -> bool:
        """rsp adjustments, and qwords moved through SSE registers (LTO packs a type_record's scope
        and name into one 16-byte store). True when the instruction was handled here."""
        if mnem in ("push", "pop") or (mnem in ("sub", "add") and ops[-1:] == ["%rsp"] and ops[0][:1] == "$"):
            self.rsp += {"push": -8, "pop": 8}.get(mnem) or int(ops[0][1:], 0) * (-1 if mnem == "sub" else 1)
            if mnem == "pop" and reg(ops[0]):
                self.regs.pop(reg(ops[0]), None)
            return True
        if not any(o.startswith("%xmm") for o in ops):
            return False
        x = lambda o: self.xmm.get(o, (None, None))  # noqa: E731
        src, dst = ops if len(ops) == 2 else ("", ops[-1])
        vmov = mnem in ("movups", "movaps", "movdqa", "movdqu")
        if mnem == "movq" and reg(src) and dst.startswith("%xmm"):
            self.xmm[dst] = (self.regs.get(reg(src)), None)
        elif mnem == "movq" and src.startswith("%xmm") and reg(dst):
            self.regs[reg(dst)] = x(src)[0]
        elif mnem == "punpcklqdq" and src.startswith("%xmm"):
            self.xmm[dst] = (x(dst)[0], x(src)[0])
        elif vmov and src.startswith("%xmm") and self.slot(dst) is not None:
            s = self.slot(dst)
            self.store(s, x(src)[0])
            self.store((s[0], s[1] + 8), x(src)[1])
        elif vmov and dst.startswith("%xmm") and self.slot(src) is not None:
            s = self.slot(src)
            self.xmm[dst] = (self.stack.get(s), self.stack.get((s[0], s[1] + 8)))
        elif dst.startswith("%xmm"):
            self.xmm.pop(dst, None)
        elif self.slot(dst) is not None:
            s = self.slot(dst)
            self.store(s, None)
            self.store((s[0], s[1] + 8), None)
        return True

    def run(self, lines):
        self.start_function(0, "")
        for line in lines:
            fm = FUNC.match(line)
            if fm:
                self.start_function(int(fm.group(1), 16), fm.group(2))
            elif (m := LINE.match(line)) and m.group(2) != "(bad)":
                self.step(m.group(2), m.group(3))
        self.r.resolve_baked()


def qualified_names(r: Registry) -> tuple[set[str], dict[str, set[str]]]:
    """Python names (``ILogger.Severity.WARNING``) and, per qualified enum, its members."""
    def qual(t: str, seen=()) -> str:
        parent = t.rsplit("::", 1)[0] if "::" in t else ""
        nested = parent in r.pyname and parent not in seen
        return qual(parent, seen + (t,)) + "." + r.pyname[t] if nested else r.pyname[t]

    out, enums = r.module_names | r.attrs, {}
    for t in r.pyname:
        q = qual(t)
        out.add(q)
        enums[q] = r.values.get(t, set())
        out.update(f"{q}.{m}" for m in r.members.get(t, set()) | enums[q]
                   if not m.startswith("_") or m in KEEP_DUNDER)
        if t in r.exported and "." in q:
            out.update(f"{q.rsplit('.', 1)[0]}.{m}" for m in enums[q])
    return out, enums


def init_py_names(src: str, enums: dict[str, set[str]]) -> set[str]:
    """What the wheel's ``__init__.py`` adds: public top-level defs and assignments, ``__version__``,
    ``X.attr = ...``, and ``for a, v in E.__members__.items(): setattr(C, a, v)`` (``Logger.WARNING``)."""
    out = set()
    for node in ast.parse(src).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            out.add(node.name)
        for t in node.targets if isinstance(node, ast.Assign) else []:
            if isinstance(t, ast.Name) and (not t.id.startswith("_") or t.id == "__version__"):
                out.add(t.id)
            elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name):
                out.add(f"{t.value.id}.{t.attr}")
        if isinstance(node, ast.For) and isinstance(node.iter, ast.Call) and node.body:
            m = re.fullmatch(r"([\w.]+)\.__members__\.items", ast.unparse(node.iter.func))
            b = re.fullmatch(r"setattr\((\w+), \w+, \w+\)", ast.unparse(node.body[0]))
            if m and b:
                out.update(f"{b.group(1)}.{v}" for v in enums.get(m.group(1), ()))
    return out


def extract(wheel: Path, work: Path, probes: set[str]) -> dict:
    with zipfile.ZipFile(wheel) as z:
        so_name = next(n for n in z.namelist() if re.fullmatch(r"tensorrt\w*/tensorrt\S*\.so", n))
        init_src = z.read(so_name.split("/")[0] + "/__init__.py").decode()
        stubs = [n for n in z.namelist() if n.endswith(".pyi")]
        data = z.read(so_name)
    so_path = work / (wheel.stem + ".so")
    so_path.write_bytes(data)
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", str(so_path)],
                         check=True, capture_output=True, text=True).stdout
    registry = Registry()
    scanner = Scanner(Elf(data), registry)
    scanner.run(dis.splitlines())
    qualified, enums = qualified_names(registry)
    qualified |= init_py_names(init_src, enums)
    bases = {registry.pyname[t]: [registry.pyname[b] for b in bs if b in registry.pyname]
             for t, bs in registry.bases.items() if t in registry.pyname}
    return {"so": so_name, "so_sha256": hashlib.sha256(data).hexdigest(), "stubs": stubs,
            "qualified": sorted(qualified), "bases": {k: v for k, v in sorted(bases.items()) if v},
            "bare": sorted(scanner.referenced | {p for q in qualified for p in q.split(".")}),
            "absent": sorted(p for p in probes
                             if p.encode() + b"\0" not in data and not re.search(rf"\b{p}\b", init_src)),
            "stats": dict(sorted(registry.stats.items()))}


def write_list(path: Path, version: str, wheel: Path, res: dict):
    head = [f"TensorRT {version} Python API names (tensorrt module), for tests/apicheck.py",
            f"wheel: {wheel.name} ({WHEELS[version].replace('==', ' ')})",
            f"wheel-sha256: {hashlib.sha256(wheel.read_bytes()).hexdigest()}",
            f"so: {res['so']} sha256 {res['so_sha256']}; .pyi stubs in wheel: {', '.join(res['stubs']) or 'none'}",
            f"date: {_dt.date.today().isoformat()}",
            "method: scripts/trt_api_lists.py: objdump -d -C of the pybind11 module; registration calls",
            "  (class_/enum_ creation, def*/value and their inlined forms) decoded with a register/stack",
            "  tracker; each name read at the exact address its call receives (tail-merge safe); plus",
            "  the wheel's __init__.py via ast. Member owners: "
            + ", ".join(f"{k} {v}" for k, v in res["stats"].items()),
            f"counts: qualified {len(res['qualified'])}, bare {len(res['bare'])}, absent {len(res['absent'])}",
            "[qualified] decoded registrations (present); [bases] class and its Python bases;",
            "[bare] identifier strings code references by exact address; [absent] probe names whose",
            "  bytes NAME\\0 occur nowhere in the .so, not even as a tail (provably not exported)."]
    body = ["[qualified]", *res["qualified"], "[bases]", *(f"{c} {' '.join(b)}" for c, b in res["bases"].items()),
            "[bare]", *res["bare"], "[absent]", *res["absent"]]
    path.write_text("".join(f"# {h}\n" for h in head) + "\n".join(body) + "\n")


def fetch_wheel(req: str, dest: Path) -> Path:
    pattern = req.replace("-", "_").replace("==", "-") + "-*.whl"
    if not list(dest.glob(pattern)):
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", *PIP_TAGS,
                        req, "-d", str(dest)], check=True, stdout=subprocess.DEVNULL)
    found = sorted(dest.glob(pattern))
    if not found:
        raise SystemExit(f"pip download gave no wheel for {req}")
    return found[0]


def default_probes() -> set[str]:
    try:
        sys.path.insert(0, str(ROOT))
        from tests.api_uses import API_USES
    except ImportError:
        return set(PROBES)
    return set(PROBES) | {part for name in API_USES for part in name.split(".")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, help="keep downloaded wheels here (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "trt_api")
    ap.add_argument("--version", action="append", choices=sorted(WHEELS), help="only this one (repeatable)")
    ap.add_argument("--probe", action="append", default=[], help="another name to test for [absent]")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    probes = default_probes() | set(args.probe)
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        cache.mkdir(parents=True, exist_ok=True)
        for version in args.version or WHEELS:
            wheel = fetch_wheel(WHEELS[version], cache)
            res = extract(wheel, Path(tmp), probes)
            out = args.out / f"tensorrt-{version}.txt"
            write_list(out, version, wheel, res)
            print(f"{out}: {len(res['qualified'])} qualified, {len(res['bare'])} bare; "
                  f"absent: {', '.join(res['absent']) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
