"""HTTP adapter: the Handle.net JSON REST API (``/api/handles``), health and readiness.

Shapes and status codes follow the CNRI HANDLE.NET servlet (``shared/reference/handle-system.md``):
the adapter only turns query parameters, ``Authorization: Basic`` and JSON bodies into typed
requests, and responses into JSON with the status from ``protocol.codes.http_status``.
Every API request is counted (``node.metrics``) with the op it asked for and the response code it
got, however it ended; ``GET /metrics`` serves the node's metrics.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_urldispatcher import _default_expect_handler

from node.config import worker_count
from node.metrics import CONTENT_TYPE_LATEST, NodeMetrics, OpStats
from node.service import Service
from protocol.codes import OpCode, OpFlag, ResponseCode, http_status
from protocol.errors import ProtocolError
from protocol.jsonapi import response_to_json, values_from_body
from protocol.messages import (
    AddValuesRequest,
    CreateRequest,
    CreateResponse,
    Credential,
    DeleteRequest,
    DoneResponse,
    ErrorResponse,
    ListHandlesRequest,
    RemoveValuesRequest,
    Request,
    ResolveRequest,
    Response,
    new_resolve_request,
)

JSON = "application/json"
_CALLBACK = re.compile(r"^[A-Za-z_$][\w$.]{0,63}$")
_TRUE = ("true", "1", "yes")
_PUBLIC_ONLY = int(OpFlag.PUBLIC_ONLY)
_SUCCESS = int(ResponseCode.SUCCESS)
_NOT_FOUND = int(ResponseCode.HANDLE_NOT_FOUND)
_AUTHORITATIVE = int(OpFlag.AUTHORITATIVE)
_DO_NOT_REFER = int(OpFlag.DO_NOT_REFER)
_RECURSIVE = int(OpFlag.RECURSIVE)
_HANDLES = "/api/handles/"
_REST_OPS = (
    OpCode.RESOLUTION,
    OpCode.CREATE_HANDLE,
    OpCode.ADD_VALUE,
    OpCode.DELETE_HANDLE,
    OpCode.REMOVE_VALUE,
    OpCode.LIST_HANDLES,
)
log = logging.getLogger("idnode.http")
SERVICE: web.AppKey[Service] = web.AppKey("service", Service)
#: an API answer and the Handle response code it carries, for the metrics
Counted = tuple[int, web.Response]


#: ``json.dumps(obj, separators=(",", ":"), ensure_ascii=False)`` without a new encoder per call
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
MAX_USER_IDS = 4096  #: Basic user ids (``index:handle``, never the secret) whose parse is kept
#: Basic user id -> (index, handle): a client sends the same one with every request
_user_ids: dict[str, tuple[int, str]] = {}


def _dumps(obj: Any, pretty: bool = False) -> bytes:
    if pretty:
        return json.dumps(obj, indent=2, ensure_ascii=False).encode()
    return _COMPACT.encode(obj).encode()


def _reply(
    response: Response, *, pretty: bool = False, body: bytes | None = None, handle: str = ""
) -> web.Response:
    created = isinstance(response, CreateResponse | DoneResponse) and response.created
    status = http_status(response.code, op=response.op, created=created)
    headers = {"WWW-Authenticate": 'Basic realm="handle"'} if status == 401 else None
    if body is None:
        shape = response_to_json(response)
        if handle and "handle" not in shape:
            shape["handle"] = handle  # DELETE and value changes name the handle, as CNRI's do
        body = _dumps(shape, pretty)
    return web.Response(body=body, status=status, content_type=JSON, headers=headers)


def _error(
    code: ResponseCode, message: str, handle: str = "", status: int | None = None
) -> web.Response:
    op = OpCode.RESOLUTION if code != ResponseCode.VALUES_NOT_FOUND else OpCode.MODIFY_VALUE
    response = ErrorResponse(code=code, answers=op, message=message, handle=handle)
    reply = _reply(response)
    if status is not None:
        reply.set_status(status)
    return reply


def _flag(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    return default if raw is None else raw.lower() in _TRUE


def credential(request: web.Request) -> Credential | None:
    """``Authorization: Basic base64(url-encoded "index:handle" ":" secret)``."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        raise ProtocolError(
            "only Basic authentication is supported", code=ResponseCode.INVALID_CREDENTIAL
        )
    try:
        user, sep, secret = base64.b64decode(token.strip(), validate=True).decode().partition(":")
        if not sep:
            raise ValueError
        parsed = _user_ids.get(user)
        if parsed is None:
            parsed = _user_id(user)
        return Credential(parsed[1], parsed[0], secret)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ProtocolError(
            'the Basic user id must be "index:handle", e.g. 300:88.118.8/ADMIN',
            code=ResponseCode.INVALID_CREDENTIAL,
        ) from None


def _user_id(user: str) -> tuple[int, str]:
    """(index, handle) of a Basic user id (``300%3A88.118.8/ADMIN``), remembered; ValueError."""
    index, sep, handle = unquote(user).partition(":")
    if not sep:
        raise ValueError
    parsed = (int(index), handle)
    if len(_user_ids) >= MAX_USER_IDS:
        _user_ids.clear()
    _user_ids[user] = parsed
    return parsed


def _unrouted_handle(path: str) -> str | None:
    """The handle of ``/api/handles/<handle>`` when the router would match the same handle
    (nothing percent-encoded, no dot segments, no fragment), else None: take the routed path."""
    if (
        not path.startswith(_HANDLES)
        or len(path) == len(_HANDLES)
        or "%" in path
        or "/." in path
        or "#" in path
    ):
        return None
    return path[len(_HANDLES) :]


#: the op a request refused before routing is counted under, by its method (others: unknown)
_METHOD_OPS = {
    "GET": OpCode.RESOLUTION,
    "PUT": OpCode.CREATE_HANDLE,
    "DELETE": OpCode.DELETE_HANDLE,
}


def _put_op(request: web.BaseRequest) -> OpCode:
    """What a PUT does: with ``index`` it adds values, else it creates (or replaces) a handle."""
    return OpCode.ADD_VALUE if "index" in request.query else OpCode.CREATE_HANDLE


def _indexes(request: web.Request) -> tuple[int, ...]:
    try:
        return tuple(int(i) for i in request.query.getall("index", []) if i != "various")
    except ValueError:
        raise ProtocolError("index must be an integer", code=ResponseCode.PROTOCOL_ERROR) from None


def _named_indexes(request: web.Request) -> tuple[int, ...] | None:
    """The distinct ``index`` parameters of a write, in order; None for ``index=various``
    (every value the body holds). PROTOCOL_ERROR for one that is not an integer."""
    if "various" in request.query.getall("index", []):
        return None
    return tuple(dict.fromkeys(_indexes(request)))


class HandlesAPI:
    """Route handlers; each builds one typed request and calls the service."""

    def __init__(self, service: Service, metrics: NodeMetrics) -> None:
        self.service = service
        self.node_metrics = metrics
        self.metrics = metrics.transports["http"]
        self._resolution = self.metrics.op(OpCode.RESOLUTION)
        self._stats = {op: self.metrics.op(op) for op in _REST_OPS}

    async def _counted(self, stats: OpStats, answer: Awaitable[Counted]) -> web.Response:
        """Await ``answer`` (an API handler's), counting it under ``stats`` however it ends."""
        started = perf_counter()
        metrics = self.metrics
        metrics.in_progress += 1
        try:
            code, reply = await answer
        finally:
            metrics.in_progress -= 1
        stats.done(code, started)
        return reply

    async def _call(
        self, request: web.Request, build: Any, path_handle: str | None = None
    ) -> Counted:
        """Build the typed request with the request's credential, ask the service, answer.

        ``path_handle`` is the handle of the path, which errors name (None: the router's
        ``match_info`` has it; a request answered ahead of routing has none).
        """
        try:
            typed: Request = build(credential(request))
        except ProtocolError as exc:
            if path_handle is None:
                path_handle = request.match_info.get("handle", "")
            return exc.code, _error(exc.code, exc.message, path_handle)
        response = await self.service.handle(typed)
        handle = getattr(typed, "handle", "")
        pretty = _flag(request, "pretty", False)
        return response.code, _reply(response, pretty=pretty, handle=handle)

    @staticmethod
    def plain_handle(request: web.BaseRequest) -> str | None:
        """The handle of an anonymous, option-less GET, read before routing, or None (no query,
        no credentials, and a path ``_unrouted_handle`` takes)."""
        raw = request.raw_path
        if request.method != "GET" or "?" in raw or "Authorization" in request.headers:
            return None
        return _unrouted_handle(raw)

    async def resolve_plain(self, handle: str) -> web.Response:
        """Anonymous resolution without options: most traffic, often answered from the cache
        without a wait (its JSON is kept in the cache entry)."""
        started = perf_counter()
        service = self.service
        entry = service.cached_entry(handle)
        if entry is not None:  # the usual case: an answer whose JSON the entry already holds
            found = entry.found
            body = entry.encoded.get(entry.variant("json", handle))
            if body is not None:
                reply = web.Response(body=body, status=200 if found else 404, content_type=JSON)
                self._resolution.done(_SUCCESS if found else _NOT_FOUND, started)
                return reply
        typed = new_resolve_request(0, _PUBLIC_ONLY, None, handle, (), ())
        # an entry without its JSON yet still answers without a wait (its hit counted above);
        # no entry: ``resolve``
        resolution = None if entry is None else service.resolve_cached(typed, count_hit=False)
        if resolution is None:
            metrics = self.metrics
            metrics.in_progress += 1
            try:
                resolution = await service.resolve(typed)
            finally:
                metrics.in_progress -= 1
        response, entry, key = resolution
        if entry is None:
            reply = _reply(response)
        else:
            body = service.cache.encoded(
                key,
                entry,
                entry.variant("json", handle),
                lambda: _dumps(response_to_json(response)),
            )
            if response.code == _SUCCESS:
                reply = web.Response(body=body, content_type=JSON)
            else:  # not found
                reply = _reply(response, body=body)
        self._resolution.done(response.code, started)
        return reply

    async def resolve(self, request: web.Request) -> web.Response:
        if not request.query_string and "Authorization" not in request.headers:
            return await self.resolve_plain(request.match_info["handle"])
        started = perf_counter()
        metrics = self.metrics
        metrics.in_progress += 1
        try:
            code, reply = await self._resolve(request)
        finally:
            metrics.in_progress -= 1
        self._resolution.done(code, started)
        return reply

    async def _resolve(self, request: web.Request) -> Counted:
        service = self.service
        try:
            typed = self._resolve_request(request)
        except ProtocolError as exc:
            return exc.code, _error(exc.code, exc.message, request.match_info["handle"])
        response, entry, key = await service.resolve(typed)
        code = response.code
        pretty = _flag(request, "pretty", False)
        callback = request.query.get("callback")
        if callback is not None:
            if not _CALLBACK.match(callback):
                bad = ResponseCode.PROTOCOL_ERROR
                return bad, _error(bad, "callback is not a JavaScript name", typed.handle)
            # 200 whatever the code, which the body carries: a browser runs a script only from an
            # answer with an ok status (HTML's "fetch a classic script"), so JSONP errors need it
            body = callback.encode() + b"(" + _dumps(response_to_json(response), pretty) + b");"
            return code, web.Response(body=body, content_type="application/javascript")
        if entry is not None and not pretty:
            body = self.service.cache.encoded(
                key,
                entry,
                entry.variant("json", typed.handle),
                lambda: _dumps(response_to_json(response)),
            )
            return code, _reply(response, body=body)
        return code, _reply(response, pretty=pretty)

    @staticmethod
    def _resolve_request(request: web.Request) -> ResolveRequest:
        cred = credential(request)
        flags = 0
        if _flag(request, "publicOnly", cred is None):
            flags |= _PUBLIC_ONLY
        if _flag(request, "auth", False):
            flags |= _AUTHORITATIVE
        if _flag(request, "doNotRefer", False):
            flags |= _DO_NOT_REFER
        if _flag(request, "recursive", False):
            flags |= _RECURSIVE
        return ResolveRequest(
            handle=request.match_info["handle"],
            indexes=_indexes(request),
            types=tuple(request.query.getall("type", [])),
            flags=flags,
            credential=cred,
        )

    @staticmethod
    def put_handle(request: web.BaseRequest) -> str | None:
        """The handle of a ``PUT /api/handles/<handle>``, read before routing, or None; the query
        is read as usual. A request that expects ``100 Continue`` takes the routed path, which
        sends it."""
        if request.method != "PUT" or "Expect" in request.headers:
            return None
        return _unrouted_handle(request.raw_path.partition("?")[0])

    async def put(self, request: web.Request) -> web.Response:
        return await self.put_to(request, request.match_info["handle"])

    async def put_to(self, request: web.Request, handle: str) -> web.Response:
        """PUT ``handle``: a create, or with ``index`` values added; counted however it ends."""
        op = _put_op(request)
        return await self._counted(
            self._stats[op], self._put(request, handle, op == OpCode.ADD_VALUE)
        )

    def _refused_head(self, request: web.BaseRequest, handle: str) -> Counted | None:
        """The refusal of a PUT that its head alone makes certain (the Content-Type, a declared
        length over the limit), else None."""
        bad = ResponseCode.PROTOCOL_ERROR
        if request.content_type != JSON:
            return bad, _error(bad, "Content-Type must be application/json", handle)
        limit = self.service.config.max_http_body_bytes
        if (request.content_length or 0) > limit:  # no need to wait for the body
            return bad, _error(bad, f"request body over {limit} bytes", handle, status=413)
        return None

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """An ``Expect`` header: ``100 Continue`` (aiohttp's own handler) for ``100-continue``,
        417 in the error shape for an expectation the node cannot meet."""
        if request.headers.get("Expect", "").lower() == "100-continue":
            await _default_expect_handler(request)
            return None
        reply = self.refuse(
            request,
            ResponseCode.PROTOCOL_ERROR,
            f"unknown expectation {request.headers.get('Expect', '')!r}: only 100-continue",
            request.match_info.get("handle", ""),
        )
        reply.set_status(417)
        return reply

    async def expect_put(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect`` on a PUT: a refusal certain from the head is the answer, so the client
        need not send the body; else as ``expect``."""
        refused = self._refused_head(request, request.match_info["handle"])
        if refused is None:
            return await self.expect(request)
        code, reply = refused
        self._stats[_put_op(request)].done(code, perf_counter())
        return reply

    async def _put(self, request: web.Request, handle: str, adding: bool) -> Counted:
        refused = self._refused_head(request, handle)
        if refused is not None:
            return refused
        bad = ResponseCode.PROTOCOL_ERROR
        config = self.service.config
        limit = config.max_http_body_bytes
        content = request.content
        try:
            if content.is_eof():  # the whole body came with the head, as most do: no wait
                raw = content.read_nowait()
                if len(raw) > limit:  # as ``request.read`` checks it
                    raise web.HTTPRequestEntityTooLarge(limit, len(raw))
            else:
                async with asyncio.timeout(config.http_idle_timeout_s):
                    raw = await request.read()
            body = json.loads(raw)
        except web.HTTPRequestEntityTooLarge:
            return bad, _error(bad, f"request body over {limit} bytes", handle, status=413)
        except TimeoutError:
            wait = config.http_idle_timeout_s
            reply = _error(bad, f"the body did not arrive within {wait:g} s", handle, status=408)
            reply.force_close()  # the rest of the body may still come: not a next request
            return bad, reply
        except ConnectionError:  # the client went away mid-body: nobody to answer
            return bad, _error(bad, "the connection closed before the body arrived", handle)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return bad, _error(bad, "the body is not valid JSON", handle)
        try:
            values = values_from_body(
                body, handle, case_sensitive_suffix=self.service.config.case_sensitive_suffix
            )
        except ProtocolError as exc:
            return exc.code, _error(exc.code, exc.message, handle)
        overwrite = _flag(request, "overwrite", True)
        flags = OpFlag.OVERWRITE if overwrite else 0
        if adding:

            def add(credential: Credential | None) -> AddValuesRequest:
                named = _named_indexes(request)
                chosen = values if named is None else tuple(v for v in values if v.index in named)
                missing = set(named or ()) - {v.index for v in chosen}
                if missing:
                    raise ProtocolError(
                        f"the body has no value at index {min(missing)}",
                        code=ResponseCode.PROTOCOL_ERROR,
                    )
                return AddValuesRequest(
                    handle=handle, values=chosen, flags=flags, credential=credential
                )

            return await self._call(request, add, handle)
        if _flag(request, "mintNewSuffix", False):
            flags |= OpFlag.MINT_SUFFIX
        return await self._call(
            request,
            lambda c: CreateRequest(handle=handle, values=values, flags=flags, credential=c),
            handle,
        )

    async def delete(self, request: web.Request) -> web.Response:
        op = OpCode.REMOVE_VALUE if "index" in request.query else OpCode.DELETE_HANDLE
        return await self._counted(self._stats[op], self._delete(request))

    async def _delete(self, request: web.Request) -> Counted:
        handle = request.match_info["handle"]
        if "index" in request.query:

            def remove(credential: Credential | None) -> RemoveValuesRequest:
                named = _named_indexes(request)
                if named is None:
                    raise ProtocolError(
                        "index=various names no index to remove", code=ResponseCode.PROTOCOL_ERROR
                    )
                return RemoveValuesRequest(handle=handle, indexes=named, credential=credential)

            return await self._call(request, remove)
        return await self._call(request, lambda c: DeleteRequest(handle=handle, credential=c))

    async def list_handles(self, request: web.Request) -> web.Response:
        return await self._counted(self._stats[OpCode.LIST_HANDLES], self._list_handles(request))

    async def _list_handles(self, request: web.Request) -> Counted:
        try:
            page = int(request.query.get("page", "0"))
            page_size = int(request.query.get("pageSize", "100"))
        except ValueError:
            bad = ResponseCode.PROTOCOL_ERROR
            return bad, _error(bad, "page and pageSize must be integers")
        prefix = request.query.get("prefix", "")
        return await self._call(
            request,
            lambda c: ListHandlesRequest(
                prefix=prefix, page=page, page_size=page_size, credential=c
            ),
        )

    def refuse(
        self, request: web.BaseRequest, code: ResponseCode, message: str, handle: str = ""
    ) -> web.Response:
        """An error answered before a typed request is built. One to the handles API is
        counted like every answer of it, under the op its method names (else ``unknown``);
        another path is no API request (as ``/healthz`` and ``/metrics`` are not)."""
        if request.path.startswith("/api/handles"):
            self.metrics.op(_METHOD_OPS.get(request.method, -1)).done(code, perf_counter())
        return _error(code, message, handle)

    def unroutable(self, request: web.BaseRequest) -> web.Response | None:
        """400 in the error shape for a target that is no path (``OPTIONS *``: the router
        would answer in plain text) or whose %-escapes are not UTF-8 (yarl would keep ``%FF``
        as text, making ``/88.1/%FF`` and ``/88.1/%25FF`` one handle); else None."""
        path = request.raw_path.partition("?")[0]
        if not path.startswith("/"):
            return self.refuse(request, ResponseCode.PROTOCOL_ERROR, f"no such path {path}")
        if "%" not in path:
            return None
        try:
            unquote(path, errors="strict")
            return None
        except UnicodeDecodeError:
            message = "the path has a %-escape that is not UTF-8"
        if path.startswith(_HANDLES):
            return self.refuse(request, ResponseCode.INVALID_HANDLE, message, path[len(_HANDLES) :])
        return self.refuse(request, ResponseCode.PROTOCOL_ERROR, message)

    async def empty_handle(self, request: web.Request) -> web.Response:
        return self.refuse(request, ResponseCode.INVALID_HANDLE, "empty handle")

    async def no_route(self, request: web.Request) -> web.Response:
        """A method or path the API lacks: code 5 or 4, with the reference's statuses (501, 400)."""
        if request.path.startswith("/api/handles"):
            message = f"{request.method} is not allowed here"
            handle = request.path[len(_HANDLES) :]
            return self.refuse(request, ResponseCode.OPERATION_NOT_SUPPORTED, message, handle)
        return self.refuse(request, ResponseCode.PROTOCOL_ERROR, f"no such path {request.path}")

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(self, request: web.Request) -> web.Response:
        service = self.service
        ready = service.is_ready()
        hits, misses, entries, used = self.node_metrics.cache_numbers_now()
        bound = service.cache.max_bytes  # each worker's
        if self.node_metrics.peers is not None:
            bound *= worker_count(service.config)
        body: dict[str, Any] = {}
        link, state = (
            (service.registration, "registered")
            if service.registration is not None
            else (service.reachability, "reachable")
        )
        if link is not None:
            body["toplevel"] = {
                "address": service.config.toplevel,
                state: link.ready(),
                "failures": link.failures,
            }
        damaged = service.store.damaged
        if damaged is not None:
            body["store"] = {"damaged": damaged}
        body = {
            "status": "ready" if ready else "store damaged" if damaged else "starting",
            **body,
            "cache": {  # of every worker
                "hits": hits,
                "misses": misses,
                "entries": entries,
                "bytes": used,
                "max_bytes": bound,
            },
        }
        return web.json_response(body, status=200 if ready else 503)

    async def list_delegations(self, request: web.Request) -> web.Response:
        """Top-level: the registered prefixes, their sites and their nodes' heartbeat state."""
        monitor = self.service.monitor
        if monitor is None:
            return _error(
                ResponseCode.OPERATION_NOT_SUPPORTED, "only a top-level node holds delegations"
            )
        rows = await monitor.check(full=True)
        return web.Response(
            body=_dumps({"responseCode": 1, "delegations": rows}, _flag(request, "pretty", False)),
            content_type=JSON,
        )


def _metrics_handler(metrics: NodeMetrics) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def serve_metrics(request: web.Request) -> web.Response:
        response = web.Response(body=await metrics.scrape())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST  # keeps its version parameter
        return response

    return serve_metrics


def make_metrics_app(metrics: NodeMetrics) -> web.Application:
    """The app of the separate ``metrics_port``: ``GET /metrics`` only."""
    app = web.Application()
    app.router.add_get("/metrics", _metrics_handler(metrics))
    return app


API: web.AppKey[HandlesAPI] = web.AppKey("api", HandlesAPI)
# ``[\s\S]``, not ``.``: a decoded path may hold a newline (``%0A``), which ``.`` does not match,
# and such a handle must still reach the service (102), and any other path the JSON catch-all
_ANY_HANDLE = r"/api/handles/{handle:[\s\S]+}"
_ANY_PATH = r"/{tail:[\s\S]*}"


_QUOTED_BYTES = re.compile(r":?\s*(?:b|bytearray\(b)['\"].*$")


class _RequestHandler(RequestHandler):
    """aiohttp's connection handler, answering what its HTTP parser refuses (a line or header
    too long, a bad chunk size, two lengths...) in the API's error shape, logged quietly."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status == 500:  # a bug of ours: logged with its traceback, as aiohttp does
            self.log_exception("Error handling request", exc_info=exc)
            code, text = ResponseCode.ERROR, "internal error; nothing was changed"
        else:  # the client's fault, which any client can repeat: not worth an ERROR line
            log.debug("refused a malformed HTTP request: %s", message or exc)
            # aiohttp quotes the offending bytes (a credential, say): the reason is enough
            reason = (message or str(exc)).split("\n")[0]
            code, text = ResponseCode.PROTOCOL_ERROR, _QUOTED_BYTES.sub("", reason).rstrip(": ")
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already sent on this connection")
        reply = _error(code, text, status=status)
        reply.force_close()
        return reply


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _RequestHandler(self, loop=self._loop, **self._kwargs)


class NodeRunner(web.AppRunner):
    """The app's runner, with anonymous option-less GETs answered ahead of aiohttp's routing
    (``HandlesAPI.plain_handle``): they are most traffic, and routing would be a sixth of the
    cost of a cached one. Plain PUTs (``HandlesAPI.put_handle``, creates) skip it too."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same server, making connections that answer in JSON
        routed = server.request_handler
        api = self.app[API]
        plain_handle, resolve_plain = api.plain_handle, api.resolve_plain
        put_handle, put_to, unroutable = api.put_handle, api.put_to, api.unroutable

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            handle = plain_handle(request)
            if handle is not None:
                return await resolve_plain(handle)
            handle = put_handle(request)
            if handle is not None:
                return await put_to(request, handle)  # type: ignore[arg-type]
            refused = unroutable(request)
            if refused is not None:
                return refused
            return await routed(request)

        server.request_handler = handle
        return server


def make_app(service: Service, metrics: NodeMetrics | None = None) -> web.Application:
    """The HTTP API of ``service``, counted in ``metrics`` (a fresh set when not given)."""
    if metrics is None:
        metrics = NodeMetrics()
        metrics.service = service
    app = web.Application(client_max_size=service.config.max_http_body_bytes)
    app[SERVICE] = service
    api = HandlesAPI(service, metrics)
    app[API] = api
    # resolution first: the router tries resources in order, and it is most of the traffic
    route = functools.partial(app.router.add_route, expect_handler=api.expect)
    get = functools.partial(app.router.add_get, expect_handler=api.expect)  # and HEAD
    get(_ANY_HANDLE, api.resolve)
    app.router.add_put(_ANY_HANDLE, api.put, expect_handler=api.expect_put)
    route("DELETE", _ANY_HANDLE, api.delete)
    get("/api/handles", api.list_handles)
    route("*", "/api/handles/", api.empty_handle)
    get("/healthz", api.healthz)
    get("/readyz", api.readyz)
    get("/api/delegations", api.list_delegations)
    get("/metrics", _metrics_handler(metrics))
    # last: JSON errors, no middleware cost
    route("*", _ANY_PATH, api.no_route)
    return app
