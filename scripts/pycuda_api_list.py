"""Extract the Python API names of pycuda (``pycuda.driver``, ``pycuda.compiler``) from its sdist into a list.

Why: pycuda builds only on CUDA hosts, so CPU tests run trtbuild's runtime against a pycuda double
(tests/doubles/pycuda/); the project accepts a double only when its names are checked against the real API,
and this list is that API. No compiler is needed: the names are read from the sources in the sdist.

Method: ``src/wrapper/wrap_cudadrv.cpp`` (Boost.Python, the ``pycuda._driver`` extension that ``pycuda.driver``
star-imports) with comments stripped and every ``#if`` branch kept (so names of every CUDA version are listed),
split into statements at ``;``: ``py::def("name"``, ``DEF_SIMPLE_FUNCTION[_WITH_ARGS](name``, ``DECLARE_EXC(Name``,
``py::class_<T, ...>[ var]("Name"`` with the ``.def("m"``, ``.DEF_SIMPLE_METHOD[_WITH_ARGS](m``, ``.add_property(
"m"``, ``.def_readonly/readwrite("m"``, ``.DEF_SIMPLE_RO/RW_MEMBER(m)`` chained on it (or on its variable in later
statements, ``var.attr("X") =`` too), ``py::enum_<T>("name")`` with ``.value("X"``, ``py::scope().attr("Alias") =
var`` (an alias of that class), and ``py::bases<t>`` (C++ type → Python name from each block's ``typedef t cl``).
Then ``pycuda/driver.py`` and ``pycuda/compiler.py`` with ``ast``: module-level functions, classes (and their
methods) and assignments, also inside ``try``/``if``, plus ``Cls.attr = …`` anywhere in driver.py
(``_add_functionality`` adds ``Function.prepare``, ``Function.prepared_async_call``, ``Device.__getattr__``...).

Output: ``[qualified]`` names prefixed by their module (``driver.Device.count``, ``compiler.SourceModule``) and
``[bases]`` (``driver.PagelockedHostAllocation driver.HostPointer``), the format of tests/trt_api/*.txt.
Limits: names made dynamically (``Device.__getattr__`` answers every ``device_attribute`` member) are not listed.

Usage: python scripts/pycuda_api_list.py [--sdist .whl/pycuda-2026.1.tar.gz] [--out tests/pycuda_api]
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import hashlib
import re
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_CLASS = re.compile(r'py::class_<\s*(\w+)([^>]*(?:<[^>]*>[^>]*)*)>\s*(\w+)?\s*\(?\s*"(\w+)"')
_MEMBER = re.compile(r'\.\s*(?:def|add_property|def_readonly|def_readwrite|value|staticmethod)\s*\(\s*"(\w+)"'
                     r'|\.\s*(?:DEF_SIMPLE_METHOD(?:_WITH_ARGS)?|DEF_SIMPLE_RO_MEMBER|DEF_SIMPLE_RW_MEMBER|'
                     r'ENUM_VALUE)\s*\(\s*(\w+)')
_FUNCTION = re.compile(r'(?:py|boost::python)::def\s*\(\s*"(\w+)"|DEF_SIMPLE_FUNCTION(?:_WITH_ARGS)?\s*\(\s*(\w+)'
                       r'|DECLARE_EXC\s*\(\s*(\w+)')
_ENUM = re.compile(r'py::enum_<[^>]*>\s*\(\s*"(\w+)"')


def _strip(cpp: str) -> str:
    cpp = re.sub(r"/\*.*?\*/", " ", cpp, flags=re.S)
    cpp = re.sub(r"//[^\n]*", " ", cpp)
    cpp = re.sub(r'^\s*#\s*define\s+DECLARE_EXC.*?(?<!\\)\n', "\n", cpp, flags=re.S | re.M)
    return "\n".join(line for line in cpp.splitlines() if not line.lstrip().startswith("#"))


def cpp_names(cpp: str) -> tuple[set[str], dict[str, list[str]]]:
    """Names registered by a Boost.Python wrapper source (see the module docstring)."""
    names: set[str] = set()
    bases: dict[str, list[str]] = {}
    py_name: dict[str, str] = {}  # C++ type (typedef ... cl) → Python class name
    variables: dict[str, str] = {}  # `py::class_<...> var("Name")` → Name
    aliases: dict[str, str] = {}
    typedef = None
    for stmt in _strip(cpp).split(";"):
        if m := re.search(r"typedef\s+([\w:<>, ]+?)\s+cl\s*$", stmt.strip()):
            typedef = m.group(1).strip()
        owner = None
        if m := _CLASS.search(stmt):
            cxx, rest, var, owner = m.groups()
            names.add(owner)
            py_name[typedef if cxx == "cl" and typedef else cxx] = owner
            if var:
                variables[var] = owner
            if b := re.search(r"py::bases<\s*([\w:]+)\s*>", rest):
                bases[owner] = [b.group(1)]
            stmt = stmt[m.end():]
        elif m := _ENUM.search(stmt):
            owner = m.group(1)
            names.add(owner)
            stmt = stmt[m.end():]
        elif m := re.match(r"\s*(\w+)\s*(?:\.|$)", stmt):
            owner = variables.get(m.group(1))
        if m := re.search(r'py::scope\(\)\s*\.attr\(\s*"(\w+)"\s*\)\s*=\s*(\w+)', stmt):
            if m.group(2) in variables:
                aliases[m.group(1)] = variables[m.group(2)]
            continue
        if owner:
            names.update(f"{owner}.{a or b}" for a, b in _MEMBER.findall(stmt))
            names.update(f"{owner}.{a}" for a in re.findall(r'\.attr\(\s*"(\w+)"\s*\)\s*=', stmt))
        else:
            names.update(a or b or c for a, b, c in _FUNCTION.findall(stmt))
    for alias, target in aliases.items():
        names.add(alias)
        names.update(f"{alias}.{n.split('.', 1)[1]}" for n in list(names) if n.startswith(target + "."))
        bases.setdefault(alias, bases.get(target, []))
    bases = {k: [py_name.get(b, b) for b in v] for k, v in bases.items()}
    return names, bases


def python_names(source: str, attribute_assignments: bool = False) -> set[str]:
    """Module-level functions, classes (and their methods) and assigned names; ``Cls.attr = …`` anywhere."""
    names: set[str] = set()

    def scan(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.ClassDef):
                names.add(node.name)
                names.update(f"{node.name}.{n.name}" for n in node.body
                             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
                names.update(f"{node.name}.{t.id}" for n in node.body if isinstance(n, ast.Assign)
                             for t in n.targets if isinstance(t, ast.Name))
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.Try):
                scan(node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body])
            elif isinstance(node, ast.If):
                scan(node.body + node.orelse)

    tree = ast.parse(source)
    scan(tree.body)
    if attribute_assignments:
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id[:1].isupper():
                        names.add(f"{t.value.id}.{t.attr}")
    return names


def extract(sdist: Path) -> tuple[set[str], dict[str, list[str]], str]:
    with tarfile.open(sdist) as tar:
        def read(suffix: str) -> str:
            member = next(m for m in tar.getmembers() if m.name.endswith(suffix))
            return tar.extractfile(member).read().decode()

        cpp, driver, compiler = (read(s) for s in ("src/wrapper/wrap_cudadrv.cpp", "pycuda/driver.py",
                                                   "pycuda/compiler.py"))
        version = next(m.name for m in tar.getmembers()).split("/")[0].partition("-")[2]
    native, bases = cpp_names(cpp)
    names = {f"driver.{n}" for n in native | python_names(driver, attribute_assignments=True)}
    names |= {f"compiler.{n}" for n in python_names(compiler)}
    return names, {f"driver.{k}": [f"driver.{b}" for b in v] for k, v in bases.items()}, version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, default=ROOT / ".whl" / "pycuda-2026.1.tar.gz")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "pycuda_api")
    args = parser.parse_args()
    names, bases, version = extract(args.sdist)
    sha = hashlib.sha256(args.sdist.read_bytes()).hexdigest()
    lines = [f"# pycuda {version} Python API names (pycuda.driver, pycuda.compiler), for tests/doubles/pycuda_api.py",
             f"# sdist: {args.sdist.name} sha256 {sha}",
             f"# date: {_dt.date.today().isoformat()}",
             "# method: scripts/pycuda_api_list.py: Boost.Python registrations in src/wrapper/wrap_cudadrv.cpp (every",
             "#   #if branch kept) + ast of pycuda/driver.py and pycuda/compiler.py; names prefixed by their module",
             f"# counts: qualified {len(names)}, bases {len(bases)}", "[qualified]", *sorted(names), "[bases]",
             *sorted(f"{k} {' '.join(v)}" for k, v in bases.items())]
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"pycuda-{version}.txt"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out} ({len(names)} names)")


if __name__ == "__main__":
    main()
