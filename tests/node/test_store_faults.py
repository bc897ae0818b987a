"""The store under faults an operator meets: a damaged database file, a full disk.

Each test runs a real node on a real SQLite file and damages or starves it from outside, then
checks what clients and ``/readyz`` see.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.cli import main as cli_main
from tests.node.conftest import PREFIX, http, make_config, resolve, running_node, value

PAGE = 4096  #: SQLite's default page size, which the node keeps
INDEX_LEAF = 0x0A  #: b-tree page type of a WITHOUT ROWID table's leaf


def _handles_pages(db: Path) -> tuple[int, list[int]]:
    """The ``handles`` table's root page and every leaf page of the file (1-based numbers)."""
    conn = sqlite3.connect(db)
    try:
        query = "SELECT rootpage FROM sqlite_master WHERE name = 'handles'"
        (root,) = conn.execute(query).fetchone()
    finally:
        conn.close()
    data = db.read_bytes()
    leaves = [n + 1 for n in range(1, len(data) // PAGE) if data[n * PAGE] == INDEX_LEAF]
    return root, leaves


def _damage(db: Path, page: int) -> None:
    """Overwrite the b-tree header of ``page``, as a bad sector or a stray write would."""
    with open(db, "r+b") as f:
        f.seek((page - 1) * PAGE + (100 if page == 1 else 0))
        f.write(b"\x77" * 8)


def _stored(data_dir: Path, count: int) -> list[str]:
    """A node's store in ``data_dir`` with ``count`` handles, stopped cleanly: their names."""
    names = [f"{PREFIX}/damage-{i:03d}" for i in range(count)]
    with running_node(make_config(data_dir)) as node:
        for name in names:
            body = {"values": [value(1, "URL", "https://example.com/" + "x" * 300)]}
            assert http(node, "PUT", f"/api/handles/{name}", body=body, auth=True).status == 201
    return names


def _refused_to_serve(data_dir: Path) -> str:
    """``idnode serve`` on ``data_dir``, refused in one line (exit 1): its stderr."""
    argv = ["serve", "--data-dir", str(data_dir), "--http-port", "0", "--port", "0"]
    done = subprocess.run(
        [sys.executable, "-m", "node", *argv, "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "cannot open the store" in done.stderr, done.stderr
    return done.stderr


def test_a_damaged_handles_root_is_refused_at_start(tmp_path: Path) -> None:
    """Opening reads the schema, which touches no page of ``handles``: the node started, said
    ready, and failed every request."""
    data = tmp_path / "data"
    _stored(data, 3)
    root, _ = _handles_pages(data / "idnode.sqlite3")
    _damage(data / "idnode.sqlite3", root)
    assert "malformed" in _refused_to_serve(data)


def test_damage_found_while_serving_makes_the_node_unready(tmp_path: Path) -> None:
    """A damaged page deeper in is found by the first request that reads it: that request and
    the next get ERROR saying so, and ``/readyz`` turns 503 (it said ready with every request
    failing). Records elsewhere in the file still resolve."""
    data = tmp_path / "data"
    names = _stored(data, 40)
    root, leaves = _handles_pages(data / "idnode.sqlite3")
    assert len(leaves) >= 3, "the table should span several leaves"
    _damage(data / "idnode.sqlite3", [p for p in leaves if p != root][-1])
    with running_node(make_config(data)) as node:
        assert http(node, "GET", "/readyz").status == 200
        statuses = {}
        for name in names:
            reply = resolve(node, name)
            statuses[name] = reply.status
            if reply.status != 200:
                assert reply.status == 500
                assert reply.json["responseCode"] == 2
                assert "the database file is damaged" in reply.json["message"]
        assert 500 in statuses.values() and 200 in statuses.values()
        ready = http(node, "GET", "/readyz")
        assert ready.status == 503
        assert ready.json["status"] == "store damaged"
        assert "malformed" in ready.json["store"]["damaged"]


@contextlib.contextmanager
def _small_disk(size: str) -> Iterator[Path]:
    """A file system of ``size`` (tmpfs) for the block; skips where mounting is not allowed."""
    where = Path(tempfile.mkdtemp(prefix="idnode-disk-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        where.rmdir()
        pytest.skip("cannot mount a small file system here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)
        where.rmdir()


def test_a_full_disk_fails_writes_clearly_keeps_reads_and_recovers(tmp_path: Path) -> None:
    """Writes get ERROR saying the disk is full (the message said only "the store failed"),
    acknowledged records still resolve, and once space is freed writes work without a restart."""
    with _small_disk("4m") as disk:
        with running_node(make_config(disk / "data")) as node:
            one = [value(1, "URL", "https://example.com/" + "y" * 2000)]
            kept = http(node, "PUT", f"/api/handles/{PREFIX}/kept", body={"values": one}, auth=True)
            assert kept.status == 201
            filler = disk / "filler"
            with open(filler, "wb") as f, contextlib.suppress(OSError):
                while True:  # until the disk is full
                    f.write(b"\0" * 65536)
            for i in range(3):
                full = http(
                    node, "PUT", f"/api/handles/{PREFIX}/full-{i}", body={"values": one}, auth=True
                )
                assert full.status == 500, full.body
                assert full.json["responseCode"] == 2
                assert "the disk is full" in full.json["message"], full.json
            assert resolve(node, f"{PREFIX}/kept").status == 200
            assert http(node, "GET", "/readyz").status == 200  # not damaged: only full
            filler.unlink()
            after = http(
                node, "PUT", f"/api/handles/{PREFIX}/after", body={"values": one}, auth=True
            )
            assert after.status == 201
            assert resolve(node, f"{PREFIX}/full-0").status == 404


def test_a_seed_too_big_for_a_small_disk_says_how_much_in_mb(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It said "needs about 0.0 GB ..., which has 0.0 GB free" on a disk of megabytes."""
    with _small_disk("4m") as disk:
        argv = ["seed", "--data-dir", str(disk / "data"), "--identifiers", "5000"]
        assert cli_main([*argv, "--admin-secret", "x", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "needs about 7.5 MB in" in err and " MB free" in err, err


def test_a_store_on_a_full_disk_is_refused_at_start_saying_so(tmp_path: Path) -> None:
    """SQLite cannot make its WAL index and says only "disk I/O error"."""
    data = tmp_path / "data"
    _stored(data, 1)
    with _small_disk("4m") as disk:
        shutil.copytree(data, disk / "data")
        with open(disk / "filler", "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
        assert "(the disk is full)" in _refused_to_serve(disk / "data")


def test_a_database_file_removed_under_the_node_fails_writes_instead_of_losing_them(
    tmp_path: Path,
) -> None:
    """SQLite goes on writing to a file deleted under it: every write acknowledged from then on
    would be gone at the next start. The writer notices the file is not the one it opened."""
    data = tmp_path / "data"
    body = {"values": [value(1, "URL", "https://example.com/a")]}
    with running_node(make_config(data)) as node:
        assert (
            http(node, "PUT", f"/api/handles/{PREFIX}/before", body=body, auth=True).status == 201
        )
        shutil.rmtree(data)  # the data dir removed, as a careless clean-up would
        reply = http(node, "PUT", f"/api/handles/{PREFIX}/after", body=body, auth=True)
        assert reply.status == 500 and reply.json["responseCode"] == 2, reply.body
        assert "the database file was removed or replaced" in reply.json["message"]
        ready = http(node, "GET", "/readyz")
        assert ready.status == 503, ready.body
        assert "removed or replaced" in ready.json["store"]["damaged"]
        assert resolve(node, f"{PREFIX}/before").status == 200  # reads go on meanwhile
