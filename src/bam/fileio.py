"""Atomic writes and content fingerprints.

Every file bam writes goes to a temporary name in the same folder and is renamed into place, so a
crash never leaves a half-written file under the final name. Fingerprints are SHA-256 digests of
canonical JSON, so that caches are keyed by exactly what produced them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bam.errors import BamError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer per folder is then up to the user
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    try:
        _write(path, data)
    except OSError as err:  # a folder in the way, no permission, disk full: the user can fix it
        raise BamError(f"{path}: cannot write ({err.strerror or type(err).__name__})") from None


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``path`` only if the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        try:
            os.replace(tmp, path)  # succeeds when nothing (or an empty folder) is there
        except OSError:
            # Replace an existing folder: move it aside under a unique name first. Two writers
            # of the same cache entry (e.g. two training processes) both end up with a whole one.
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "previous")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def exclusive_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder/.lock`` while this process writes in ``folder``.

    A second writer would delete this one's temporary files and race its checkpoints; it gets a
    one-line error naming the holder instead. The operating system drops the lock when its holder
    exits, however it exits (``kill -9`` too), so no stale lock can block a resumed run. The lock
    file is removed on the way out, so a finished folder holds only results.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield folder
        return
    path = folder / LOCK_FILE
    while True:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the whole block
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "pid unknown"
            handle.close()
            raise BamError(
                f"{folder}: in use by another bam process ({holder}); "
                "wait for it to finish, or write to another folder"
            ) from None
        # The holder before us may have removed the file between our open and our lock: then
        # the lock is on a file no one else will see, so take the one now at ``path``.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield folder
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        handle.close()


def recover_dir(path: str | os.PathLike) -> None:
    """Undo what a ``kill -9`` inside :func:`atomic_dir` can leave: call before reading ``path``.

    Between its two renames ``path`` is briefly absent while the previous copy sits, complete,
    in ``.<name>.*.old/previous``: that copy is put back. Leftover ``.<name>.*.tmp`` and
    ``.<name>.*.old`` folders are removed. Only for folders one process writes (a run's
    checkpoint and model), never a shared cache, whose writers may be at work.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return
    olds = sorted(path.parent.glob(f".{path.name}.*.old"), key=lambda p: p.stat().st_mtime_ns)
    if not path.exists():
        for old in reversed(olds):
            if (old / "previous").is_dir():
                os.replace(old / "previous", path)
                break
    for leftover in [*olds, *path.parent.glob(f".{path.name}.*.tmp")]:
        shutil.rmtree(leftover, ignore_errors=True)


def read_json_object(path: Path, missing: str = "missing") -> dict[str, Any]:
    """A JSON object a user handed bam (a results or run file); a one-line BamError otherwise."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BamError(f"{path}: {missing}") from None
    except (OSError, ValueError) as err:
        raise BamError(f"{path}: unreadable ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise BamError(f"{path}: holds {type(data).__name__}, not a JSON object")
    return data


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def fingerprint(obj: Any, length: int = 16) -> str:
    """Short SHA-256 of ``obj``'s canonical JSON: equal settings give equal keys."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def claim_folder(
    folder: Path,
    overwrite: bool,
    *,
    ours: bool,
    what: str,
    remedy: str = "use --overwrite to replace it",
    also_empty: frozenset[str] | set[str] = frozenset(),
    replace_ours: bool = False,
) -> None:
    """The one answer to "may bam write into ``folder``?".

    A missing or empty folder, one holding only ``also_empty`` entries, or one that is ``ours``
    (bam's own output of this kind, to resume or reuse) may be written. Anything else holds
    someone's files: refused unless ``overwrite``, and then deleted (under the folder's lock, so a
    folder another process is training is never deleted). ``replace_ours`` makes ``overwrite``
    delete bam's own output too (``bam train --overwrite`` starts afresh; ``bam run`` resumes)."""
    if folder.exists() and not folder.is_dir():
        raise BamError(f"{folder}: is a file, not a folder")
    entries = {entry.name for entry in folder.iterdir()} if folder.is_dir() else set()
    foreign = bool(entries - set(also_empty)) and not ours
    if not (foreign or (ours and entries and overwrite and replace_ours)):
        return
    if not overwrite:
        raise BamError(f"{folder}: folder is not empty and holds no {what}; {remedy}")
    with exclusive_folder(folder):
        for entry in folder.iterdir():
            if entry.name != LOCK_FILE:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
