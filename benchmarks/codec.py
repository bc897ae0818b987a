"""Codec benchmark: our msgpack wire codec against bare ``msgpack`` on the same data, same run.

The floor is ``msgpack.packb``/``msgpack.unpackb`` of plain dicts shaped like the REST answer and
holding the same information as our messages: the header fields (version, request id, op code,
response code, op flags, message flags) and the body (what any msgpack service would do at
minimum); ours adds the typed messages and the field checks. Leaving the header out of the dicts
would compare a message with part of one. Figures are ops/s of one encode plus one decode, best
of several repeats, and the ratio of our cost per op to the floor's (goal: at most 2.0). Absolute
numbers on shared machines are noise; the ratio is the figure to compare across runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgpack

from protocol.codes import OpFlag
from protocol.messages import ResolveRequest, ResolveResponse
from protocol.records import HandleValue
from protocol.wire import decode_message, encode_message

HANDLE = "88.118.8/PRD-2026-000123"
TIMESTAMP = 1764300000  #: 2025-11-28T03:20:00Z
GOAL_RATIO = 2.0

#: what a factory stores for one product: where to look it up, name, model, batch, production date
FACTORY_VALUES = (
    (1, "URL", "https://mes.factory.example.cn/products/PRD-2026-000123"),
    (2, "PRODUCT_NAME", "数控机床主轴 Spindle SK-5080"),
    (3, "MODEL", "SK-5080-A2"),
    (4, "BATCH", "B20261128-07"),
    (5, "PRODUCTION_DATE", "2026-11-28"),
)


REQUEST_ID = 123


def sample_request() -> ResolveRequest:
    return ResolveRequest(request_id=REQUEST_ID, flags=OpFlag.PUBLIC_ONLY, handle=HANDLE)


def sample_response() -> ResolveResponse:
    values = tuple(
        HandleValue(index, type_, text.encode(), timestamp=TIMESTAMP + index)
        for index, type_, text in FACTORY_VALUES
    )
    return ResolveResponse(request_id=REQUEST_ID, handle=HANDLE, values=values)


def _header(op: int, code: int, flags: int) -> dict[str, Any]:
    """What our envelope carries besides the body, so the bare dicts hold the same information."""
    return {
        "version": 1,
        "requestId": REQUEST_ID,
        "opCode": op,
        "responseCode": code,
        "opFlags": flags,
        "messageFlags": 0,
    }


def bare_request() -> dict[str, Any]:
    return {**_header(1, 0, int(OpFlag.PUBLIC_ONLY)), "handle": HANDLE, "index": [], "type": []}


def bare_response() -> dict[str, Any]:
    return {
        **_header(1, 1, 0),
        "handle": HANDLE,
        "values": [
            {
                "index": index,
                "type": type_,
                "data": {"format": "string", "value": text},
                "ttl": 86400,
                "timestamp": TIMESTAMP + index,
            }
            for index, type_, text in FACTORY_VALUES
        ],
    }


def _loops(op: Callable[[], object], at_least_s: float = 0.02) -> int:
    """Like timeit's autorange: a loop count that takes at least ``at_least_s``."""
    loops = 1
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            op()
        if time.perf_counter() - start >= at_least_s:
            return loops
        loops *= 2


def _best_rates(
    ops: dict[str, Callable[[], object]], seconds: float, repeats: int = 7
) -> dict[str, float]:
    """Best-of-``repeats`` ops/s of each op; the repeats alternate between the ops, so a burst of
    load from elsewhere on the machine hits both sides rather than one."""
    loops = {name: _loops(op) for name, op in ops.items()}
    share = seconds / repeats / len(ops)
    count = {name: max(1, int(n * share / 0.02)) for name, n in loops.items()}
    best = dict.fromkeys(ops, float("inf"))
    for _ in range(repeats):
        for name, op in ops.items():
            n = count[name]
            start = time.perf_counter()
            for _ in range(n):
                op()
            best[name] = min(best[name], (time.perf_counter() - start) / n)
    return {name: 1.0 / t for name, t in best.items()}


def _case(ours: Any, bare: Any, seconds: float) -> dict[str, Any]:
    packb, unpackb = msgpack.packb, msgpack.unpackb
    assert decode_message(encode_message(ours)) == ours
    rates = _best_rates(
        {
            "ours": lambda: decode_message(encode_message(ours)),
            "bare": lambda: unpackb(packb(bare)),
        },
        seconds,
    )
    return {
        "ours_ops_s": round(rates["ours"]),
        "bare_ops_s": round(rates["bare"]),
        "ratio": round(rates["bare"] / rates["ours"], 3),
        "ours_bytes": len(encode_message(ours)),
        "bare_bytes": len(packb(bare)),
    }


def run(seconds: float = 2.0) -> dict[str, Any]:
    """Round trips per second of a resolution request and a 5-value answer, ours and bare."""
    request = _case(sample_request(), bare_request(), seconds / 2)
    response = _case(sample_response(), bare_response(), seconds / 2)
    worst = max(request["ratio"], response["ratio"])
    return {
        "request": request,
        "response": response,
        "goal_ratio": GOAL_RATIO,
        "meets_goal": worst <= GOAL_RATIO,
        "msgpack_version": ".".join(map(str, msgpack.version)),
    }
