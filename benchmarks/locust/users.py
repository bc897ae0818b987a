"""Locust users for the node's front doors (REST over HTTP, msgpack over TCP, msgpack over UDP), and
for a recursive node's.

Each user is one factory system homed at an enterprise prefix of the manifest. Its single task
draws an operation from the workload mix: a resolution (of a popular key, of another enterprise's
key for the cross share, of a missing key for the not-found share), a registration of
``batch_size`` fresh identifiers under its prefix, or a modify or delete of one it registered (the
seeded keys are never changed, so lookups keep finding them). Writes authenticate as
``300:<prefix>/ADMIN`` with ``--admin-secret``.

Every request is reported through ``events.request`` under its operation name: ``resolve``,
``resolve (not found)`` (a 100 HANDLE_NOT_FOUND is the expected answer there), ``create``,
``modify``, ``delete``; a UDP resolution whose answer came truncated and was asked again over TCP
is ``resolve via TCP``. Any other response code than the expected one is a failure whose message
starts with ``response code <code> <NAME>``. In the open model (``--rate-per-user``) requests
leave at fixed intervals; each is reported twice: from its actual send under its name, and from
its scheduled start under ``<name> [scheduled]``, the coordinated-omission-corrected latency (a
slow answer delays the next sends, and that delay counts there).

The recursive users (``RecursiveTcpUser``, ``RecursiveUdpUser``, ``RecursiveHttpUser``) ask a
recursive node (``benchmarks.locust.recursive``) for the keys of every secondary node's manifest,
through the same clients: they only resolve (the workload's popularity, not-found and cross shares
apply; its mix does not), and report ``recursive resolve``, ``recursive resolve (not found)`` and
``recursive resolve via TCP``. A walk that fails at the recursive node is a failure with the code
it answered, e.g. ``response code 301 SERVER_NOT_RESPONSIBLE`` for a prefix no node serves.
"""

from __future__ import annotations

import abc
import base64
import json
import random
import secrets
from time import perf_counter
from typing import Any
from urllib.parse import quote

import gevent
from locust import User, constant, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment

from benchmarks.locust import options
from benchmarks.locust.msgpack_client import NoAnswer, TCPClient, UDPClient
from benchmarks.locust.workload import KeyPicker, Workload
from protocol.codes import ResponseCode
from protocol.messages import (
    CreateRequest,
    Credential,
    DeleteRequest,
    ModifyValuesRequest,
    Request,
    ResolveRequest,
    Response,
)
from protocol.records import HandleValue

ADMIN_INDEX = 300  #: index of the HS_SECKEY of ``<prefix>/ADMIN``
SCHEDULED = " [scheduled]"  #: name suffix of latencies measured from the scheduled start
MAX_OWNED = 10_000  #: registrations a user remembers for later modifies and deletes
_PATH_SAFE = "/:@!$&'()*+,;="


class ResponseCodeError(Exception):
    """The node answered with another response code than the operation expects."""

    def __init__(self, code: int, expected: int, http_status: int | None = None) -> None:
        self.code = code
        self.expected = expected
        self.http_status = http_status
        where = f"HTTP {http_status}, " if http_status is not None else ""
        super().__init__(
            f"response code {code} {ResponseCode(code).name} "
            f"({where}expected {expected} {ResponseCode(expected).name})"
        )


def url_value(handle: str, version: int) -> dict[str, Any]:
    """The value registrations and modifies write (index 1, a URL that changes with ``version``)."""
    return {
        "index": 1,
        "type": "URL",
        "data": {"format": "string", "value": f"https://factory.example/{handle}?v={version}"},
    }


class WorkloadMixin:
    """What every idnode user does, whatever the transport: subclasses send the four operations."""

    environment: Environment
    picker: KeyPicker
    workload: Workload
    owned: list[str]
    admin_secret: str
    name_prefix = ""  #: before every operation name in the statistics

    def run_context(self) -> options.Context:
        """Where this user's settings and keys come from."""
        return options.context(self.environment)

    def setup_workload(self) -> None:
        ctx = self.run_context()
        self.workload = ctx.workload
        home = ctx.keys.next_home(options.worker_offset(self.environment))
        self.picker = ctx.keys.picker(home, random.Random(secrets.randbits(64)))
        self.admin_secret = ctx.settings.admin_secret
        self.owned = []
        self._interval = 1.0 / self.workload.rate_per_user if self.workload.rate_per_user else 0.0
        self._next_slot: float | None = None
        self._version = 0

    # -- the operations, per transport -----------------------------------------------------------

    @abc.abstractmethod
    def resolve(self, handle: str, found: bool) -> bool:
        """Run one resolve over this user's transport; True when it succeeded."""

    @abc.abstractmethod
    def create(self, handle: str) -> bool:
        """Run one create over this user's transport; True when it succeeded."""

    @abc.abstractmethod
    def modify(self, handle: str) -> bool:
        """Run one modify over this user's transport; True when it succeeded."""

    @abc.abstractmethod
    def delete(self, handle: str) -> bool:
        """Run one delete over this user's transport; True when it succeeded."""

    # -- the task ----------------------------------------------------------------------------------

    def step(self) -> None:
        """One draw from the mix."""
        op = self.picker.operation()
        if op == "resolve":
            self.resolve(*self.picker.lookup())
        elif op == "create":
            for _ in range(self.workload.batch_size):
                self._register()
        elif self.owned or self._register():  # nothing of ours to change yet: register first
            if op == "modify":
                self.modify(self.owned[int(self.picker.rng.random() * len(self.owned))])
            else:
                self.delete(self.owned.pop())

    def _register(self) -> bool:
        handle = self.picker.fresh()
        if not self.create(handle):
            return False
        self.owned.append(handle)
        if len(self.owned) > MAX_OWNED:
            del self.owned[: MAX_OWNED // 2]
        return True

    def next_version(self) -> int:
        self._version += 1
        return self._version

    # -- open model ----------------------------------------------------------------------------------

    def slot(self) -> float | None:
        """In the open model, wait for this request's scheduled start and return it; else None.

        Slots follow one another at fixed intervals whatever the answers took, so a user that fell
        behind sends at once, and the time it fell behind counts in the scheduled latency.
        """
        if not self._interval:
            return None
        now = perf_counter()
        slot = now if self._next_slot is None else self._next_slot
        self._next_slot = slot + self._interval
        if slot > now:
            gevent.sleep(slot - now)
        return slot

    def report_scheduled(
        self, request_type: str, name: str, slot: float | None, length: int, exc: Exception | None
    ) -> None:
        if slot is None:
            return
        hook: Any = self.environment.events.request  # locust's EventHook is untyped
        hook.fire(
            request_type=request_type,
            name=name + SCHEDULED,
            response_time=(perf_counter() - slot) * 1000.0,
            response_length=length,
            exception=exc,
            context={},
        )


# ---------------------------------------------------------------------------------------------
# REST over HTTP


def _path(handle: str) -> str:
    return "/api/handles/" + quote(handle, safe=_PATH_SAFE)


def _http_failure(resp: Any, expected_status: int, expected_code: int) -> Exception | None:
    """Why an HTTP answer is not the expected one (its status and its body's ``responseCode``:
    a 404 from a server that is not a Handle server is no not-found answer); None if it is."""
    status = resp.status_code
    if not status:  # no HTTP answer at all
        return resp.error if isinstance(resp.error, Exception) else NoAnswer("no HTTP answer")
    try:
        code = json.loads(resp.content or b"{}").get("responseCode")
    except (ValueError, AttributeError):
        code = None
    if not isinstance(code, int) or isinstance(code, bool):
        return NoAnswer(f"HTTP {status} without a responseCode (expected HTTP {expected_status})")
    if status != expected_status or code != expected_code:
        return ResponseCodeError(code, expected_code, status)
    return None


class HttpApiUser(WorkloadMixin, FastHttpUser):
    """The Handle.net JSON REST API (``/api/handles``) through Locust's FastHttpUser."""

    wait_time = constant(0)
    network_timeout = 10.0
    connection_timeout = 5.0

    def on_start(self) -> None:
        self.setup_workload()
        user = quote(f"{ADMIN_INDEX}:{self.picker.home}/ADMIN", safe="/")
        token = base64.b64encode(f"{user}:{self.admin_secret}".encode()).decode()
        self._auth = {"Authorization": f"Basic {token}"}

    @task
    def work(self) -> None:
        self.step()

    def resolve(self, handle: str, found: bool) -> bool:
        name = self.name_prefix + "resolve"
        if found:
            return self._http("GET", name, _path(handle), 200, ResponseCode.SUCCESS)
        return self._http(
            "GET", name + " (not found)", _path(handle), 404, ResponseCode.HANDLE_NOT_FOUND
        )

    def create(self, handle: str) -> bool:
        body = {"values": [url_value(handle, self.next_version())]}
        url = _path(handle) + "?overwrite=false"  # a fresh key: an existing one is a failure
        return self._http("PUT", "create", url, 201, ResponseCode.SUCCESS, body)

    def modify(self, handle: str) -> bool:
        body = {"values": [url_value(handle, self.next_version())]}
        url = _path(handle) + "?index=1"
        return self._http("PUT", "modify", url, 200, ResponseCode.SUCCESS, body)

    def delete(self, handle: str) -> bool:
        return self._http("DELETE", "delete", _path(handle), 200, ResponseCode.SUCCESS)

    def _http(
        self, method: str, name: str, url: str, status: int, code: int, body: Any = None
    ) -> bool:
        """One request, a failure unless the HTTP status is ``status`` and the response code ``code``."""
        slot = self.slot()
        headers = self._auth if method != "GET" else None
        exc: Exception | None = None
        length = 0
        with self.client.request(
            method, url, name=name, json=body, headers=headers, catch_response=True
        ) as resp:
            try:
                length = len(resp.content or b"")
            except Exception:  # the body could not be read: the status check below reports it
                length = 0
            exc = _http_failure(resp, status, code)
            if exc is None:
                resp.success()
            else:
                resp.failure(exc)
        self.report_scheduled(method, name, slot, length, exc)
        return exc is None


# ---------------------------------------------------------------------------------------------
# msgpack over TCP and UDP


class MsgpackUser(WorkloadMixin, User):
    """A user holding a blocking msgpack client; subclasses say which (``exchange``)."""

    abstract = True
    wait_time = constant(0)
    transport = "msgpack"  #: the request type in Locust's statistics

    def on_start(self) -> None:
        self.setup_workload()
        settings = self.run_context().settings
        self.credential = Credential(f"{self.picker.home}/ADMIN", ADMIN_INDEX, self.admin_secret)
        self.open(settings.msgpack_host, settings)

    @abc.abstractmethod
    def open(self, host: str, settings: options.Settings) -> None:
        """Connect this user's client to the node."""

    @abc.abstractmethod
    def exchange(self, request: Request) -> tuple[Response, int, bool]:
        """The answer, its size in bytes, and whether it came over TCP after a truncated one."""

    @task
    def work(self) -> None:
        self.step()

    def resolve(self, handle: str, found: bool) -> bool:
        name = self.name_prefix + "resolve"
        if found:
            return self._call(name, ResolveRequest(handle=handle), ResponseCode.SUCCESS)
        return self._call(
            name + " (not found)", ResolveRequest(handle=handle), ResponseCode.HANDLE_NOT_FOUND
        )

    def _url(self, handle: str) -> HandleValue:
        data = url_value(handle, self.next_version())["data"]["value"].encode()
        return HandleValue(1, "URL", data)

    def create(self, handle: str) -> bool:
        request = CreateRequest(
            handle=handle, values=(self._url(handle),), credential=self.credential
        )
        return self._call("create", request, ResponseCode.SUCCESS)

    def modify(self, handle: str) -> bool:
        request = ModifyValuesRequest(
            handle=handle, values=(self._url(handle),), credential=self.credential
        )
        return self._call("modify", request, ResponseCode.SUCCESS)

    def delete(self, handle: str) -> bool:
        request = DeleteRequest(handle=handle, credential=self.credential)
        return self._call("delete", request, ResponseCode.SUCCESS)

    def _call(self, name: str, request: Request, expected: int) -> bool:
        slot = self.slot()
        exc: Exception | None = None
        length = 0
        started = perf_counter()
        try:
            response, length, via_tcp = self.exchange(request)
            if via_tcp:
                name += " via TCP"
            if response.code != expected:
                exc = ResponseCodeError(response.code, expected)
        except (OSError, NoAnswer) as error:  # TimeoutError and refused connections included
            exc = error
        hook: Any = self.environment.events.request  # locust's EventHook is untyped
        hook.fire(
            request_type=self.transport,
            name=name,
            response_time=(perf_counter() - started) * 1000.0,
            response_length=length,
            exception=exc,
            context={},
        )
        self.report_scheduled(self.transport, name, slot, length, exc)
        return exc is None


class MsgpackTcpUser(MsgpackUser):
    """msgpack frames over one TCP connection per user (protocol/SPEC.md 1.1)."""

    transport = "TCP"

    def open(self, host: str, settings: options.Settings) -> None:
        timeout = self.workload.request_timeout_s
        self.client = TCPClient(host, settings.tcp_port, timeout)

    def exchange(self, request: Request) -> tuple[Response, int, bool]:
        response, size = self.client.request(request)
        return response, size, False

    def on_stop(self) -> None:
        self.client.close()


class MsgpackUdpUser(MsgpackUser):
    """One msgpack message per datagram (SPEC 1.2); truncated answers are asked again over TCP."""

    transport = "UDP"

    def open(self, host: str, settings: options.Settings) -> None:
        timeout = self.workload.request_timeout_s
        tcp = TCPClient(host, settings.tcp_port, timeout)
        self.client = UDPClient(host, settings.udp_port, tcp, timeout)

    def exchange(self, request: Request) -> tuple[Response, int, bool]:
        return self.client.request(request)

    def on_stop(self) -> None:
        self.client.close()


# ---------------------------------------------------------------------------------------------
# a recursive node: the same front doors, every manifest's keys, resolutions only


class RecursiveMixin(WorkloadMixin):
    """Resolves, through the recursive node, the keys of every manifest (``--topology`` or the
    ``--recursive-*`` flags); put first among the bases so that its context and step apply."""

    name_prefix = "recursive "

    def run_context(self) -> options.Context:
        return options.recursive_context(self.environment)

    def step(self) -> None:
        self.resolve(*self.picker.lookup())


class RecursiveTcpUser(RecursiveMixin, MsgpackTcpUser):
    """A recursive node's msgpack/TCP port: one connection per user."""


class RecursiveUdpUser(RecursiveMixin, MsgpackUdpUser):
    """A recursive node's msgpack/UDP port; truncated answers are asked again over TCP."""


class RecursiveHttpUser(RecursiveMixin, HttpApiUser):
    """A recursive node's REST API (``GET /api/handles/{h}``) through FastHttpUser."""

    def __init__(self, environment: Environment) -> None:
        try:
            url = options.recursive_context(environment).http_url
        except ValueError:  # WorkloadError, ManifestError: on_start raises it again, and says so
            url = None
        if url is not None:
            self.host = url  # over --host, which Locust gives every user class
        super().__init__(environment)

    def on_start(self) -> None:
        self.setup_workload()
        if options.recursive_context(self.environment).http_url is None:
            raise ValueError("no HTTP port of the recursive node: --recursive-http-port")
