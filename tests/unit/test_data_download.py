"""`download_glue` from a local HTTP server with fixture archives; MRPC built as the official script does."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import re
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bam.data.download import CHECKSUMS, build_mrpc, download_glue
from bam.data.inspect import inspect_data_dir
from bam.data.load import default_data_dir
from bam.errors import BamError
from tests import helpers

GLUE_MIN = helpers.FIXTURES / "glue_min"
VENDORED = default_data_dir()

BOM = "\ufeff"
MRPC_HEADER = f"{BOM}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
ROW_A = (
    '1\t702876\t702977\tAmrozi accused his brother , whom he called " the witness " , of deliberately '
    'distorting his evidence .\tReferring to him as only " the witness " , Amrozi accused his brother of '
    "deliberately distorting his evidence ."
)
ROW_B = "0\t2108705\t2108831\tYucaipa owned Dominick 's before selling .\tYucaipa bought Dominick 's ."
ROW_C = (
    "1\t1330381\t1330521\tThey had published an advertisement .\tOn June 10 , the owners had published it ."
)
TEST_A = "1\t1089874\t1089925\tPCCW 's chief , Mike Butcher , will report .\tMike Butcher will report ."
TEST_B = "0\t3019446\t3019327\tThe world 's two largest automakers said .\tSales at GM declined ."

# The raw files as SentEval serves them: BOM header, CRLF line ends, stray trailing whitespace.
MRPC_RAW = {
    "msr_paraphrase_train.txt": "\r\n".join([MRPC_HEADER, ROW_A, ROW_B + " ", ROW_C]) + "\r\n",
    "msr_paraphrase_test.txt": "\r\n".join([MRPC_HEADER, TEST_A, TEST_B]) + "\r\n",
    "mrpc_dev_ids.tsv": "2108705\t2108831\r\n",
}
# What the official download_glue_data.py writes from them (derived by hand from its code).
MRPC_EXPECTED = {
    "MRPC/train.tsv": f"{MRPC_HEADER}\n{ROW_A}\n{ROW_C}\n",
    "MRPC/dev.tsv": f"{MRPC_HEADER}\n{ROW_B}\n",
    "MRPC/test.tsv": "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t"
    + TEST_A.split("\t", 1)[1]
    + "\n1\t"
    + TEST_B.split("\t", 1)[1]
    + "\n",
}


def test_build_mrpc_follows_the_official_script() -> None:
    raw = {name: text.encode("utf-8") for name, text in MRPC_RAW.items()}
    out = build_mrpc(raw["msr_paraphrase_train.txt"], raw["msr_paraphrase_test.txt"], raw["mrpc_dev_ids.tsv"])
    assert out == {name: text.encode("utf-8") for name, text in MRPC_EXPECTED.items()}
    assert out["MRPC/train.tsv"].startswith(b"\xef\xbb\xbfQuality\t")


def test_build_mrpc_regenerates_the_vendored_files_byte_for_byte() -> None:
    # Raw files reassembled from the official MRPC split (dev rows appended after train rows, test
    # rows given a label again); splitting them again must give back the exact official bytes.
    train, dev, test = ((VENDORED / "MRPC" / f"{s}.tsv").read_bytes() for s in ("train", "dev", "test"))
    train_lines = train.decode("utf-8").splitlines(keepends=True)
    dev_lines = dev.decode("utf-8").splitlines(keepends=True)
    test_lines = test.decode("utf-8").splitlines(keepends=True)
    raw_train = "".join(train_lines + dev_lines[1:]).encode("utf-8")
    dev_ids = "".join("\t".join(line.split("\t")[1:3]) + "\n" for line in dev_lines[1:]).encode("utf-8")
    raw_test = (train_lines[0] + "".join("1\t" + line.split("\t", 1)[1] for line in test_lines[1:])).encode()
    out = build_mrpc(raw_train, raw_test, dev_ids)
    assert out == {"MRPC/train.tsv": train, "MRPC/dev.tsv": dev, "MRPC/test.tsv": test}


def test_mrpc_bad_raw_row() -> None:
    with pytest.raises(BamError, match=r"msr_paraphrase_train\.txt line 3: 3 fields, expected 5"):
        build_mrpc(
            f"{MRPC_HEADER}\n{ROW_A}\n1\t2\t3\n".encode(), MRPC_RAW["msr_paraphrase_test.txt"].encode(), b""
        )


def test_checksum_table_equals_the_manifest() -> None:
    manifest = (VENDORED / "MANIFEST.md").read_text(encoding="utf-8")
    section = manifest.split("## Published checksums", 1)[1].split("\n\n", 2)[1]
    rows = re.findall(
        r"^\| (?:\(SentEval\) `…/senteval/senteval_data/)?`?([\w.-]+)`? \| (\d+) \| ([0-9a-f]{64}) \|$",
        section,
        flags=re.M,
    )
    assert {name: (int(size), sha) for name, size, sha in rows} == CHECKSUMS


# ---------------------------------------------------------------- a local server


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _folder(folder: str, prefix: str) -> dict[str, bytes]:
    return {f"{prefix}/{p.name}": p.read_bytes() for p in sorted((GLUE_MIN / folder).glob("*.tsv"))}


RTE_MEMBERS = {
    f"RTE/{s}.tsv": b"".join((VENDORED / "RTE" / f"{s}.tsv").read_bytes().splitlines(keepends=True)[:6])
    for s in ("train", "dev", "test")
}
ARCHIVES = {
    "RTE.zip": {**RTE_MEMBERS, "RTE/readme.txt": b"junk", "__MACOSX/RTE/._train.tsv": b"junk"},
    "QQP-clean.zip": _folder("QQP", "QQP"),
    "MNLI.zip": {**_folder("MNLI", "MNLI"), "MNLI/original/multinli_1.0_dev.jsonl": b"{}"},
    "QNLIv2.zip": _folder("QNLI", "QNLI"),
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict]:
    root = tmp_path / "www"
    (root / "glue" / "data").mkdir(parents=True)
    (root / "senteval").mkdir()
    files = {name: _zip(members) for name, members in ARCHIVES.items()}
    files["AX.tsv"] = (GLUE_MIN / "diagnostic" / "diagnostic.tsv").read_bytes()
    files.update({name: text.encode("utf-8") for name, text in MRPC_RAW.items()})
    for name, data in files.items():
        folder = "senteval" if name.startswith("msr_") else "glue/data"
        (root / folder / name).write_bytes(data)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield {
            "base_url": f"{base}/glue/data/",
            "senteval_url": f"{base}/senteval/",
            "checksums": {
                name: (len(data), hashlib.sha256(data).hexdigest()) for name, data in files.items()
            },
            "out": tmp_path / "glue_data",
        }
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _download(server: dict, tasks: list[str] | None, **overrides) -> list[Path]:
    kwargs = {k: server[k] for k in ("base_url", "senteval_url", "checksums")}
    return download_glue(server["out"], tasks, **{**kwargs, **overrides}, timeout=10)


def _files_under(folder: Path) -> set[str]:
    return (
        {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()
    )


def test_download_writes_the_official_layout(server: dict) -> None:
    messages: list[str] = []
    written = _download(server, ["RTE", "qqp", "mnli-m", "qnli", "ax", "mrpc"], progress=messages.append)
    out = server["out"]
    expected = {
        **RTE_MEMBERS,
        **{name: data for name, data in ARCHIVES["QQP-clean.zip"].items()},
        **{n: d for n, d in ARCHIVES["MNLI.zip"].items() if n.endswith(".tsv")},
        **ARCHIVES["QNLIv2.zip"],
        "diagnostic/diagnostic.tsv": (GLUE_MIN / "diagnostic" / "diagnostic.tsv").read_bytes(),
        **{name: text.encode("utf-8") for name, text in MRPC_EXPECTED.items()},
    }
    assert _files_under(out) == set(expected)  # archive extras (readme, __MACOSX, original/) left out
    assert sorted(written) == sorted(out / name for name in expected)
    for name, data in expected.items():
        assert (out / name).read_bytes() == data, name
    report = inspect_data_dir(out)["tasks"]
    assert set(report) == {"rte", "qqp", "mnli", "qnli", "ax", "mrpc"}
    assert report["mrpc"]["dev"] == {"rows": 1, "labels": {"0": 1}}
    assert any("RTE.zip" in m for m in messages)


def test_wrong_checksum_writes_nothing(server: dict) -> None:
    checksums = dict(server["checksums"])
    size, good = checksums["AX.tsv"]
    checksums["AX.tsv"] = (size, "0" * 64)
    with pytest.raises(BamError) as info:
        _download(server, ["rte", "ax"], checksums=checksums)
    message = str(info.value)
    assert f"{server['base_url']}AX.tsv: checksum mismatch" in message
    assert "0" * 64 in message and good in message and "\n" not in message
    assert _files_under(server["out"]) == set()  # RTE was fetched and verified first, yet not written


def test_wrong_size_is_a_mismatch(server: dict) -> None:
    checksums = dict(server["checksums"])
    size, sha = checksums["RTE.zip"]
    checksums["RTE.zip"] = (size - 1, sha)
    with pytest.raises(
        BamError, match=rf"RTE\.zip: checksum mismatch: expected sha256 {sha} \({size - 1} bytes\)"
    ):
        _download(server, ["rte"], checksums=checksums)
    assert _files_under(server["out"]) == set()


def test_unknown_checksum_is_refused(server: dict) -> None:
    checksums = {k: v for k, v in server["checksums"].items() if k != "WNLI.zip"}
    with pytest.raises(BamError, match=r"WNLI\.zip: no checksum known"):
        _download(server, ["wnli"], checksums=checksums)


def test_http_error_names_the_url(server: dict) -> None:
    # WNLI.zip is not served: 404.
    checksums = {**server["checksums"], "WNLI.zip": (1, "0" * 64)}
    with pytest.raises(
        BamError, match=rf"{re.escape(server['base_url'])}WNLI\.zip: download failed \(HTTP Error 404"
    ):
        _download(server, ["rte", "wnli"], checksums=checksums)
    assert _files_under(server["out"]) == set()


def test_archive_missing_a_split_writes_nothing(server: dict, tmp_path: Path) -> None:
    broken = _zip({"RTE/train.tsv": b"index\tsentence1\tsentence2\tlabel\n"})
    served = tmp_path / "www" / "glue" / "data" / "RTE.zip"  # the server fixture's folder
    served.write_bytes(broken)
    checksums = {**server["checksums"], "RTE.zip": (len(broken), hashlib.sha256(broken).hexdigest())}
    with pytest.raises(BamError, match=r"RTE\.zip: archive lacks RTE/dev\.tsv, RTE/test\.tsv"):
        _download(server, ["ax", "rte"], checksums=checksums)
    assert _files_under(server["out"]) == set()


def test_unknown_task() -> None:
    with pytest.raises(BamError, match="unknown task 'glue'"):
        download_glue("unused", ["glue"])
