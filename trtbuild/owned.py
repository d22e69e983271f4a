"""The ownership rule: trtbuild replaces or deletes a file only if it wrote that file and the file is unchanged since.

Every folder trtbuild writes into gets a manifest, ``.trtbuild-files.json``, listing the files trtbuild wrote there
(path relative to the folder, sha256, size). A file is *ours* when a manifest in its folder or in a folder above
lists it with the sha256 the file has now; anything else (a user's file, one of ours edited since, a file whose
record was lost) is not, and is replaced or deleted only with ``overwrite=True`` (the CLI's ``--overwrite``).
Nothing is decided by a file's name. Every writer goes through here: ``artifacts`` (the atomic writes and the stage
contract), ``infer``'s pictures, ``synth``'s data set, ``deploy``'s model folders.

A run's cleanup after a failure or an interrupt removes only files it created itself (``created`` below): a file
that existed before the run started is never removed, even one the run had the right to replace.

Hand-written: no library keeps a per-folder record of which files a tool wrote; the manifest is small JSON,
updated under an ``flock`` on the folder (two processes writing into one folder don't lose each other's records)
and replaced atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from .errors import InputError

MANIFEST = ".trtbuild-files.json"
_FORMAT = "trtbuild-files/1"
_CHUNK = 1 << 20

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: records are still written, without a lock
    fcntl = None


class NotOursError(InputError):
    """A path trtbuild would replace or delete holds a file it did not write (or one changed since it wrote it)."""

    def __init__(self, path: Path, why: str, *, hint: str = "pass overwrite=True to replace it"):
        super().__init__(f"{path}: {why}; {hint}", param="overwrite")
        self.path = path


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ the manifests
def _manifest(folder: Path) -> Path:
    return folder / MANIFEST


def _load(folder: Path) -> dict[str, dict]:
    """The records of ``folder``'s manifest (relative path → {sha256, bytes}); {} when it has none."""
    path = _manifest(folder)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: trtbuild's record of the files it wrote here is unreadable ({exc}); "
                         "remove it (trtbuild then treats every file here as not its own)") from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("files"), dict):
        raise InputError(f"{path}: not trtbuild's record of the files it wrote here; move it away")
    return data["files"]


def _store(folder: Path, files: Mapping[str, dict]) -> None:
    path = _manifest(folder)
    if not files:
        path.unlink(missing_ok=True)
        return
    text = json.dumps({"format": _FORMAT, "note": "files trtbuild wrote in this folder; it replaces or deletes only "
                       "these, and only while unchanged", "files": dict(sorted(files.items()))}, indent=1)
    fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST}.{os.getpid()}.tmp-", dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; the record gets the usual permissions
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` while its manifest is read, changed and written."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def current_umask() -> int:
    """This process's umask (files trtbuild creates get ``0o666 & ~umask``, like any other program's)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute without following a final symlink (the link is the file trtbuild would touch)."""
    p = Path(os.path.abspath(path))
    return p.parent.resolve() / p.name


def record_of(path: str | os.PathLike) -> dict | None:
    """The record of ``path`` in the nearest manifest that lists it (its folder's, then the folders above)."""
    path = _absolute(path)
    for root in path.parents:
        if _manifest(root).is_file():
            entry = _load(root).get(_rel(path, root))
            if entry is not None:
                return entry
    return None


def is_ours(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file trtbuild wrote (recorded) and nobody changed since (same size and sha256)."""
    path = _absolute(path)
    if path.is_symlink() or not path.is_file():
        return False
    entry = record_of(path)
    return (entry is not None and entry.get("bytes") == path.stat().st_size
            and entry.get("sha256") == sha256_file(path))


def check_replaceable(path: str | os.PathLike, overwrite: bool = False) -> bool:
    """Before trtbuild writes ``path``: fine when nothing is there, when the file there is ours, or with
    ``overwrite``; NotOursError otherwise. A folder (or anything not a file) is never replaced. Returns whether
    something is there (so the caller knows the write is not a creation)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return False
    if path.is_dir() or (path.exists() and not path.is_file()):
        raise InputError(f"{path}: a folder (or other non-file) is in the way of a file trtbuild writes; "
                         "move it or choose another output")
    if not overwrite and not is_ours(path):
        why = "changed since trtbuild wrote it" if record_of(path) else "exists and was not written by trtbuild"
        raise NotOursError(path, why)
    return True


def record(paths: Iterable[str | os.PathLike] | Mapping[str | os.PathLike, str], root: str | os.PathLike | None = None,
           ) -> None:
    """Record ``paths`` (files trtbuild just wrote) as ours: in ``root``'s manifest (paths below it), else in each
    file's own folder. A mapping gives each file's sha256 when the caller already has it."""
    known = {_absolute(p): sha for p, sha in paths.items()} if isinstance(paths, Mapping) else \
        {_absolute(p): None for p in paths}
    for folder, items in _by_root(known, root).items():
        entries = {_rel(p, folder): {"sha256": sha or sha256_file(p), "bytes": p.stat().st_size}
                   for p, sha in items.items()}
        with _locked(folder):
            files = _load(folder)
            files.update(entries)
            _store(folder, files)


def forget(paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> None:
    """Drop the records of ``paths`` (deleted, or no longer ours); a manifest left empty is removed."""
    for folder, items in _by_root({_absolute(p): None for p in paths}, root).items():
        if not _manifest(folder).is_file():
            continue
        with _locked(folder):
            files = _load(folder)
            for p in items:
                files.pop(_rel(p, folder), None)
            _store(folder, files)


def _by_root(paths: Mapping[Path, str | None], root) -> dict[Path, dict[Path, str | None]]:
    groups: dict[Path, dict[Path, str | None]] = {}
    top = _absolute(root) if root is not None else None
    for p, sha in paths.items():
        groups.setdefault(top or p.parent, {})[p] = sha
    return groups


def recorded_files(root: str | os.PathLike) -> list[Path]:
    """Every file ``root``'s own manifest lists (whether or not it is still there or unchanged)."""
    root = _absolute(root)
    return [root / rel for rel in _load(root)] if root.is_dir() else []


# ------------------------------------------------------------------------------------------------ writes, deletes
def replace(tmp: str | os.PathLike, dest: str | os.PathLike, overwrite: bool = False, *, record_it: bool = True,
            sha256: str | None = None) -> bool:
    """Rename the finished temporary file ``tmp`` onto ``dest`` under the rule, and record ``dest`` as ours.
    Returns whether ``dest`` was created (nothing was there before)."""
    existed = check_replaceable(dest, overwrite)
    os.replace(tmp, dest)
    if record_it:
        record({dest: sha256} if sha256 else [dest])
    return not existed


def remove(path: str | os.PathLike, overwrite: bool = False, root: str | os.PathLike | None = None) -> bool:
    """Delete ``path`` if it is ours (or with ``overwrite``) and drop its record; NotOursError for anything
    else. Returns whether a file was deleted."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        forget([path], root)
        return False
    check_replaceable(path, overwrite)
    path.unlink()
    forget([path], root)
    return True


def remove_created(paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> None:
    """Cleanup after a failed or interrupted run: delete ``paths`` — the files the run itself created — and drop
    their records. Never called with a file that existed before the run."""
    paths = [Path(p) for p in paths]
    for p in paths:
        p.unlink(missing_ok=True)
    forget(paths, root)


def clean(folder: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """Delete every file trtbuild wrote under ``folder`` (each manifest's files that are still unchanged) and the
    folders that leaves empty; returns (deleted, kept: listed but changed since, so the user's now)."""
    deleted: list[Path] = []
    kept: list[Path] = []
    manifests = sorted(_absolute(folder).rglob(MANIFEST), key=lambda m: -len(m.parts))  # deepest first
    for manifest in manifests:
        root = manifest.parent
        gone = []
        for path in recorded_files(root):
            if is_ours(path):
                path.unlink()
                gone.append(path)
            elif path.exists():
                kept.append(path)
        forget(gone + [p for p in recorded_files(root) if not p.exists()], root)
        below = {d for p in gone for d in p.parents if root in d.parents}
        for d in sorted(below, key=lambda d: -len(d.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()  # only when empty: never a folder that holds anything else
        deleted += gone
    return deleted, kept


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file (the same path, or links to one file)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return _absolute(a) == _absolute(b)


def refuse_input_as_output(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike],
                           param: str = "out") -> None:
    """InputError when an output path is one of the inputs (a stage never writes over what it reads)."""
    inputs = [Path(i) for i in inputs]
    for out in outputs:
        for inp in inputs:
            if same_file(out, inp):
                raise InputError(f"{param}={out}: the same file as the input {inp}; choose another output path",
                                 param=param)


def inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (symlinks resolved)."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents
