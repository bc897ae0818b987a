"""Floors measured in the same run as the node: the least any server on this machine can do.

``python -m benchmarks.floors http|tcp|udp PORTFILE``: a bare aiohttp handler answering a fixed
300-byte JSON to a GET (and, to a PUT, reading the body and answering a fixed 201), a bare asyncio
TCP echo of length-prefixed frames, and a bare asyncio UDP echo,
each on the same event loop implementation as the node (uvloop when installed).
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from benchmarks.loadgen import pop_frames

BODY = (
    b'{"responseCode":1,"handle":"88.118.8/PRD-2026-000123","values":[{"index":1,"type":"URL",'
    b'"data":{"format":"string","value":"https://example.com/p/000123"},"ttl":86400,'
    b'"timestamp":"2026-11-28T10:00:00Z"}]}'
)
BODY = BODY + b" " * (300 - len(BODY))
#: what a create answers (201): the handle made
CREATED = b'{"responseCode":1,"handle":"88.118.8/NEW-1764324000-000123"}'


class _TCPEcho(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        for frame in pop_frames(self.buffer):
            self.transport.write(frame)  # type: ignore[attr-defined]


class _UDPEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


async def _main(kind: str, portfile: str) -> None:
    loop = asyncio.get_running_loop()
    if kind == "http":

        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=BODY, content_type="application/json")

        async def put(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(status=201, body=CREATED, content_type="application/json")

        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
        app.router.add_put("/{tail:.*}", put)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
    elif kind == "tcp":
        server = await loop.create_server(_TCPEcho, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    else:
        transport, _ = await loop.create_datagram_endpoint(_UDPEcho, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
    with open(portfile, "w") as fh:
        fh.write(str(port))
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(_main(sys.argv[1], sys.argv[2]))
    except ImportError:
        asyncio.run(_main(sys.argv[1], sys.argv[2]))
