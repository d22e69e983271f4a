"""Artifact plumbing shared by every stage: content hashes, atomic writes, JSON reports, stage cache.

A stage is skipped when its report says it was run with the same key (a hash of its inputs' content and
its config) and its outputs still have the hashes the report recorded, so a changed input can never reuse
a stale artifact and a deleted or edited output is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

_CHUNK = 1 << 20


def _umask() -> int:
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


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it onto ``dest``, on error delete it.

    Readers never see a half-written artifact and a failed stage leaves nothing behind.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or ".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get the usual permissions
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


def cached_report(report_path: Path, key: str, outputs: list[Path]) -> dict | None:
    """The stage's previous report if it was made with ``key`` and its outputs are intact, else None."""
    report = read_json(report_path)
    if not report or report.get("key") != key:
        return None
    recorded = report.get("outputs", {})
    for out in outputs:
        if not out.is_file() or recorded.get(out.name) != sha256_file(out):
            return None
    return report


def output_hashes(outputs: list[Path]) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in outputs}


class StageResult:
    """What a stage produced: its main output, its JSON report, and whether it was skipped as up to date."""

    def __init__(self, output: Path, report_path: Path, report: dict, skipped: bool):
        self.output = Path(output)
        self.report_path = Path(report_path)
        self.report = report
        self.skipped = skipped

    def __repr__(self) -> str:
        state = "up to date" if self.skipped else "built"
        return f"StageResult({self.output}, {state})"


def package_version(name: str) -> str | None:
    """Installed version of a distribution without importing it (cheap; used in cache keys)."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
