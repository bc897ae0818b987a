"""Codec benchmark: our msgpack wire codec against bare ``msgpack`` on the same data, same run.

The floor is ``msgpack.packb``/``msgpack.unpackb`` of plain dicts shaped like the REST answer
(what any msgpack service would do at minimum); ours adds the envelope, the typed messages and the
field checks. Figures are ops/s of one encode plus one decode, best of several repeats, and the ratio
of our cost per op to the floor's (goal: at most 2.0). Absolute numbers on shared machines are
noise; the ratio is the figure to compare across runs.
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


def sample_request() -> ResolveRequest:
    return ResolveRequest(request_id=123, flags=OpFlag.PUBLIC_ONLY, handle=HANDLE)


def sample_response() -> ResolveResponse:
    values = tuple(
        HandleValue(index, type_, text.encode(), timestamp=TIMESTAMP + index)
        for index, type_, text in FACTORY_VALUES
    )
    return ResolveResponse(request_id=123, handle=HANDLE, values=values)


def bare_request() -> dict[str, Any]:
    return {"handle": HANDLE, "index": [], "type": []}


def bare_response() -> dict[str, Any]:
    return {
        "responseCode": 1,
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


def _ops_per_s(op: Callable[[], object], seconds: float, repeats: int = 5) -> float:
    """Best-of-``repeats`` rate of ``op``, each repeat about ``seconds / repeats`` long."""
    loops = 1
    while True:  # calibrate like timeit: a loop count that takes at least 20 ms
        start = time.perf_counter()
        for _ in range(loops):
            op()
        if time.perf_counter() - start >= 0.02:
            break
        loops *= 2
    per_repeat = max(1, int(loops * (seconds / repeats) / 0.02))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(per_repeat):
            op()
        best = min(best, (time.perf_counter() - start) / per_repeat)
    return 1.0 / best


def _case(ours: Any, bare: Any, seconds: float) -> dict[str, Any]:
    packb = msgpack.packb
    unpackb = msgpack.unpackb
    assert decode_message(encode_message(ours)) == ours
    ours_ops = _ops_per_s(lambda: decode_message(encode_message(ours)), seconds / 2)
    bare_ops = _ops_per_s(lambda: unpackb(packb(bare)), seconds / 2)
    return {
        "ours_ops_s": round(ours_ops),
        "bare_ops_s": round(bare_ops),
        "ratio": round(bare_ops / ours_ops, 3),
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
