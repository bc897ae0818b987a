"""msgpack adapters: length-prefixed frames over TCP (pipelined) and one message per UDP datagram.

Both feed bytes to ``protocol.wire`` and hand typed requests to the service core; a plain resolution
whose bytes were answered from the cache before is answered by those bytes (``Replies``), once the
service confirms its cache entry still holds. A bad message in a good frame gets an error answer and
the connection goes on; a frame over the limit cannot be skipped, so it is answered and the
connection closed, as after too many bad messages in a row: no more of its requests are read, and
those read before it are answered first (``TCPProtocol.drain``, within ``shutdown_grace_s``); a
client that shuts down its sending side gets every answer before the close. A connection silent, or
sending one frame, for ``tcp_idle_timeout_s`` is closed (a frame trickling in holds a connection as
silence does). UDP requests beyond the queue bound are dropped (the client retries), and answers
over 1,400 bytes go out truncated so the client asks again over TCP. Every answer, refusals of bad
messages included, is counted (``node.metrics``) from the moment its request was decoded until the
answer is handed to the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from time import perf_counter
from typing import Any

from node.metrics import Rejections, TransportMetrics
from node.service import Resolution, Service
from node.transports.replies import Replies
from protocol.codes import OpCode, ResponseCode
from protocol.errors import ProtocolError
from protocol.messages import ErrorResponse, Message, Request, ResolveRequest, Response
from protocol.wire import (
    UDP_MAX_ANSWER_BYTES,
    Connection,
    WireLimits,
    decode_message,
    encode_body,
    encode_datagram,
    encode_message,
    encode_with_body,
    frame,
)

log = logging.getLogger("idnode.msgpack")
MAX_IN_FLIGHT_PER_CONNECTION = 256
MAX_CONSECUTIVE_ERRORS = 16  #: bad messages in a row before a TCP connection is closed
#: on shutdown, how long a connection that got its last answers and our FIN may take to close
#: (within the node's grace)
LINGER_S = 1.0

#: a response and, when it came from the cache, its already packed msgpack body
Answer = tuple[Response, bytes | None]
_SUCCESS = int(ResponseCode.SUCCESS)


def _error_for(exc: ProtocolError) -> ErrorResponse:
    return ErrorResponse(
        request_id=exc.request_id,
        code=exc.code,
        answers=OpCode(exc.op),
        message=exc.message,
    )


def _not_a_request(message: Message) -> ErrorResponse:
    error = ProtocolError("a server accepts requests only")
    error.request_id, error.op = message.request_id, message.op
    return _error_for(error)


def _with_body(service: Service, request: ResolveRequest, resolution: Resolution) -> Answer:
    """The response and, for a cacheable answer, its msgpack body kept in the cache entry."""
    response, entry, key = resolution
    if entry is None:
        return response, None
    variant = entry.variant("msgpack", request.handle)
    return response, service.cache.encoded(key, entry, variant, lambda: encode_body(response))


def answer_now(service: Service, request: Request) -> Answer | None:
    """The answer when the cache gives it without waiting (most resolutions), else None."""
    if type(request) is ResolveRequest:
        resolution = service.resolve_cached(request)
        if resolution is not None:
            return _with_body(service, request, resolution)
    return None


async def answer(service: Service, request: Request) -> Answer:
    """The service's answer (resolution through ``resolve`` to share its cache path)."""
    if type(request) is ResolveRequest:
        return _with_body(service, request, await service.resolve(request))
    return await service.handle(request), None


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("request failed", exc_info=task.exception())


class TCPProtocol(asyncio.Protocol):
    """One client connection; registers itself in ``connections`` for orderly shutdown."""

    def __init__(
        self,
        service: Service,
        limits: WireLimits,
        connections: set[Any],
        metrics: TransportMetrics | None = None,
        replies: Replies | None = None,
    ) -> None:
        self.service = service
        self.metrics = metrics or TransportMetrics("tcp", (), Rejections())
        self.replies = replies or Replies(service)
        self._resolutions = self.metrics.op(OpCode.RESOLUTION)
        self.conn = Connection(limits)
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.idle_timeout_s = service.config.tcp_idle_timeout_s
        self._idle: asyncio.TimerHandle | None = None
        self._active = 0.0  #: loop time of the last bytes received
        #: loop time since which the client has been sending the partial frame buffered (None:
        #: none, or the connection held); a frame trickling in for longer than the idle timeout
        #: closes the connection as silence would
        self._partial_since: float | None = None
        self._held = False  #: reads no requests until ``_resume``
        self._unread = False  #: answers wait in the transport for the client to read them
        self._draining = False  #: stopping: reads no more requests
        self._eof = False  #: the client sent all its requests (it may still read)
        self._errors = 0  #: bad messages since the last good one
        self._closing: asyncio.Task[None] | None = None  #: closing after a fatal error
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.connections.add(self)
        self._loop_time = asyncio.get_running_loop().time
        self._touch()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
        if not self._lost.done():
            self._lost.set_result(None)

    def eof_received(self) -> bool:
        """The client shut down its sending side, and may still read: its requests still
        running or not yet read (held) are answered before the close (``_close_if_answered``).
        Returning False would let the transport close at once, dropping those answers."""
        self._eof = True
        self._close_if_answered()
        return True

    def _close_if_answered(self) -> None:
        """After the client's EOF, close once nothing it asked waits for an answer (a partial
        frame is never answered); the answers already written go out first."""
        if (
            self._eof
            and not self.tasks
            and (self._draining or not self._held)  # held: requests left to read
            and self.transport is not None
        ):
            self.transport.close()

    def _touch(self) -> None:
        """Start the idle timer; activity only moves ``_active`` (no timer churn per request)."""
        loop = asyncio.get_running_loop()
        self._active = loop.time()
        self._idle = loop.call_later(self.idle_timeout_s, self._on_idle)

    def _on_idle(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        # the time the connection has stalled: silent, or sending one frame all that time
        since = self._active if self._partial_since is None else self._partial_since
        stalled = now - since
        if stalled < self.idle_timeout_s or self.tasks:  # active since: wait for the rest
            wait = self.idle_timeout_s - stalled if not self.tasks else self.idle_timeout_s
            self._idle = loop.call_later(max(wait, 0.001), self._on_idle)
        elif self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._draining:  # read after the last answers only to be dropped (see ``drain``)
            return
        self._active = now = self._loop_time()
        conn = self.conn
        expected = conn.buffered() + len(data)
        conn.receive_data(data)
        self._serve_received()
        left = conn.buffered()
        if not left or self._held:  # nothing partial, or left unread by us, not by the client
            self._partial_since = None
        elif left < expected or self._partial_since is None:  # a frame taken: a new one began
            self._partial_since = now

    def _serve_received(self) -> None:
        """Answer or start every whole request received, until the connection must wait: too
        many in flight, or answers the client has not read piling up (``pause_writing``).
        What is left stays in ``conn`` until ``_resume``."""
        conn = self.conn
        metrics = self.metrics
        replies = self.replies
        while not self._held:
            started = perf_counter()
            try:
                payload = conn.next_payload()
                if type(payload) is not bytes:
                    return
                again = replies.answer(payload)
                if again is not None:
                    self._errors = 0
                    if self.transport is not None and not self.transport.is_closing():
                        self.transport.write(frame(again))
                    self._resolutions.done(_SUCCESS, started)
                    continue
                event = decode_message(payload, conn.limits)
            except ProtocolError as exc:
                self._refuse(_error_for(exc), exc.fatal, started)
                if self.transport is None or self.transport.is_closing():
                    return
                continue
            if not isinstance(event, Request):
                self._refuse(_not_a_request(event), False, started)
                continue
            self._errors = 0
            now = answer_now(self.service, event)
            if now is not None:
                self._write(*now)
                metrics.for_request(event).done(now[0].code, started)
                replies.learn(payload, event, *now)
                continue
            task = asyncio.ensure_future(self._serve(event, started))
            self.tasks.add(task)
            task.add_done_callback(self._done)
            if len(self.tasks) >= MAX_IN_FLIGHT_PER_CONNECTION:
                self._hold()

    def _hold(self) -> None:
        self._held = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def _resume(self) -> None:
        """Go on once the answers have drained and fewer than half the limit are in flight."""
        if (
            not self._held
            or self._draining
            or self._unread
            or len(self.tasks) >= MAX_IN_FLIGHT_PER_CONNECTION // 2
            or self.transport is None
            or self.transport.is_closing()
        ):
            return
        self._held = False
        self._serve_received()  # what was received before the wait
        if not self._held:  # held again, or stopped by a fatal bad message (``_refuse``)
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        """The transport holds more answers than its high-water mark: the client reads them
        slower than it asks. Take no more of its requests (bounded memory) until they drain."""
        self._unread = True
        self._hold()

    def resume_writing(self) -> None:
        self._unread = False
        self._resume()
        self._close_if_answered()

    def _refuse(self, error: ErrorResponse, fatal: bool, started: float) -> None:
        """Answer a bad message; close on a fatal one or after too many in a row, once the
        requests read before it are answered: closing at once would drop their answers (and
        run their writes unacknowledged), and the unread rest would make the close a reset
        that can drop the answers already sent."""
        self._write(error)
        self.metrics.op(error.op).done(error.code, started)
        self._errors += 1
        if (fatal or self._errors >= MAX_CONSECUTIVE_ERRORS) and self._closing is None:
            self.stop_reading()  # the rest of the stream is not read (``_serve_received`` stops)
            deadline = asyncio.get_running_loop().time() + self.service.config.shutdown_grace_s
            self._closing = asyncio.ensure_future(self.drain(deadline))
            self._closing.add_done_callback(_log_failure)

    async def _serve(self, request: Request, started: float) -> None:
        metrics = self.metrics
        metrics.in_progress += 1
        try:
            response, body = await answer(self.service, request)
        finally:
            metrics.in_progress -= 1
        self._write(response, body)
        metrics.for_request(request).done(response.code, started)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        _log_failure(task)
        self._resume()
        self._close_if_answered()

    def _write(self, response: Response, body: bytes | None = None) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if body is None:
                self.transport.write(frame(encode_message(response)))
            else:
                self.transport.write(frame(encode_with_body(response, body)))

    def stop_reading(self) -> None:
        """Read no more requests (one not read is neither run nor answered)."""
        self._draining = True
        self._held = True  # ends the loop of ``_serve_received``; ``_resume`` no longer resumes
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    async def drain(self, deadline: float) -> None:
        """Read no more requests, let those in flight finish until ``deadline`` (loop time),
        then close after the answers (on shutdown, and after a fatal bad message: ``_refuse``).
        Those still running at the deadline are cancelled: not answered, and their writes not
        made unless already started.

        Closing a socket that holds unread requests sends a reset, and a reset makes the
        client's system drop answers its program has not read yet. So the answers are followed
        by a FIN, what the client still sends is read and dropped, and the socket is closed once
        the client closes its side (or after ``LINGER_S``, or at the deadline).
        """
        self.stop_reading()
        transport = self.transport
        if transport is None:
            return
        await _finish(self.tasks, deadline)
        loop = asyncio.get_running_loop()
        if not transport.is_closing():
            if transport.can_write_eof():
                transport.write_eof()
            transport.resume_reading()
            linger = min(LINGER_S, deadline - loop.time())
            if linger > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._lost), linger)
        transport.close()


async def _finish(tasks: set[asyncio.Task[None]], deadline: float) -> None:
    """Let ``tasks`` (requests in flight) finish until ``deadline`` (loop time), then cancel
    those still running: not answered, and their writes not made unless already started."""
    if tasks:
        timeout = max(deadline - asyncio.get_running_loop().time(), 0)
        _, late = await asyncio.wait(list(tasks), timeout=timeout)
        for task in late:
            task.cancel()


class UDPProtocol(asyncio.DatagramProtocol):
    """One socket for every client; at most ``udp_queue_len`` requests in progress."""

    def __init__(
        self,
        service: Service,
        limits: WireLimits,
        metrics: TransportMetrics | None = None,
        replies: Replies | None = None,
    ) -> None:
        self.service = service
        self.limits = limits
        self.metrics = metrics or TransportMetrics("udp", (), Rejections())
        self.replies = replies or Replies(service)
        self._resolutions = self.metrics.op(OpCode.RESOLUTION)
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.max_pending = service.config.udp_queue_len
        self.dropped = 0
        self._draining = False  #: stopping: takes no more requests

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self._draining:  # not run, so not answered: the client retries another server
            return
        if len(self.tasks) >= self.max_pending:
            self.dropped += 1
            self.metrics.dropped += 1
            return
        started = perf_counter()
        again = self.replies.answer(data)
        if again is not None and len(again) <= UDP_MAX_ANSWER_BYTES:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.sendto(again, addr)
            self._resolutions.done(_SUCCESS, started)
            return
        try:
            request = decode_message(data, self.limits)
        except ProtocolError as exc:
            self._refuse(addr, _error_for(exc), started)
            return
        if not isinstance(request, Request):
            self._refuse(addr, _not_a_request(request), started)
            return
        now = answer_now(self.service, request)
        if now is not None:
            self._send(addr, *now)
            self.metrics.for_request(request).done(now[0].code, started)
            self.replies.learn(data, request, *now)
            return
        task = asyncio.ensure_future(self._serve(request, addr, started))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        _log_failure(task)

    def _refuse(self, addr: Any, error: ErrorResponse, started: float) -> None:
        self._send(addr, error)
        self.metrics.op(error.op).done(error.code, started)

    async def _serve(self, request: Request, addr: Any, started: float) -> None:
        metrics = self.metrics
        metrics.in_progress += 1
        try:
            response, body = await answer(self.service, request)
        finally:
            metrics.in_progress -= 1
        self._send(addr, response, body)
        metrics.for_request(request).done(response.code, started)

    def _send(self, addr: Any, response: Response, body: bytes | None = None) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(encode_datagram(response, body=body), addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)

    def stop_reading(self) -> None:
        """Take no more requests (a datagram not taken is not answered: the client retries)."""
        self._draining = True

    async def drain(self, deadline: float) -> None:
        """Take no more requests, let those in flight finish until ``deadline`` (loop time),
        cancel those still running then (as ``TCPProtocol.drain``), and close."""
        self.stop_reading()
        await _finish(self.tasks, deadline)
        if self.transport is not None:
            self.transport.close()
