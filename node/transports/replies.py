"""Repeated msgpack resolutions answered by their bytes: a packet cache for the TCP and UDP adapters."""

from __future__ import annotations

from node.service import Service
from protocol.codes import ResponseCode
from protocol.messages import Request, ResolveRequest, Response
from protocol.wire import after_request_id, request_id_end

MAX_KNOWN_REQUESTS = 65536  #: request byte strings ``Replies`` remembers (then it starts over)


class Replies:
    """Plain resolutions answered again by their bytes, without decoding or encoding them.

    A request's bytes after its request id (``request_id_end``) decode to the same request every
    time, so once one was answered from the cache, the same bytes under another request id are
    looked up by those bytes: the service still decides (``cached_entry``: the cache entry must
    still be valid, the prefix still served), and the answer is the entry's msgpack body under
    the new request id. Only anonymous, filter-less requests answered with success from the
    cache are remembered; one server's TCP connections and UDP socket share one instance.
    """

    def __init__(self, service: Service) -> None:
        self.service = service
        #: request bytes after the request id -> (handle, answer bytes between request id and body)
        self.known: dict[bytes, tuple[str, bytes]] = {}
        self._heads: dict[bytes, bytes] = {}

    def answer(self, payload: bytes) -> bytes | None:
        """The answer message to ``payload``, or None: decode it and answer it the usual way."""
        end = request_id_end(payload)
        if not end:
            return None
        known = self.known.get(payload[end:])
        if known is None:
            return None
        entry = self.service.cached_entry(known[0])
        body = None if entry is None else entry.encoded.get("msgpack")  # a success's body
        if body is None:
            return None
        return payload[:end] + known[1] + body

    def learn(
        self, payload: bytes, request: Request, response: Response, body: bytes | None
    ) -> None:
        """Remember a request the cache just answered (``body``: the cached msgpack body, if any),
        when it is one ``answer`` may repeat."""
        if (
            body is not None
            and response.code == ResponseCode.SUCCESS
            and type(request) is ResolveRequest
            and request.credential is None
            and not (request.indexes or request.types or request.authoritative)
        ):
            end = request_id_end(payload)
            if end:
                known = self.known
                if len(known) >= MAX_KNOWN_REQUESTS:
                    known.clear()
                    self._heads.clear()
                head = after_request_id(response)  # one object per set of flags, not per handle
                known[payload[end:]] = (request.handle, self._heads.setdefault(head, head))
