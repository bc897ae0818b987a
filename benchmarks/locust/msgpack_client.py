"""A blocking msgpack client over TCP and UDP, built on ``protocol.wire`` (protocol/SPEC.md 1-2).

Made for Locust: plain ``socket`` calls, which Locust's gevent monkey-patching turns cooperative,
so one greenlet per user blocks only itself. One request is outstanding per client at a time (no
pipelining: a Locust user is one caller), answers are matched by request id and stray ones (a late
duplicate over UDP) are skipped. A response with a failure code is returned, not raised: the caller
decides what counts as failure. Only the lack of an answer raises (``OSError``, ``TimeoutError``, or
``NoAnswer`` for a malformed or closed stream), and a TCP connection that raised is dropped and
reopened on the next request.

UDP follows section 1.2: an answer with the ``TRUNCATED`` flag means "ask again over TCP", which
``UDPClient.request`` does through its own ``TCPClient``; a resolution (idempotent) is retried after
a timeout, a write is sent once.
"""

from __future__ import annotations

import dataclasses
import itertools
import socket
import time

from protocol.errors import ProtocolError
from protocol.messages import Request, ResolveRequest, Response, TruncatedResponse
from protocol.wire import (
    ANSWER_LIMITS,
    NEED_DATA,
    Connection,
    decode_message,
    encode_message,
    frame,
)

_MAX_REQUEST_ID = 0xFFFFFFFF
_UDP_MAX_DATAGRAM = 65535


class NoAnswer(Exception):
    """No usable answer came (the stream closed, or the answer was malformed)."""


class _RequestIds:
    """Request ids 1 .. 2**32-1 in turn: 0 is what a server answers when it could not read one."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def next(self) -> int:
        return next(self._ids) % _MAX_REQUEST_ID + 1


def _with_id(request: Request, request_id: int) -> Request:
    return dataclasses.replace(request, request_id=request_id)


class TCPClient:
    """One TCP connection carrying length-prefixed msgpack frames; reconnects after a failure."""

    def __init__(self, host: str, port: int, timeout_s: float = 2.0) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._wire = Connection(ANSWER_LIMITS)
        self._ids = _RequestIds()

    def _connect(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._wire = Connection(ANSWER_LIMITS)
        return self._sock

    def request(self, request: Request) -> tuple[Response, int]:
        """Send ``request`` (with a fresh request id) and return its answer and its size in bytes."""
        request = _with_id(request, self._ids.next())
        try:
            return self._exchange(request)
        except BaseException:
            self.close()  # the stream's state is unknown: start over on the next request
            raise

    def _exchange(self, request: Request) -> tuple[Response, int]:
        sock = self._connect()
        sock.sendall(frame(encode_message(request)))
        deadline = time.monotonic() + self.timeout_s
        received = 0
        while True:
            try:
                event = self._wire.next_event()
            except ProtocolError as exc:
                raise NoAnswer(f"malformed answer: {exc.message}") from exc
            if event is NEED_DATA:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no answer within {self.timeout_s:g} s")
                sock.settimeout(remaining)
                data = sock.recv(65536)
                if not data:
                    raise NoAnswer("the node closed the connection")
                received += len(data)
                self._wire.receive_data(data)
                continue
            if isinstance(event, Response) and event.request_id == request.request_id:
                return event, received
            # anything else (an answer to an earlier, abandoned request) is skipped

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()


class UDPClient:
    """A connected UDP socket; truncated answers are asked again over TCP (``tcp`` client)."""

    def __init__(
        self, host: str, port: int, tcp: TCPClient, timeout_s: float = 2.0, attempts: int = 3
    ) -> None:
        self.host = host
        self.port = port
        self.tcp = tcp
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self._sock: socket.socket | None = None
        self._ids = _RequestIds()

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.connect((self.host, self.port))
            self._sock = sock
        return self._sock

    def request(self, request: Request) -> tuple[Response, int, bool]:
        """The answer, its size, and whether it had to come over TCP (a truncated UDP answer).

        A resolution gets ``attempts`` tries of ``timeout_s`` each; any other request one try.
        """
        attempts = self.attempts if isinstance(request, ResolveRequest) else 1
        for attempt in range(1, attempts + 1):
            request = _with_id(request, self._ids.next())
            try:
                response, size = self._exchange(request)
            except TimeoutError:
                if attempt == attempts:
                    raise TimeoutError(
                        f"no answer within {self.timeout_s:g} s"
                        + (f" (after {attempts} attempts)" if attempts > 1 else "")
                    ) from None
                continue
            if isinstance(response, TruncatedResponse):
                answer, tcp_size = self.tcp.request(request)
                return answer, size + tcp_size, True
            return response, size, False
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(self, request: Request) -> tuple[Response, int]:
        sock = self._connect()
        sock.send(encode_message(request))
        deadline = time.monotonic() + self.timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            data = sock.recv(_UDP_MAX_DATAGRAM)
            try:
                answer = decode_message(data, ANSWER_LIMITS)
            except ProtocolError as exc:
                if exc.request_id == request.request_id:
                    raise NoAnswer(f"malformed answer: {exc.message}") from exc
                continue  # not ours
            if isinstance(answer, Response) and answer.request_id == request.request_id:
                return answer, len(data)

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()
        self.tcp.close()
