"""Atomic writes, the folder lock, and content fingerprints.

Every file bam writes goes to a temporary name in the same folder and is renamed into place, so a
crash never leaves a half-written file under the final name. A temporary name carries its
writer's pid (``.<name>.<pid>.<random>.tmp``): one whose writer is gone is litter, and the next
write of the same name (or :func:`remove_stale_temporaries`) removes it. Fingerprints are SHA-256
digests of canonical JSON, so that caches are keyed by exactly what produced them.

Test hook: ``BAM_FAULT_INJECT="<what>:<glob>[;<what>:<glob>...]"`` makes every atomic write whose
absolute path matches ``glob`` (``fnmatch``: ``*`` also matches ``/``) fail as a full or broken
disk would, after its temporary file or folder is written and before it is renamed into place:
``<what>`` is an errno name (``ENOSPC``, ``EIO``, ...) to raise as ``OSError``, ``KILL`` to die of
SIGKILL there, or ``KILL_AFTER`` to die of it just after the rename. Unset, it costs one lookup.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import json
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import filelock
import psutil

from bam.errors import BamError

LOCK_FILE = ".lock"
FAULT_ENV = "BAM_FAULT_INJECT"
LOCK_WAIT = 0.5  # seconds a second writer waits for the lock before it is told who holds it


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def inject_fault(path: str | os.PathLike, when: str = "before") -> None:
    """The ``BAM_FAULT_INJECT`` test hook (see the module docstring) at one write of ``path``."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    where = os.path.abspath(path)
    for item in spec.split(";"):
        what, _, pattern = item.strip().partition(":")
        if not pattern or not fnmatch.fnmatchcase(where, pattern):
            continue
        if what == ("KILL_AFTER" if when == "after" else "KILL"):
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
            time.sleep(60)  # the signal arrives asynchronously; never write on meanwhile
        code = getattr(errno, what, None) if what.isupper() and what.startswith("E") else None
        if code is not None and when == "before":
            raise OSError(code, os.strerror(code), str(path))


def write_error(path: str | os.PathLike, err: BaseException) -> BamError:
    """The one-line message for a write that failed: the file, and what the system said."""
    reason = getattr(err, "strerror", None) or _io_reason(err) or type(err).__name__
    return BamError(f"{path}: cannot write ({reason})")


def _io_reason(err: BaseException) -> str | None:
    """What a library's wrapped I/O error says (safetensors: "...: I/O error: No space left...")."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return text.rsplit("I/O error: ", 1)[-1].split(" (os error")[0] if "I/O error" in text else text or None


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    try:
        _write(path, data)
    except OSError as err:  # a folder in the way, no permission, disk full: the user can fix it
        raise write_error(path, err) from None
    remove_stale_temporaries(path.parent, path.name)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        inject_fault(path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    inject_fault(path, "after")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """A file handle whose contents appear at ``path`` only if the block finishes without error:
    for outputs too large to build in memory first (text, or bytes with ``encoding=None``)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise write_error(path, err) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        mode = "wb" if encoding is None else "w"
        with os.fdopen(fd, mode, encoding=encoding, newline=None if encoding is None else "\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        inject_fault(path)
        os.replace(tmp, path)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    inject_fault(path, "after")
    remove_stale_temporaries(path.parent, path.name)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``path`` only if the block finishes without error.

    A failed write inside the block (a full disk: ``OSError``, or safetensors' own error naming
    an I/O error) becomes a one-line :class:`BamError` naming ``path``; the previous folder stays.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
        os.chmod(tmp, 0o777 & ~_umask())
    except OSError as err:
        raise write_error(path, err) from None
    try:
        yield tmp
        inject_fault(path)
        _swap_in(tmp, path)
    except BamError as err:  # an atomic write inside the block: name the file where it belongs
        raise BamError(str(err).replace(str(tmp), str(path))) from None
    except OSError as err:
        raise write_error(path, err) from None
    except Exception as err:
        if "I/O error" not in str(err):  # only a library's wrapped write error is the disk's fault
            raise
        raise write_error(path, err) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    inject_fault(path, "after")
    remove_stale_temporaries(path.parent, path.name)


def _swap_in(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)  # succeeds when nothing (or an empty folder) is there
    except OSError:
        if not path.is_dir():
            raise
        # Replace an existing folder: move it aside under a unique name first. Two writers
        # of the same cache entry (e.g. two training processes) both end up with a whole one.
        old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".old", dir=path.parent))
        os.replace(path, old / "previous")
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)


def _writer_alive(entry: Path) -> bool:
    """Whether the process that made the temporary ``entry`` may still be writing it.

    Its pid is in its name; a name without one (an older bam's) or a process that started after
    the entry was last changed (the pid was reused) cannot be writing it.
    """
    parts = entry.name[1:].rsplit(".", 3)  # <name>.<pid>.<random>.tmp
    if len(parts) < 4 or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return True  # this process: another thread may be writing it
    try:
        started = psutil.Process(pid).create_time()
        changed = entry.lstat().st_mtime
    except (psutil.Error, OSError):
        return False
    return started <= changed + 1.0  # create_time is rounded; give it a second


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the temporary files and folders (``.<name>.<pid>.*.tmp``; any name when ``name`` is
    None) in ``folder`` whose writers are gone: what a crash in the middle of a write leaves.
    Those of live processes stay, so this is safe while others write. A folder set aside during a
    swap (``.<name>.*.old``) goes too once ``<name>`` is back; :func:`recover_dir` puts back one
    whose ``<name>`` is missing. Returns what it removed."""
    folder = Path(folder)
    stem = glob_escape(name) if name is not None else "*"
    removed: list[Path] = []
    try:
        entries = [*folder.glob(f".{stem}.*.tmp"), *folder.glob(f".{stem}.*.old")]
    except OSError:
        return removed
    for entry in entries:
        if _writer_alive(entry):
            continue
        if entry.suffix == ".old" and not (folder / entry.name[1:].rsplit(".", 3)[0]).exists():
            continue  # the only copy of its folder: recover_dir's to put back
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


def glob_escape(name: str) -> str:
    """``name`` as a glob pattern that matches only itself (``[``, ``*``, ``?`` escaped)."""
    return "".join(f"[{c}]" if c in "[]*?" else c for c in name)


def lock_holder(folder: str | os.PathLike) -> str:
    """Who holds ``folder``'s lock, as its lock file says ("pid 123 on host"), for messages."""
    try:
        lines = (Path(folder) / LOCK_FILE).read_text(encoding="utf-8", errors="replace").split("\n")
    except OSError:
        return "pid unknown"
    pid = lines[0].strip()
    host = lines[1].strip() if len(lines) > 1 else ""
    return f"pid {pid}{f' on {host}' if host else ''}" if pid.isdigit() else "pid unknown"


@contextlib.contextmanager
def exclusive_folder(folder: str | os.PathLike, wait: float = LOCK_WAIT) -> Iterator[Path]:
    """Hold ``folder/.lock`` while this process writes in ``folder`` (waiting up to ``wait`` s).

    A second writer would delete this one's temporary files and race its checkpoints; it gets a
    one-line error naming the holder's pid instead. The lock is ``filelock``'s: an OS lock
    (``flock``, Windows' ``LockFileEx``), which the system drops when its holder dies however it
    dies (``kill -9`` too), so a stale lock file never blocks a resumed run; where the file system
    has none, filelock's marker file, which it breaks when the pid in it is dead. The lock file is
    removed on the way out, so a finished folder holds only results.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(folder, err) from None
    path = folder / LOCK_FILE
    lock = filelock.FileLock(path, timeout=wait, thread_local=False)
    before = lock_holder(folder)  # filelock 3 empties the file when it tries to lock it
    try:
        lock.acquire()
    except filelock.Timeout:
        holder = lock_holder(folder)
        raise BamError(
            f"{folder}: in use by another bam process ({before if holder == 'pid unknown' else holder}); "
            "wait for it to finish, or write to another folder"
        ) from None
    except OSError as err:
        raise BamError(f"{path}: cannot lock ({err.strerror or type(err).__name__})") from None
    try:
        _record_holder(path)
        yield folder
    finally:
        # Unlinked while held: a waiter that opened this file sees it gone and takes the new one.
        with contextlib.suppress(OSError):
            os.unlink(path)
        lock.release()
        with contextlib.suppress(OSError):  # Windows cannot unlink an open file: now it can
            os.unlink(path)


def _record_holder(path: Path) -> None:
    """Write this process's pid and host into the held lock file (filelock's own marker, where
    the file system has no OS locks, already says so in the same two lines)."""
    mine = f"{os.getpid()}\n{socket.gethostname()}\n"
    with contextlib.suppress(OSError), open(path, "r+", encoding="utf-8") as handle:
        if handle.readline().strip() == str(os.getpid()):
            return
        handle.seek(0)
        handle.truncate()
        handle.write(mine)


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
