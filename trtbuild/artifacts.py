"""The one stage contract: content hashes, atomic writes, JSON reports and the hash-keyed stage cache.

Every stage (export, simplify, nms, fp16, calibrate, int8, build, budget, report) goes through ``run_stage``:
it computes nothing itself but owns the skeleton all of them share — a stage is skipped when its report says
it was made with the same key (a hash of its inputs' content and its config) and every output the report
recorded still has the recorded sha256; otherwise the stage writes its outputs to temporary files beside
their destinations, they are renamed into place only when it succeeded, and the report (with the outputs'
hashes) is written last. So a changed input never reuses a stale artifact, a deleted output is rebuilt, and a
failed or interrupted stage leaves nothing behind (the files it replaced come back). Every write follows the
ownership rule of ``owned``: an output replaces only a file trtbuild wrote and nobody changed since (else it is
refused, before the work, unless ``overwrite``), and the report records each input's sha256 (``lineage``) so a
later stage can prove what an artifact was made from (``made_from``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from . import owned
from .layout import report_for
from .owned import current_umask, sha256_file  # noqa: F401  (callers import them from here too)


def sha256_json(obj: Any) -> str:
    """Hex sha256 of a JSON-serialisable object in canonical form (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


TEMP_RE = re.compile(r"^\.(?:.+?)\.(\d+)\.tmp-[^/]*$|^\.export-(\d+)-[^/]*$")


def temp_prefix(name: str) -> str:
    """``.<name>.<pid>.tmp-``: what every temporary file or folder beside an artifact starts with, so a later run
    can tell one a killed process left (its pid is gone) from one a running process is writing."""
    return f".{name}.{os.getpid()}.tmp-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders in ``folder`` whose process is gone (SIGKILL, power loss)."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        m = TEMP_RE.match(entry.name)
        if not m or _alive(int(m.group(1) or m.group(2))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def prepare_folder(folder: str | os.PathLike) -> bool:
    """Create ``folder`` if needed and check that a file can be written there, before any work; returns whether
    it was created (so a failed run can remove it again). An ``OSError`` naming the folder when it cannot be."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", str(folder))
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=temp_prefix("write-check"), dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror or str(exc), str(folder)) from None
    sweep_stale(folder)
    return created


def remove_if_empty(folder: str | os.PathLike) -> None:
    try:
        Path(folder).rmdir()
    except OSError:
        pass


@contextlib.contextmanager
def output_folders(*folders: str | os.PathLike) -> Iterator[None]:
    """``prepare_folder`` each folder before the work; when the work fails, the ones this created are removed
    again if they stayed empty (a failed command leaves no empty output folder)."""
    created = [Path(f) for f in dict.fromkeys(folders) if prepare_folder(f)]
    try:
        yield
    except BaseException:
        for folder in reversed(created):
            remove_if_empty(folder)
        raise


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while a library that swallows exceptions raised in its Python callbacks runs, and
    deliver them once it returns. onnxsim's constant folding calls back into ONNX Runtime through Python and
    catches what those calls raise: a Ctrl-C there was lost and the stage went on to write its output."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if held:
            signal.raise_signal(held[0])  # the usual handler now: KeyboardInterrupt, or the process ends


def _temp_beside(dest: Path, suffix: str = "") -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(dest.name), suffix=suffix or ".tmp", dir=dest.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; artifacts get the usual permissions
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "", overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it onto ``dest`` and record ``dest`` as trtbuild's,
    on error delete it. ``dest`` must be free or trtbuild's own (``owned``; checked before and after the work)
    unless ``overwrite``."""
    dest = Path(dest)
    owned.check_replaceable(dest, overwrite)
    tmp_path = _temp_beside(dest, suffix)
    try:
        yield tmp_path
        owned.replace(tmp_path, dest, overwrite)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes_atomic(dest: str | os.PathLike, data: bytes, overwrite: bool = False) -> Path:
    with atomic_path(dest, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_json_atomic(dest: str | os.PathLike, obj: Any, overwrite: bool = False) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    return write_bytes_atomic(dest, text.encode(), overwrite)


def read_json(path: str | os.PathLike) -> dict | None:
    """The JSON object in ``path``, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def package_version(name: str) -> str | None:
    """Installed version of a distribution without importing it (cheap; used in cache keys)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def output_hashes(outputs: Iterable[Path], folder: Path) -> dict[str, str]:
    """``{path relative to folder: sha256}`` of ``outputs``."""
    return {os.path.relpath(p, folder): sha256_file(p) for p in outputs}


def cached_report(report_path: str | os.PathLike, key: str, inputs: dict | None = None) -> dict | None:
    """The stage's previous report if it was made with ``key``, records the ``inputs`` it was made from, and every
    output it recorded is intact; else None."""
    report_path = Path(report_path)
    report = read_json(report_path)
    if not report or report.get("key") != key or not isinstance(report.get("outputs"), dict):
        return None
    if inputs is not None and report.get("lineage") != inputs:
        return None
    for name, sha in report["outputs"].items():
        path = report_path.parent / name
        if not path.is_file() or sha256_file(path) != sha:
            return None
    return report


def input_records(inputs: dict[str, str | os.PathLike] | None) -> dict | None:
    """``{role: {"path", "sha256"}}`` of a stage's input artifacts, as its report records them (lineage)."""
    if inputs is None:
        return None
    return {role: {"path": str(Path(p).resolve()), "sha256": sha256_file(p)} for role, p in inputs.items()}


def made_from(artifact: str | os.PathLike, source: str | os.PathLike, depth: int = 4) -> str | None:
    """None when the stage reports prove that ``artifact`` was made from ``source`` as it is now — its report lists
    it with its current sha256 and names ``source``'s sha256 as an input, directly or through intact intermediate
    artifacts (``x.fp16.onnx`` ← ``x.sim.onnx`` ← ``x.onnx``); else why not, in a few words."""
    target = sha256_file(source)
    artifact = Path(artifact)

    def proven(path: Path, level: int) -> str | None:
        report_path = report_for(path)
        report = read_json(report_path) if report_path is not None else None
        if not report or not isinstance(report.get("lineage"), dict):
            return f"no stage report records what {path.name} was made from"
        if (report.get("outputs") or {}).get(os.path.relpath(path, report_path.parent)) != sha256_file(path):
            return f"{path.name} changed since {report_path.name} recorded it"
        for entry in report["lineage"].values():
            if entry.get("sha256") == target:
                return None
        for entry in report["lineage"].values():
            parent = Path(entry.get("path", ""))
            if level < depth and parent.is_file() and sha256_file(parent) == entry.get("sha256") \
                    and proven(parent, level + 1) is None:
                return None
        names = ", ".join(Path(e.get("path", "?")).name for e in report["lineage"].values())
        return (f"{report_path.name} says {path.name} was made from another {names} than {Path(source).name} "
                "as it is now")

    return proven(artifact, 0)


@dataclass
class StageResult:
    """What a stage produced: its main output, its JSON report, and whether it was skipped as up to date."""

    output: Path
    report_path: Path
    report: dict
    skipped: bool

    @property
    def stage(self) -> str:
        return self.report.get("stage", "")

    def __repr__(self) -> str:
        return f"StageResult({self.stage} {self.output}, {'up to date' if self.skipped else 'built'})"


class Outputs:
    """The files a running stage writes: ``path(dest)`` gives a temporary file beside ``dest`` that becomes
    ``dest`` when the stage succeeds; ``record(path)`` adds a file made by a sub-stage to the stage's outputs.
    Every destination must be free or trtbuild's own (``owned``) unless ``overwrite``, and none may be one of the
    stage's ``inputs``."""

    def __init__(self, overwrite: bool = False, inputs: Iterable[Path] = ()) -> None:
        self._pending: dict[Path, Path] = {}  # destination -> temporary path
        self._recorded: list[Path] = []
        self._overwrite = overwrite
        self._inputs = list(inputs)
        self._backups: dict[Path, Path] = {}  # destination -> its previous file, until the stage is complete
        self.created: list[Path] = []  # destinations that did not exist before this run

    def path(self, dest: str | os.PathLike, suffix: str = "") -> Path:
        dest = Path(dest)
        if dest in self._pending:
            return self._pending[dest]
        owned.refuse_input_as_output([dest], self._inputs)
        owned.check_replaceable(dest, self._overwrite)
        tmp = self._pending[dest] = _temp_beside(dest, suffix or "".join(dest.suffixes[-1:]))
        return tmp

    def record(self, path: str | os.PathLike) -> None:
        self._recorded.append(Path(path))

    def _commit(self) -> list[Path]:
        """Rename every temporary file onto its destination; the files replaced are kept aside (hard links) until
        ``_done``, so ``_rollback`` can put them back."""
        for dest, tmp in self._pending.items():
            if owned.check_replaceable(dest, self._overwrite):
                backup = _temp_beside(dest, ".old")
                backup.unlink()
                try:
                    os.link(dest, backup)  # readers of dest see a file at every moment
                except OSError:  # no hard links here: move it aside instead
                    os.replace(dest, backup)
                self._backups[dest] = backup
            else:
                self.created.append(dest)
            os.replace(tmp, dest)
        done, self._pending = list(self._pending), {}
        return done + self._recorded

    def _done(self) -> None:
        for backup in self._backups.values():
            backup.unlink(missing_ok=True)
        self._backups = {}

    def _rollback(self) -> None:
        """Undo ``_commit``: the files it replaced come back, the ones it created go."""
        for dest, backup in self._backups.items():
            os.replace(backup, dest)
        self._backups = {}
        owned.remove_created(self.created)
        self.created = []

    def _discard(self) -> None:
        for tmp in self._pending.values():
            tmp.unlink(missing_ok=True)
        self._pending = {}


def run_stage(stage: str, key: str, report_path: str | os.PathLike, output: str | os.PathLike | None,
              make: Callable[[Outputs], dict], force: bool = False, *,
              inputs: dict[str, str | os.PathLike] | None = None, overwrite: bool = False) -> StageResult:
    """Run one stage under the contract above.

    ``make(outputs)`` writes every artifact through ``outputs.path(dest)`` and returns the report's fields;
    ``stage``, ``key``, ``lineage`` (path and sha256 of each of ``inputs``, the artifacts it read: what later
    stages check, see ``made_from``), ``outputs`` (sha256 per file) and ``seconds`` (unless ``make`` set it) are
    added and the report is written to ``report_path`` last. ``output`` is the stage's main artifact (may be the report; None: the one the report
    names in ``"output"``, for stages that decide it while they run). Outputs replace only files trtbuild wrote
    and nobody changed since, unless ``overwrite`` (``owned``); an output that is an input is refused.
    """
    report_path = Path(report_path)
    in_paths = [Path(p) for p in (inputs or {}).values()]
    owned.refuse_input_as_output([report_path, *([output] if output else [])], in_paths)  # even when up to date
    in_records = input_records(inputs)
    if not force and (report := cached_report(report_path, key, in_records)) is not None and (
            output is None or owned.same_file(output, report_path)
            or any(owned.same_file(output, report_path.parent / rel) for rel in report["outputs"])):
        return StageResult(Path(output or report["output"]), report_path, report, skipped=True)
    previous = (read_json(report_path) or {}).get("outputs") if report_path.is_file() else None
    earlier = [report_path.parent / rel for rel in previous] if isinstance(previous, dict) else []
    for dest in (report_path, *([Path(output)] if output else []), *earlier):
        owned.check_replaceable(dest, overwrite)  # before the work, not after minutes of it
    created = prepare_folder(report_path.parent)  # writable, before the work; a killed run's leftovers removed
    t0 = time.perf_counter()
    outs = Outputs(overwrite, in_paths)

    def undo() -> None:
        outs._discard()
        outs._rollback()
        if created:
            remove_if_empty(report_path.parent)

    try:
        fields = make(outs)
    except OSError as exc:
        undo()
        if exc.filename is None:  # written through a file object (onnx.save, …): name the folder at least
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(report_path.parent)) from exc
        raise
    except BaseException:
        undo()
        raise
    # outputs renamed into place and the report written as one step: a Ctrl-C arriving now waits until it is
    # done (the stage is then complete and consistent) and is raised after
    with deferred_interrupts():
        try:
            files = outs._commit()
            hashes = output_hashes(files, report_path.parent)
            report = {"stage": stage, "key": key, **fields, **({"lineage": in_records} if in_records else {}),
                      "outputs": hashes}
            report.setdefault("seconds", round(time.perf_counter() - t0, 3))
            write_json_atomic(report_path, report, overwrite)
            owned.record({report_path.parent / rel: sha for rel, sha in hashes.items()})
        except BaseException:
            undo()
            raise
        outs._done()
    return StageResult(Path(output or report["output"]), report_path, report, skipped=False)
