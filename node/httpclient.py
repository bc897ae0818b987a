"""The Handle.net JSON REST API client: ``HTTPClient``, the ``node.client.Client`` over HTTP.

Each operation maps to the REST API's route (``_route``) and the JSON answer back to the typed
``Response`` (``ErrorResponse`` for any failure code); retries and the IDIS client codes for a missing
answer are ``Client``'s. Credentials go as HTTP Basic authorization (``basic_authorization``).
Operations the REST API has no route for (home, unhome, list_homed, site_info) raise
``NotSupportedOverHTTP``: use ``TCPClient`` or ``UDPClient`` for them.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl

from node.client import Client, _NoAnswer
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.errors import ProtocolError
from protocol.jsonapi import response_from_json, value_to_json
from protocol.messages import (
    AddValuesRequest,
    CreateRequest,
    CreateResponse,
    Credential,
    DeleteRequest,
    DoneResponse,
    ListHandlesRequest,
    ModifyValuesRequest,
    RemoveValuesRequest,
    Request,
    ResolveRequest,
    Response,
)
from protocol.records import HandleValue

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
#: characters left as they are in the handle part of the path (sub-delims and ``/`` of RFC 3986)
_PATH_SAFE = "/:@!$&'()*+,;="


class NotSupportedOverHTTP(Exception):
    """The Handle.net REST API has no route for this operation; use ``TCPClient``/``UDPClient``."""


def basic_authorization(credential: Credential) -> str:
    """``Basic base64(urlquote("300:88.1/ADMIN") + ":" + secret)``, as the REST API reads it."""
    user = quote(f"{credential.index}:{credential.handle}", safe="/")
    token = base64.b64encode(f"{user}:{credential.secret}".encode()).decode("ascii")
    return f"Basic {token}"


def _bool(flag: bool) -> str:
    return "true" if flag else "false"


class HTTPClient(Client):
    """The REST API at ``base_url`` (e.g. ``http://127.0.0.1:8000``), one aiohttp session.

    Routes: resolve ``GET /api/handles/{h}``; create ``PUT`` with ``overwrite`` (and
    ``mintNewSuffix``); add and modify values ``PUT ?index=..``; remove values ``DELETE ?index=..``;
    delete ``DELETE``; list ``GET /api/handles?prefix=..``. Home, unhome, list_homed and site_info
    have no route and raise ``NotSupportedOverHTTP``.
    """

    def __init__(self, base_url: str, **options: Any) -> None:
        super().__init__(**options)
        self.base_url = base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def _url(self, handle: str | None = None) -> yarl.URL:
        if handle is None:
            return yarl.URL(self.base_url + "/api/handles")
        return yarl.URL(
            self.base_url + "/api/handles/" + quote(handle, safe=_PATH_SAFE), encoded=True
        )

    def _route(self, request: Request) -> tuple[str, yarl.URL, list[tuple[str, str]], Any]:
        """Method, URL, query and JSON body of ``request``."""
        if isinstance(request, ResolveRequest):
            query = [("index", str(i)) for i in request.indexes]
            query += [("type", t) for t in request.types]
            if request.public_only:
                query.append(("publicOnly", "true"))
            elif request.credential is not None:
                query.append(("publicOnly", "false"))
            if request.authoritative:
                query.append(("auth", "true"))
            if request.recursive:
                query.append(("recursive", "true"))
            if request.has(OpFlag.DO_NOT_REFER):
                query.append(("doNotRefer", "true"))
            return "GET", self._url(request.handle), query, None
        if isinstance(request, CreateRequest):
            query = [("overwrite", _bool(request.overwrite))]
            if request.mint_suffix:
                query.append(("mintNewSuffix", "true"))
            return "PUT", self._url(request.handle), query, _values_body(request.values)
        if isinstance(request, AddValuesRequest | ModifyValuesRequest):
            overwrite = isinstance(request, ModifyValuesRequest) or request.overwrite
            query = [("index", str(v.index)) for v in request.values]
            query.append(("overwrite", _bool(overwrite)))
            return "PUT", self._url(request.handle), query, _values_body(request.values)
        if isinstance(request, RemoveValuesRequest):
            query = [("index", str(i)) for i in request.indexes]
            return "DELETE", self._url(request.handle), query, None
        if isinstance(request, DeleteRequest):
            return "DELETE", self._url(request.handle), [], None
        if isinstance(request, ListHandlesRequest):
            query = [
                ("prefix", request.prefix),
                ("page", str(request.page)),
                ("pageSize", str(request.page_size)),
            ]
            return "GET", self._url(), query, None
        raise NotSupportedOverHTTP(
            f"{request.op.name} has no route in the Handle.net REST API; use TCPClient or UDPClient"
        )

    async def _exchange(self, request: Request) -> Response:
        # a value its JSON format cannot write raises ProtocolError: ``_send`` answers its code,
        # what the node would say
        method, url, query, body = self._route(request)
        headers = dict(_JSON_HEADERS)
        if request.credential is not None:
            headers["Authorization"] = basic_authorization(request.credential)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        data = None if body is None else json.dumps(body).encode()
        try:
            async with self._session.request(
                method, url, params=query or None, data=data, headers=headers
            ) as reply:
                status, raw = reply.status, await reply.read()
        except aiohttp.ClientError as exc:
            raise _NoAnswer(
                ResponseCode.CLIENT_CHANNEL_ERROR,
                f"HTTP request failed: {exc or type(exc).__name__}",
            ) from exc
        try:
            obj = json.loads(raw)
        except ValueError:
            if status >= 500:  # a proxy or a dying server: no answer from the node itself
                raise _NoAnswer(ResponseCode.CLIENT_CHANNEL_ERROR, f"HTTP {status}") from None
            return self._error(request, ResponseCode.PROTOCOL_ERROR, f"HTTP {status}, not JSON")
        # the REST API has no op flags: the answer carries the request's, as over msgpack
        return dataclasses.replace(self._parse(request, obj, status), flags=request.flags)

    def _parse(self, request: Request, obj: Any, status: int) -> Response:
        op = request.op
        try:
            if isinstance(obj, dict) and obj.get("responseCode") == ResponseCode.SUCCESS:
                if op in _DONE_OPS:  # 201: a value added that was not there
                    return DoneResponse(answers=op, created=status == 201)
                if op == OpCode.CREATE_HANDLE:
                    handle = obj.get("handle", "")
                    if not isinstance(handle, str):
                        raise ProtocolError("handle must be a string")
                    return CreateResponse(handle=handle, created=status == 201)
            return response_from_json(obj, op)
        except ProtocolError as exc:
            return self._error(request, ResponseCode.PROTOCOL_ERROR, f"bad answer: {exc.message}")

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


_DONE_OPS = frozenset(
    {OpCode.DELETE_HANDLE, OpCode.ADD_VALUE, OpCode.REMOVE_VALUE, OpCode.MODIFY_VALUE}
)


def _values_body(values: Sequence[HandleValue]) -> dict[str, Any]:
    return {"values": [value_to_json(v) for v in values]}
