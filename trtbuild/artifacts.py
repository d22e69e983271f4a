"""The one stage contract: content hashes, atomic writes, JSON reports and the hash-keyed stage cache.

Every stage (export, simplify, nms, fp16, calibrate, int8, build, budget, report) goes through ``run_stage``:
it computes nothing itself but owns the skeleton all of them share — a stage is skipped when its report says
it was made with the same key (a hash of its inputs' content and its config) and every output the report
recorded still has the recorded sha256; otherwise the stage writes its outputs to temporary files beside
their destinations, they are renamed into place only when it succeeded, and the report (with the outputs'
hashes) is written last. So a changed input never reuses a stale artifact, a deleted or edited output is
rebuilt, and a failed or interrupted stage leaves nothing behind.
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

_CHUNK = 1 << 20


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


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
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it onto ``dest``, on error delete it."""
    dest = Path(dest)
    tmp_path = _temp_beside(dest, suffix)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes_atomic(dest: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_json_atomic(dest: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    return write_bytes_atomic(dest, text.encode())


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


def cached_report(report_path: str | os.PathLike, key: str) -> dict | None:
    """The stage's previous report if it was made with ``key`` and every output it recorded is intact, else None."""
    report_path = Path(report_path)
    report = read_json(report_path)
    if not report or report.get("key") != key or not isinstance(report.get("outputs"), dict):
        return None
    for name, sha in report["outputs"].items():
        path = report_path.parent / name
        if not path.is_file() or sha256_file(path) != sha:
            return None
    return report


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
    ``dest`` when the stage succeeds; ``record(path)`` adds a file made by a sub-stage to the stage's outputs."""

    def __init__(self) -> None:
        self._pending: dict[Path, Path] = {}  # destination -> temporary path
        self._recorded: list[Path] = []

    def path(self, dest: str | os.PathLike, suffix: str = "") -> Path:
        dest = Path(dest)
        if dest in self._pending:
            return self._pending[dest]
        tmp = self._pending[dest] = _temp_beside(dest, suffix or "".join(dest.suffixes[-1:]))
        return tmp

    def record(self, path: str | os.PathLike) -> None:
        self._recorded.append(Path(path))

    def _commit(self) -> list[Path]:
        for dest, tmp in self._pending.items():
            os.replace(tmp, dest)
        done, self._pending = list(self._pending), {}
        return done + self._recorded

    def _discard(self) -> None:
        for tmp in self._pending.values():
            tmp.unlink(missing_ok=True)
        self._pending = {}


def run_stage(stage: str, key: str, report_path: str | os.PathLike, output: str | os.PathLike | None,
              make: Callable[[Outputs], dict], force: bool = False) -> StageResult:
    """Run one stage under the contract above.

    ``make(outputs)`` writes every artifact through ``outputs.path(dest)`` and returns the report's fields;
    ``stage``, ``key``, ``outputs`` (sha256 per file) and ``seconds`` (unless ``make`` set it) are added and
    the report is written to ``report_path`` last. ``output`` is the stage's main artifact (may be the report;
    None: the one the report names in ``"output"``, for stages that decide it while they run).
    """
    report_path = Path(report_path)
    if not force and (report := cached_report(report_path, key)) is not None:
        return StageResult(Path(output or report["output"]), report_path, report, skipped=True)
    created = prepare_folder(report_path.parent)  # writable, before the work; a killed run's leftovers removed
    t0 = time.perf_counter()
    outs = Outputs()

    def undo(committed: Iterable[Path] = ()) -> None:
        outs._discard()
        for path in committed:  # outputs no report describes (it could not be written) are not kept
            path.unlink(missing_ok=True)
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
        committed = list(outs._pending)
        try:
            files = outs._commit()
            report = {"stage": stage, "key": key, **fields, "outputs": output_hashes(files, report_path.parent)}
            report.setdefault("seconds", round(time.perf_counter() - t0, 3))
            write_json_atomic(report_path, report)
        except BaseException:
            undo(committed)
            raise
    return StageResult(Path(output or report["output"]), report_path, report, skipped=False)
