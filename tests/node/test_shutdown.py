"""Stopping on SIGTERM: every port stops accepting first, then all drain under one deadline.

A msgpack client that keeps its connection open must not keep the HTTP port accepting (and
writing) while the node waits for it to close. Requests that never finish (half-sent ones, writes
stuck behind another process's lock on the database) must not hold the process past its
``--shutdown-grace-s``: at the deadline they are cancelled, unanswered, and a write cancelled
before the store started it is not made.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

from protocol.messages import CreateRequest
from protocol.records import HandleValue
from protocol.wire import encode_message, frame
from tests.node.conftest import (
    CREDENTIAL,
    HOST,
    PREFIX,
    NodeProcess,
    create,
    http,
    raw_put_head,
    value,
)


def test_sigterm_refuses_new_http_connections_while_a_msgpack_client_lingers(
    tmp_path: Path, spawn_node: Any
) -> None:
    # one process: with several, each stops on the signal forwarded to it, and one may still
    # take a connection for the instant before its own stop (and then answer it)
    proc: NodeProcess = spawn_node(tmp_path / "data", extra=["--workers", "1"])
    idle = socket.create_connection((HOST, proc.ports["tcp"]), timeout=10)
    assert http(proc, "GET", "/healthz").status == 200
    proc.proc.send_signal(signal.SIGTERM)
    # The node's FIN on the idle connection: it is draining msgpack, and waits for this client
    # to close its side. Every listener was closed before that.
    assert idle.recv(1) == b""
    refused = True
    try:
        late = socket.create_connection((HOST, proc.ports["http"]), timeout=5)
    except ConnectionError:  # refused (or reset from a backlog being closed)
        pass
    else:
        late.close()
        refused = False
    assert proc.proc.poll() is None  # still lingering for the idle client: it closes now
    idle.close()
    assert proc.proc.wait(10) == 0, proc.stderr()[-2000:]
    proc.close()
    assert refused, "a new HTTP connection was accepted while the node was stopping"


def _stored(data_dir: Path, *handles: str) -> list[str]:
    conn = sqlite3.connect(data_dir / "idnode.sqlite3")
    try:
        return [
            h
            for h in handles
            if conn.execute("SELECT 1 FROM handles WHERE hkey = ?", (h,)).fetchone()
        ]
    finally:
        conn.close()


def test_sigterm_ends_within_the_grace_with_requests_that_never_finish(
    tmp_path: Path, spawn_node: Any
) -> None:
    """Half-sent HTTP bodies and msgpack frames held open, and one create over each stuck
    behind another connection's write lock: the process still exits within its grace (and a
    little more to close), and the stuck creates, closed without an answer, are not written."""
    grace = 1.5
    data_dir = tmp_path / "data"
    proc: NodeProcess = spawn_node(data_dir, extra=["--shutdown-grace-s", str(grace)])
    create(proc, f"{PREFIX}/warm", value(1, "URL", "warm"))  # the credential is checked once
    held: list[socket.socket] = []
    for i in range(3):
        body = raw_put_head(f"{PREFIX}/half{i}", 1000) + b'{"values": ['
        half_http = socket.create_connection((HOST, proc.ports["http"]), timeout=10)
        half_http.sendall(body)
        half_tcp = socket.create_connection((HOST, proc.ports["tcp"]), timeout=10)
        half_tcp.sendall(struct.pack(">I", 100) + b"\x00" * 10)
        held += [half_http, half_tcp]
    lock = sqlite3.connect(data_dir / "idnode.sqlite3", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # the node's writer now waits (busy_timeout: 10 s)
    try:
        payload = json.dumps({"values": [value(1, "URL", "stuck")]}).encode()
        stuck_http = socket.create_connection((HOST, proc.ports["http"]), timeout=10)
        stuck_http.sendall(raw_put_head(f"{PREFIX}/stuck-http", len(payload)) + payload)
        request = CreateRequest(
            request_id=7,
            handle=f"{PREFIX}/stuck-tcp",
            values=(HandleValue(1, "URL", b"stuck"),),
            credential=CREDENTIAL,
        )
        stuck_tcp = socket.create_connection((HOST, proc.ports["tcp"]), timeout=10)
        stuck_tcp.sendall(frame(encode_message(request)))
        held += [stuck_http, stuck_tcp]
        time.sleep(0.5)  # both reach the store's queue
        proc.proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.proc.wait(grace + 1.5)
        except subprocess.TimeoutExpired:
            rc = None
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    if rc is None:
        proc.kill()
    assert rc == 0, f"still running {grace + 1.5}s after SIGTERM (grace {grace}s)"
    answers = []
    for sock in (stuck_http, stuck_tcp):
        try:
            answers.append(sock.recv(65536))
        except ConnectionError:
            answers.append(b"")
    for sock in held:
        sock.close()
    proc.close()
    assert answers == [b"", b""], answers  # closed without an answer...
    handles = [f"{PREFIX}/STUCK-HTTP", f"{PREFIX}/STUCK-TCP", f"{PREFIX}/HALF0"]
    assert _stored(data_dir, *handles) == []  # ...so not written
    assert _stored(data_dir, f"{PREFIX}/WARM") == [f"{PREFIX}/WARM"]
