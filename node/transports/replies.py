"""Repeated msgpack resolutions answered by their bytes: a packet cache for the TCP and UDP adapters."""

from __future__ import annotations

from dataclasses import replace

from node.service import Service
from protocol.codes import ResponseCode
from protocol.messages import Request, ResolveRequest, Response
from protocol.wire import after_request_id, encode_message, request_id_end

MAX_KNOWN_REQUESTS = 65536  #: request byte strings ``Replies`` remembers (then it starts over)
MAX_KNOWN_BYTES = 8 * 1024 * 1024  #: ...and as many bytes of them


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
        self._bytes = 0  #: of the request bytes in ``known``
        self._heads: dict[bytes, bytes] = {}

    def answer(self, payload: bytes) -> bytes | None:
        """The answer message to ``payload``, or None: decode it and answer it the usual way."""
        end = request_id_end(payload)
        if not end:
            return None
        known = self.known.get(payload[end:])
        if known is None:
            return None
        # no hit counted unless answered here: otherwise the usual way counts it
        entry = self.service.cached_entry(known[0], count_hit=False)
        body = None if entry is None else entry.encoded.get("msgpack")  # a success's body
        if body is None:
            return None
        self.service.cache.count_hit()
        return payload[:end] + known[1] + body

    def learn(
        self, payload: bytes, request: Request, response: Response, body: bytes | None
    ) -> None:
        """Remember a request the cache just answered (``body``: the cached msgpack body, if any),
        when it is one ``answer`` may repeat."""
        # a cached body means the service answered a plain public resolution from its cache
        # (``Service.resolve_cached``); one with a credential is not kept, to keep no secrets
        if (
            body is not None
            and response.code == ResponseCode.SUCCESS
            and type(request) is ResolveRequest
            and request.credential is None
        ):
            end = request_id_end(payload)
            tail = payload[end:]
            # only the plain encoding (ours, and any msgpack packer's): a request padded with
            # keys the decoder ignores would make each remembered request as big as a frame
            plain = encode_message(replace(request, request_id=0))
            if not end or tail != plain[request_id_end(plain) :]:
                return
            known = self.known
            self._bytes += len(tail)
            if len(known) >= MAX_KNOWN_REQUESTS or self._bytes > MAX_KNOWN_BYTES:
                known.clear()
                self._heads.clear()
                self._bytes = len(tail)
            head = after_request_id(response)  # one object per set of flags, not per handle
            known[tail] = (request.handle, self._heads.setdefault(head, head))
