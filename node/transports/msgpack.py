"""msgpack adapters: length-prefixed frames over TCP (pipelined) and one message per UDP datagram.

Both feed bytes to ``protocol.wire`` and hand typed requests to the service core. A bad message in a
good frame gets an error answer and the connection goes on; a frame over the limit cannot be skipped,
so it is answered and the connection closed. UDP requests beyond the queue bound are dropped (the
client retries), and answers over 1,400 bytes go out truncated so the client asks again over TCP.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from node.service import Service
from protocol.codes import OpCode, ResponseCode
from protocol.errors import ProtocolError
from protocol.messages import ErrorResponse, Request, ResolveRequest, Response
from protocol.wire import (
    NEED_DATA,
    Connection,
    WireLimits,
    decode_message,
    encode_datagram,
    encode_message,
    frame,
)

log = logging.getLogger("idnode.msgpack")
MAX_IN_FLIGHT_PER_CONNECTION = 256


def _error_for(exc: ProtocolError) -> ErrorResponse:
    return ErrorResponse(
        request_id=exc.request_id,
        code=exc.code,
        answers=OpCode(exc.op),
        message=exc.message,
    )


async def answer(service: Service, request: Request) -> Response:
    """The service's answer (resolution through ``resolve`` to share its cache path)."""
    if type(request) is ResolveRequest:
        return (await service.resolve(request))[0]
    return await service.handle(request)


class TCPProtocol(asyncio.Protocol):
    """One client connection; registers itself in ``connections`` for orderly shutdown."""

    def __init__(self, service: Service, limits: WireLimits, connections: set[Any]) -> None:
        self.service = service
        self.conn = Connection(limits)
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.idle_timeout_s = service.config.tcp_idle_timeout_s
        self._idle: asyncio.TimerHandle | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.connections.add(self)
        self._touch()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self.idle_timeout_s, self._on_idle)

    def _on_idle(self) -> None:
        if not self.tasks and self.transport is not None:
            self.transport.close()
        else:
            self._touch()

    def data_received(self, data: bytes) -> None:
        self._touch()
        self.conn.receive_data(data)
        while True:
            try:
                event = self.conn.next_event()
            except ProtocolError as exc:
                self._write(_error_for(exc))
                if exc.fatal and self.transport is not None:
                    self.transport.close()
                    return
                continue
            if event is NEED_DATA:
                return
            if not isinstance(event, Request):
                error = ProtocolError("a server accepts requests only")
                error.request_id = event.request_id  # type: ignore[union-attr]
                self._write(_error_for(error))
                continue
            if type(event) is ResolveRequest:
                cached = self.service.resolve_cached(event)
                if cached is not None:
                    self._write(cached[0])
                    continue
            task = asyncio.ensure_future(self._serve(event))
            self.tasks.add(task)
            task.add_done_callback(self._done)
            if len(self.tasks) >= MAX_IN_FLIGHT_PER_CONNECTION and self.transport is not None:
                self.transport.pause_reading()
                self._paused = True

    async def _serve(self, request: Request) -> None:
        self._write(await answer(self.service, request))

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("request failed", exc_info=task.exception())
        if (
            self._paused
            and self.transport is not None
            and len(self.tasks) < MAX_IN_FLIGHT_PER_CONNECTION // 2
        ):
            self.transport.resume_reading()
            self._paused = False

    def _write(self, response: Response) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(encode_message(response)))

    async def drain(self) -> None:
        """Let in-flight requests finish, then close."""
        if self.tasks:
            await asyncio.wait(list(self.tasks))
        if self.transport is not None:
            self.transport.close()


class UDPProtocol(asyncio.DatagramProtocol):
    """One socket for every client; at most ``udp_queue_len`` requests in progress."""

    def __init__(self, service: Service, limits: WireLimits) -> None:
        self.service = service
        self.limits = limits
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.max_pending = service.config.udp_queue_len
        self.dropped = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(self.tasks) >= self.max_pending:
            self.dropped += 1
            return
        try:
            request = decode_message(data, self.limits)
        except ProtocolError as exc:
            self._send(_error_for(exc), addr)
            return
        if not isinstance(request, Request):
            self._send(
                ErrorResponse(
                    request_id=request.request_id,
                    code=ResponseCode.PROTOCOL_ERROR,
                    answers=request.op,
                    message="a server accepts requests only",
                ),
                addr,
            )
            return
        if type(request) is ResolveRequest:
            cached = self.service.resolve_cached(request)
            if cached is not None:
                self._send(cached[0], addr)
                return
        task = asyncio.ensure_future(self._serve(request, addr))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("request failed", exc_info=task.exception())

    async def _serve(self, request: Request, addr: Any) -> None:
        self._send(await answer(self.service, request), addr)

    def _send(self, response: Response, addr: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(encode_datagram(response), addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)

    async def drain(self) -> None:
        if self.tasks:
            await asyncio.wait(list(self.tasks))
        if self.transport is not None:
            self.transport.close()
