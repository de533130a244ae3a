"""Fetch the official GLUE files (``bam data download``), verified before anything is written.

Every download is checked against the published byte size and SHA-256 in :data:`CHECKSUMS` (from
``resources/glue/MANIFEST.md``); only when *all* requested downloads match is anything written to
the output folder, file by file and atomically. The result has the layout of the official
``download_glue_data.py`` (``<Folder>/<split>.tsv``), MRPC included: GLUE does not host MRPC, so
it is built from the raw Microsoft files exactly as that script builds it (see :func:`build_mrpc`).
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import io
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

from bam.errors import BamError
from bam.fileio import atomic_write_bytes
from bam.tasks import get_task
from bam.tasks.glue import GLUE_TASKS

GLUE_URL = "https://dl.fbaipublicfiles.com/glue/data/"
SENTEVAL_URL = "https://dl.fbaipublicfiles.com/senteval/senteval_data/"

# Published byte sizes and SHA-256 of the official downloads (the HF `glue` builder's records).
CHECKSUMS: dict[str, tuple[int, str]] = {
    "CoLA.zip": (376971, "f212fcd832b8f7b435fb991f101abf89f96b933ab400603bf198960dfc32cbff"),
    "SST-2.zip": (7439277, "d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa"),
    "QQP-clean.zip": (41696084, "40e7c862c04eb26ee04b67fd900e76c45c6ba8e6d8fab4f8f1f8072a1a3fbae0"),
    "STS-B.zip": (802872, "e60a6393de5a8b5b9bac5020a1554b54e3691f9d600b775bd131e613ac179c85"),
    "MNLI.zip": (312783507, "e7c1d896d26ed6caf700110645df426cc2d8ebf02a5ab743d5a5c68ac1c83633"),
    "QNLIv2.zip": (10627589, "e634e78627a29adaecd4f955359b22bf5e70f2cbd93b493f2d624138a0c0e5f5"),
    "RTE.zip": (697150, "6bf86de103ecd335f3441bd43574d23fef87ecc695977a63b82d5efb206556ee"),
    "WNLI.zip": (28999, "ae0e8e4d16f4d46d4a0a566ec7ecceccfd3fbfaa4a7a4b4e02848c0f2561ac46"),
    "AX.tsv": (222257, "0e13510b1bb14436ff7e2ee82338f0efb0133ecf2e73507a697dc210db3f05fd"),
    "mrpc_dev_ids.tsv": (6222, "971d7767d81b997fd9060ade0ec23c4fc31cbb226a55d1bd4a1bac474eb81dc7"),
    "msr_paraphrase_train.txt": (1047044, "60a9b09084528f0673eedee2b69cb941920f0b8cd0eeccefc464a98768457f89"),
    "msr_paraphrase_test.txt": (441275, "a04e271090879aaba6423d65b94950c089298587d9c084bf9cd7439bd785f784"),
}

# What each task downloads: ("zip", name) archives hold the task's split files at their table paths;
# ("file", name) is the single split file itself; MRPC is built from its three raw files.
SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "cola": ("zip", ("CoLA.zip",)),
    "sst2": ("zip", ("SST-2.zip",)),
    "mrpc": ("mrpc", ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt", "mrpc_dev_ids.tsv")),
    "stsb": ("zip", ("STS-B.zip",)),
    "qqp": ("zip", ("QQP-clean.zip",)),
    "mnli": ("zip", ("MNLI.zip",)),
    "qnli": ("zip", ("QNLIv2.zip",)),
    "rte": ("zip", ("RTE.zip",)),
    "wnli": ("zip", ("WNLI.zip",)),
    "ax": ("file", ("AX.tsv",)),
}
_SENTEVAL_FILES = {"msr_paraphrase_train.txt", "msr_paraphrase_test.txt"}
_MRPC_TEST_HEADER = "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n"


def download_glue(
    out_dir: str | Path,
    tasks: list[str] | None = None,
    base_url: str = GLUE_URL,
    senteval_url: str = SENTEVAL_URL,
    *,
    checksums: Mapping[str, tuple[int, str]] | None = None,
    timeout: float = 60.0,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Download, verify and unpack GLUE ``tasks`` (default: all) into ``out_dir``; return the files written.

    ``checksums`` replaces :data:`CHECKSUMS` (tests serve their own archives). A download whose
    size or SHA-256 differs raises :class:`BamError` before anything is written to ``out_dir``.
    """
    table = CHECKSUMS if checksums is None else checksums
    names = list(SOURCES) if tasks is None else list(dict.fromkeys(get_task(t).name for t in tasks))
    for name in names:
        if name not in SOURCES:
            raise BamError(f"task {name!r} cannot be downloaded (downloadable: {', '.join(SOURCES)})")
    out = Path(out_dir)
    say = progress or (lambda _message: None)
    with tempfile.TemporaryDirectory(prefix="bam-download-") as scratch:
        fetched: dict[str, Path] = {}
        for name in names:  # 1. fetch and verify everything, writing only to scratch space
            for file in SOURCES[name][1]:
                if file not in fetched:
                    url = (senteval_url if file in _SENTEVAL_FILES else base_url).rstrip("/") + "/" + file
                    say(f"downloading {url}")
                    fetched[file] = _fetch_verified(url, table, file, Path(scratch) / file, timeout)
        # 2. check that every archive holds its files, so a bad one also leaves out_dir untouched
        plans = {relative: read for name in names for relative, read in _plan(name, fetched).items()}
        for relative in plans:
            _check_inside(out, relative)
        written = []
        for relative, read in plans.items():  # 3. write, one file at a time and atomically
            atomic_write_bytes(out / relative, read())
            written.append(out / relative)
    say(f"wrote {len(written)} files under {out}")
    return written


def _check_inside(out: Path, relative: str) -> None:
    """Every path written is a plain relative path under ``out``: no ``..``, no absolute path."""
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or ".." in parts or "\\" in relative or ":" in relative:
        raise BamError(f"{relative!r}: not a path inside {out}; nothing was written")


def _fetch_verified(
    url: str, table: Mapping[str, tuple[int, str]], file: str, dest: Path, timeout: float
) -> Path:
    if file not in table:
        raise BamError(f"{url}: no checksum known for {file!r}; refusing to use an unverified download")
    size, expected = table[file]
    digest = hashlib.sha256()
    got = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as handle:
            while chunk := response.read(1 << 20):
                got += len(chunk)
                if got > size:  # never store more than the published size
                    break
                digest.update(chunk)
                handle.write(chunk)
    except (OSError, http.client.HTTPException) as err:  # URLError, HTTPError and timeouts are OSErrors
        reason = err if isinstance(err, urllib.error.HTTPError) else getattr(err, "reason", None) or err
        raise BamError(f"{url}: download failed ({reason})") from None
    actual = digest.hexdigest()
    if got != size or actual != expected:
        got_text = f"more than {size} bytes" if got > size else f"sha256 {actual} ({got} bytes)"
        raise BamError(
            f"{url}: checksum mismatch: expected sha256 {expected} ({size} bytes), "
            f"got {got_text}; nothing was written"
        )
    return dest


def _plan(name: str, fetched: dict[str, Path]) -> dict[str, Callable[[], bytes]]:
    """How to produce each file of task ``name``, keyed by its path under the output folder.

    Archives are opened and checked now but read later, one member at a time (MNLI's train.tsv
    alone is hundreds of MiB).
    """
    task = GLUE_TASKS[name]
    kind, sources = SOURCES[name]
    paths = [spec.path for spec in task.splits.values()]
    if kind == "file":
        return {paths[0]: fetched[sources[0]].read_bytes}
    if kind == "mrpc":
        train, test, dev_ids = (fetched[file].read_bytes() for file in sources)
        files = build_mrpc(train, test, dev_ids)
        return {path: functools.partial(bytes, data) for path, data in files.items()}
    archive = fetched[sources[0]]
    try:
        with zipfile.ZipFile(archive) as zf:
            members = set(zf.namelist())
    except zipfile.BadZipFile as err:
        raise BamError(f"{sources[0]}: not a valid zip archive ({err})") from None
    lacking = [p for p in paths if p not in members]
    if lacking:
        raise BamError(f"{sources[0]}: archive lacks {', '.join(lacking)}")
    # Member names come from the task table, never from the archive: nothing can escape out_dir.
    return {p: functools.partial(_read_member, archive, p) for p in paths}


def _read_member(archive: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    except (zipfile.BadZipFile, OSError) as err:
        raise BamError(f"{archive.name}: cannot read {member} ({err})") from None


def build_mrpc(train_raw: bytes, test_raw: bytes, dev_ids_raw: bytes) -> dict[str, bytes]:
    """MRPC's ``train.tsv``, ``dev.tsv`` and ``test.tsv`` from the raw Microsoft files.

    Byte-for-byte what the official ``download_glue_data.py`` writes: text read with universal
    newlines; the raw train header (with its UTF-8 BOM) copied into train and dev; every row
    stripped and re-joined with tabs; rows whose ``(#1 ID, #2 ID)`` is listed in the dev ids go to
    dev; the test file gets an ``index`` header and the row number in place of the label.
    """
    dev_ids = {tuple(line.strip().split("\t")) for line in _lines(dev_ids_raw)}
    train_lines = _lines(train_raw)
    if not train_lines:
        raise BamError("msr_paraphrase_train.txt: empty file")
    train, dev = [train_lines[0]], [train_lines[0]]
    for number, line in enumerate(train_lines[1:], start=2):
        label, id1, id2, s1, s2 = _fields(line, "msr_paraphrase_train.txt", number)
        (dev if (id1, id2) in dev_ids else train).append(f"{label}\t{id1}\t{id2}\t{s1}\t{s2}\n")
    test = [_MRPC_TEST_HEADER]
    for index, line in enumerate(_lines(test_raw)[1:]):
        _label, id1, id2, s1, s2 = _fields(line, "msr_paraphrase_test.txt", index + 2)
        test.append(f"{index}\t{id1}\t{id2}\t{s1}\t{s2}\n")
    return {
        f"MRPC/{split}.tsv": "".join(lines).encode("utf-8")
        for split, lines in (("train", train), ("dev", dev), ("test", test))
    }


def _lines(raw: bytes) -> list[str]:
    # The same line splitting as the official script's text-mode open (universal newlines).
    try:
        return io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8").readlines()
    except UnicodeDecodeError as err:
        raise BamError(f"MRPC raw file: not UTF-8 text (byte {err.start})") from None


def _fields(line: str, file: str, number: int) -> list[str]:
    fields = line.strip().split("\t")
    if len(fields) != 5:
        raise BamError(f"{file} line {number}: {len(fields)} fields, expected 5")
    return fields
