"""The Handle.net JSON REST API of a real node, endpoint by endpoint, against the reference.

Expected shapes, codes and HTTP statuses come from ``shared/reference/handle-system.md`` (the
"Handle.net JSON REST API" section and its status table). Every rejected write is followed by a
check that the stored data did not change.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import time
from typing import Any

import aiohttp
import pytest

from node.auth import hash_secret
from node.store import Record
from protocol.codes import OpCode
from protocol.records import HandleValue
from tests.node.conftest import (
    ADMIN_HANDLE,
    AUTH,
    BAD_AUTH,
    HOST,
    PREFIX,
    SECRET,
    Reply,
    RunningNode,
    basic,
    create,
    http,
    indexes,
    make_config,
    raw_put_head,
    resolve,
    running_node,
    state,
    value,
)

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
WWW_AUTH = 'Basic realm="handle"'


@pytest.fixture
def seeded(node: RunningNode) -> RunningNode:
    create(
        node,
        f"{PREFIX}/item",
        value(3, "URL", "https://example.org/3"),
        value(1, "EMAIL", "a@example.org"),
        value(2, "DESC.EN", "english"),
        value(4, "DESC.FR", "francais"),
        value(5, "DESCRIPTION", "plain"),
        value(6, "NOTE", "hidden", permissions="1100"),
    )
    return node


# ------------------------------------------------------------------------------------------------
# GET


def test_get_success_shape(node: RunningNode) -> None:
    before = int(time.time())
    create(
        node,
        f"{PREFIX}/shape",
        value(3, "URL", "https://example.org/"),
        value(1, "EMAIL", "a@example.org"),
        value(2, "10320/LOC", "<locations/>"),
    )
    reply = resolve(node, f"{PREFIX}/shape")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json
    assert list(body)[0] == "responseCode"
    assert body["responseCode"] == 1
    assert body["handle"] == f"{PREFIX}/shape"
    assert indexes(reply) == [1, 2, 3]
    for v in body["values"]:
        assert set(v) == {"index", "type", "data", "ttl", "timestamp"}  # no default permissions
        assert set(v["data"]) == {"format", "value"}
        assert v["data"]["format"] == "string"
        assert v["ttl"] == 86400
        assert ISO_Z.match(v["timestamp"]), v["timestamp"]
        stamp = time.mktime(time.strptime(v["timestamp"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        assert before - 2 <= stamp <= time.time() + 2
    assert body["values"][2] == {
        "index": 3,
        "type": "URL",
        "data": {"format": "string", "value": "https://example.org/"},
        "ttl": 86400,
        "timestamp": body["values"][2]["timestamp"],
    }


@pytest.mark.parametrize(
    "suffix", ["plain", "with%20space", "a/./b", "CaSe"], ids=["plain", "escaped", "dots", "case"]
)
def test_cached_answers_equal_routed_ones(node: RunningNode, suffix: str) -> None:
    """Plain GETs are answered before routing (``plain_handle``) unless escaped or dotted; the
    first misses the cache, the next hit it: same status, headers that matter and bytes, and
    each one counted."""
    stored = suffix.replace("%20", " ")
    create(node, f"{PREFIX}/{stored}", value(1, "URL", "https://example.org/"))
    path = f"/api/handles/{PREFIX}/{suffix}"
    counted = node.node.metrics.transports["http"].op(1)
    before = counted.success
    first, second, third = (http(node, "GET", path) for _ in range(3))
    assert first.status == second.status == third.status == 200
    assert first.body == second.body == third.body
    assert first.headers["Content-Type"] == third.headers["Content-Type"]
    assert counted.success == before + 3
    for missing in (f"{PREFIX}/nope", f"{PREFIX}/nope%21"):
        replies = [http(node, "GET", f"/api/handles/{missing}") for _ in range(2)]
        assert [r.status for r in replies] == [404, 404]
        assert replies[0].body == replies[1].body


def test_get_missing_handle(node: RunningNode) -> None:
    reply = resolve(node, f"{PREFIX}/missing")
    assert reply.status == 404
    assert reply.json["responseCode"] == 100
    assert reply.json["handle"] == f"{PREFIX}/missing"
    assert reply.json["message"] == "Handle Not Found"


def test_cached_not_found_answer_names_each_spelling_asked(node: RunningNode) -> None:
    """One cache entry holds a missing handle whatever its case; each answer names the handle
    as it was asked, kept or not, and a later create is seen at once."""
    spellings = [f"{PREFIX}/missing-{n}" for n in ("a", "A", "a", "A")]
    for spelling in spellings:
        reply = resolve(node, spelling)
        assert (reply.status, reply.json["handle"]) == (404, spelling)
        pretty = http(node, "GET", f"/api/handles/{spelling}", params=[("pretty", "true")])
        assert (pretty.status, pretty.json) == (404, reply.json)
    create(node, f"{PREFIX}/missing-a", value(1, "URL", "https://example.org/"))
    assert [resolve(node, s).status for s in spellings] == [200] * 4


def test_auth_true_bypasses_the_cache(node: RunningNode) -> None:
    create(node, f"{PREFIX}/cached", value(1, "URL", "v1"))
    assert resolve(node, f"{PREFIX}/cached").json["values"][0]["data"]["value"] == "v1"

    async def behind_the_cache() -> None:  # a change the node's cache does not hear about
        def change(current: Record | None) -> Record:
            assert current is not None
            return Record(current.handle, (HandleValue(1, "URL", b"v2", timestamp=1),))

        await node.node.store.mutate(f"{PREFIX}/CACHED", change)

    node.on_node(behind_the_cache)
    assert resolve(node, f"{PREFIX}/cached").json["values"][0]["data"]["value"] == "v1"
    fresh = resolve(node, f"{PREFIX}/cached", params=[("auth", "true")])
    assert fresh.status == 200
    assert fresh.json["values"][0]["data"]["value"] == "v2"
    also = resolve(node, f"{PREFIX}/cached", params=[("auth", "true"), ("doNotRefer", "true")])
    assert also.json["values"][0]["data"]["value"] == "v2"


def test_get_is_case_insensitive_and_keeps_case(node: RunningNode) -> None:
    create(node, f"{PREFIX}/MiXeD", value(1, "URL", "u"))
    reply = resolve(node, f"{PREFIX.lower()}/mixed")
    assert reply.status == 200
    assert reply.json["handle"] == f"{PREFIX}/MiXeD"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([("index", "2")], [2]),
        ([("index", "1"), ("index", "4")], [1, 4]),
        ([("type", "URL")], [3]),
        ([("type", "URL"), ("type", "EMAIL")], [1, 3]),
        ([("type", "DESC.")], [2, 4]),
        ([("type", "URL"), ("index", "2")], [2, 3]),
        ([("type", "EMAIL"), ("index", "1")], [1]),
    ],
)
def test_get_filters(
    seeded: RunningNode, params: list[tuple[str, str]], expected: list[int]
) -> None:
    reply = resolve(seeded, f"{PREFIX}/item", params=params)
    assert reply.status == 200
    assert reply.json["responseCode"] == 1
    assert indexes(reply) == expected


@pytest.mark.parametrize(
    "params",
    [[("type", "NOPE")], [("index", "99")], [("type", "NOTE")], [("index", "6")]],
)
def test_get_filter_matching_nothing(seeded: RunningNode, params: list[tuple[str, str]]) -> None:
    # NOTE/6 exists but is not public: anonymous filters match nothing
    reply = resolve(seeded, f"{PREFIX}/item", params=params)
    assert reply.status == 200
    assert reply.json["responseCode"] == 200
    assert reply.json["values"] == []


def test_public_only_hides_non_public_values(seeded: RunningNode) -> None:
    anonymous = resolve(seeded, f"{PREFIX}/item")
    assert indexes(anonymous) == [1, 2, 3, 4, 5]
    anonymous_asks_all = resolve(seeded, f"{PREFIX}/item", params=[("publicOnly", "false")])
    assert indexes(anonymous_asks_all) == [1, 2, 3, 4, 5]
    admin = resolve(seeded, f"{PREFIX}/item", auth=True)
    assert indexes(admin) == [1, 2, 3, 4, 5, 6]
    note = admin.json["values"][5]
    assert note["permissions"] == "1100"
    assert note["data"] == {"format": "string", "value": "hidden"}
    admin_public = resolve(seeded, f"{PREFIX}/item", params=[("publicOnly", "true")], auth=True)
    assert indexes(admin_public) == [1, 2, 3, 4, 5]
    assert b"hidden" not in anonymous.body + anonymous_asks_all.body + admin_public.body


def test_admin_secret_is_never_public_nor_in_clear(node: RunningNode) -> None:
    admin = resolve(node, ADMIN_HANDLE)
    assert admin.status == 200
    assert indexes(admin) == [100]
    assert admin.json["values"][0]["type"] == "HS_ADMIN"
    assert admin.json["values"][0]["data"] == {
        "format": "admin",
        "value": {"handle": ADMIN_HANDLE, "index": 300, "permissions": "111111111111"},
    }
    for params in ([("index", "300")], [("type", "HS_SECKEY")], [("publicOnly", "false")]):
        reply = resolve(node, ADMIN_HANDLE, params=params)
        assert all(v["index"] != 300 for v in reply.json["values"]), reply.body
        assert b"HS_SECKEY" not in reply.body
    bodies = [
        resolve(node, ADMIN_HANDLE, auth=True).body,
        resolve(node, ADMIN_HANDLE, params=[("index", "300")], auth=True).body,
        resolve(node, ADMIN_HANDLE, params=[("auth", "true"), ("pretty", "true")], auth=True).body,
        resolve(node, ADMIN_HANDLE, params=[("callback", "cb")], auth=True).body,
        http(node, "GET", "/api/handles", params=[("prefix", PREFIX)], auth=True).body,
    ]
    for body in bodies:
        assert SECRET.encode() not in body
        assert b"czNjcmV0" not in body  # base64 of the secret
        assert SECRET.encode().hex().encode() not in body


def test_pretty(seeded: RunningNode) -> None:
    plain = resolve(seeded, f"{PREFIX}/item")
    pretty = resolve(seeded, f"{PREFIX}/item", params=[("pretty", "true")])
    assert pretty.status == 200
    assert b"\n  " in pretty.body
    assert b"\n" not in plain.body
    assert pretty.json == plain.json


def test_jsonp_callback(seeded: RunningNode) -> None:
    plain = resolve(seeded, f"{PREFIX}/item")
    reply = resolve(seeded, f"{PREFIX}/item", params=[("callback", "handle.cb_1")])
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/javascript")
    text = reply.body.decode()
    assert text.startswith("handle.cb_1(") and text.endswith(");")
    assert json.loads(text[len("handle.cb_1(") : -2]) == plain.json


def test_jsonp_error_is_200_with_the_code_in_the_body(seeded: RunningNode) -> None:
    reply = resolve(seeded, f"{PREFIX}/nosuch", params=[("callback", "cb")])
    assert reply.status == 200  # or a browser would not run the script
    assert json.loads(reply.body.decode()[len("cb(") : -2])["responseCode"] == 100


def test_jsonp_callback_must_be_a_name(seeded: RunningNode) -> None:
    reply = resolve(seeded, f"{PREFIX}/item", params=[("callback", "alert(1)//")])
    assert reply.status == 400
    assert reply.json["responseCode"] == 4
    assert reply.json["handle"] == f"{PREFIX}/item"


def test_no_write_leaves_the_admin_handle_without_a_secret_key(node: RunningNode) -> None:
    """Each would lock the prefix's admin out for good: refused (403, 400), nothing changed."""
    before = resolve(node, ADMIN_HANDLE, params=[("auth", "true")], auth=True).json
    path = f"/api/handles/{ADMIN_HANDLE}"
    url_only = {"values": [value(1, "URL", "u")]}
    for method, params, body in (
        ("PUT", [], url_only),  # the whole record replaced by one without a key
        ("DELETE", [], None),
        ("DELETE", [("index", "300")], None),
        ("PUT", [("index", "300")], {"values": [value(300, "URL", "u")]}),
    ):
        reply = http(node, method, path, params=params, body=body, auth=True)
        assert (reply.status, reply.json["responseCode"]) == (403, 400), (method, params)
        assert "must keep an HS_SECKEY" in reply.json["message"]
    assert resolve(node, ADMIN_HANDLE, params=[("auth", "true")], auth=True).json == before
    assert create(node, f"{PREFIX}/still-writable", value(1, "URL", "u")).status == 201
    rotated = {"values": [value(300, "HS_SECKEY", "n3w-secret")]}
    reply = http(node, "PUT", path, params=[("index", "300")], body=rotated, auth=True)
    assert reply.status == 200  # a new key is fine


@pytest.mark.parametrize("type_", ["hs_seckey", "HS_SECKEY ", "Hs_SecKey"])
def test_a_secret_key_type_spelled_otherwise_is_refused(node: RunningNode, type_: str) -> None:
    """The type filter matches it as HS_SECKEY, so stored in clear it would be read as one."""
    body = {"values": [value(300, type_, "bobsecret", permissions="1111")]}
    reply = http(node, "PUT", f"/api/handles/{PREFIX}/bob", body=body, auth=True)
    assert (reply.status, reply.json["responseCode"]) == (400, 202), reply.json
    assert resolve(node, f"{PREFIX}/bob").status == 404


def test_a_stored_hash_must_be_one_the_node_checks_in_bounded_time(node: RunningNode) -> None:
    path = f"/api/handles/{ADMIN_HANDLE}"
    params = [("index", "301")]
    costly = {"values": [value(301, "HS_SECKEY", "pbkdf2-sha256$10000000$00$00")]}
    reply = http(node, "PUT", path, params=params, body=costly, auth=True)
    assert (reply.status, reply.json["responseCode"]) == (400, 202), reply.json
    own = {"values": [value(301, "HS_SECKEY", hash_secret("second-secret").decode())]}
    assert http(node, "PUT", path, params=params, body=own, auth=True).status == 201
    second = basic(f"301%3A{ADMIN_HANDLE}", "second-secret")
    body = {"values": [value(1, "URL", "u")]}
    made = http(node, "PUT", f"/api/handles/{PREFIX}/by-301", body=body, headers=second)
    assert made.status == 201, made.json


@pytest.mark.parametrize("data", [{"format": "hex", "value": "9f8e7da1b2c3d4e5f607"}, ""])
def test_a_secret_key_must_be_text_a_credential_can_carry(
    node: RunningNode, data: dict[str, str] | str
) -> None:
    """Bytes that are not UTF-8 would be hashed as their lossy decoding, which a secret of
    replacement characters then matches; an empty secret would let anyone write: refused."""
    body = {"values": [{"index": 301, "type": "HS_SECKEY", "data": data}]}
    path = f"/api/handles/{ADMIN_HANDLE}"
    reply = http(node, "PUT", path, params=[("index", "301")], body=body, auth=True)
    assert (reply.status, reply.json["responseCode"]) == (400, 202), reply.json
    written = bytes.fromhex(data["value"]) if isinstance(data, dict) else b""
    guess = basic(f"301%3A{ADMIN_HANDLE}", written.decode("utf-8", "replace"))
    body = {"values": [value(1, "URL", "u")]}
    made = http(node, "PUT", f"/api/handles/{PREFIX}/by-guess", body=body, headers=guess)
    assert (made.status, made.json["responseCode"]) == (401, 403), made.json


def test_get_prefix_not_homed(node: RunningNode) -> None:
    reply = resolve(node, "88.999.1/x")
    assert reply.status == 400
    assert reply.json["responseCode"] == 301
    assert reply.json["message"] == "That prefix doesn't live here"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_empty_handle(node: RunningNode, method: str) -> None:
    reply = http(node, method, "/api/handles/", body={"values": []} if method == "PUT" else None)
    assert reply.status == 400
    assert reply.json["responseCode"] == 102


def test_health_and_readiness(node: RunningNode) -> None:
    health = http(node, "GET", "/healthz")
    assert health.status == 200
    assert health.json == {"status": "alive"}
    ready = http(node, "GET", "/readyz")
    assert ready.status == 200
    assert ready.json["status"] == "ready"


def test_cache_hits_and_misses_are_counted(node: RunningNode) -> None:
    create(node, f"{PREFIX}/cached", value(1, "URL", "u"))
    before = http(node, "GET", "/readyz").json["cache"]
    for _ in range(3):
        assert resolve(node, f"{PREFIX}/cached").status == 200
    after = http(node, "GET", "/readyz").json["cache"]
    assert after["misses"] == before["misses"] + 1  # the first read goes to the store
    assert after["hits"] == before["hits"] + 2
    assert 0 < after["bytes"] <= after["max_bytes"]
    # an authoritative resolution reads the store each time: a miss, not uncounted
    for _ in range(2):
        reply = http(node, "GET", f"/api/handles/{PREFIX}/cached", params=[("auth", "true")])
        assert reply.status == 200
    last = http(node, "GET", "/readyz").json["cache"]
    assert (last["hits"], last["misses"]) == (after["hits"], after["misses"] + 2)


# ------------------------------------------------------------------------------------------------
# PUT


def test_put_creates_201(node: RunningNode) -> None:
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/new",
        body={"values": [value(1, "URL", "https://a/"), value(2, "EMAIL", "e@a")]},
        auth=True,
    )
    assert reply.status == 201
    assert reply.json == {"responseCode": 1, "handle": f"{PREFIX}/new"}
    got = resolve(node, f"{PREFIX}/new")
    assert indexes(got) == [1, 2]
    assert got.json["values"][0]["data"]["value"] == "https://a/"


def test_put_overwrites_200(node: RunningNode) -> None:
    create(node, f"{PREFIX}/ow", value(1, "URL", "old"), value(2, "EMAIL", "e@a"))
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/ow",
        body={"values": [value(1, "URL", "new")]},
        auth=True,
    )
    assert reply.status == 200
    assert reply.json["responseCode"] == 1
    assert reply.json["handle"] == f"{PREFIX}/ow"
    got = resolve(node, f"{PREFIX}/ow")
    assert indexes(got) == [1]  # the whole record was replaced
    assert got.json["values"][0]["data"]["value"] == "new"


def test_put_overwrite_false_on_existing_409_101(node: RunningNode) -> None:
    create(node, f"{PREFIX}/taken", value(1, "URL", "old"))
    before = state(node)
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/taken",
        params=[("overwrite", "false")],
        body={"values": [value(1, "URL", "new")]},
        auth=True,
    )
    assert reply.status == 409
    assert reply.json["responseCode"] == 101
    assert state(node) == before


def test_put_overwrite_false_creates_when_absent(node: RunningNode) -> None:
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/fresh",
        params=[("overwrite", "false")],
        body={"values": [value(1, "URL", "u")]},
        auth=True,
    )
    assert reply.status == 201
    assert reply.json == {"responseCode": 1, "handle": f"{PREFIX}/fresh"}


def test_put_case_clash_refused_101(node: RunningNode) -> None:
    create(node, f"{PREFIX}/ABC", value(1, "URL", "upper"))
    before = state(node)
    for params in ([], [("overwrite", "false")]):
        reply = http(
            node,
            "PUT",
            f"/api/handles/{PREFIX}/abc",
            params=params,
            body={"values": [value(1, "URL", "lower")]},
            auth=True,
        )
        assert reply.status == 409, reply.body
        assert reply.json["responseCode"] == 101
    assert state(node) == before
    got = resolve(node, f"{PREFIX}/abc")
    assert got.json["handle"] == f"{PREFIX}/ABC"
    assert got.json["values"][0]["data"]["value"] == "upper"


def test_put_index_adds_a_value_201(node: RunningNode) -> None:
    # reference table: "1 -> 200 (201 when the handle or value was created)"
    create(node, f"{PREFIX}/vals", value(1, "URL", "one"))
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/vals",
        params=[("index", "2")],
        body={"values": [value(2, "EMAIL", "two@x")]},
        auth=True,
    )
    assert reply.json["responseCode"] == 1
    got = resolve(node, f"{PREFIX}/vals")
    assert indexes(got) == [1, 2]
    assert got.json["values"][1]["data"]["value"] == "two@x"
    assert reply.status == 201


def test_put_index_replaces_a_value_200(node: RunningNode) -> None:
    create(node, f"{PREFIX}/vals", value(1, "URL", "one"), value(2, "EMAIL", "two@x"))
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/vals",
        params=[("index", "1")],
        body={"values": [value(1, "URL", "uno")]},
        auth=True,
    )
    assert reply.status == 200
    assert reply.json["responseCode"] == 1
    got = resolve(node, f"{PREFIX}/vals")
    assert indexes(got) == [1, 2]  # index 2 untouched
    assert got.json["values"][0]["data"]["value"] == "uno"
    assert got.json["values"][1]["data"]["value"] == "two@x"


def test_put_index_various_adds_several(node: RunningNode) -> None:
    create(node, f"{PREFIX}/vals", value(1, "URL", "one"))
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/vals",
        params=[("index", "various")],
        body=[value(5, "A", "five"), value(7, "B", "seven")],
        auth=True,
    )
    assert reply.status in (200, 201)
    assert reply.json["responseCode"] == 1
    assert indexes(resolve(node, f"{PREFIX}/vals")) == [1, 5, 7]


def test_put_index_overwrite_false_on_existing_index_409_201(node: RunningNode) -> None:
    create(node, f"{PREFIX}/vals", value(1, "URL", "one"))
    before = state(node)
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/vals",
        params=[("index", "1"), ("overwrite", "false")],
        body={"values": [value(1, "URL", "uno")]},
        auth=True,
    )
    assert reply.status == 409
    assert reply.json["responseCode"] == 201
    assert reply.json["message"] == "Index conflict for 1"
    assert state(node) == before


def test_put_index_on_missing_handle_404(node: RunningNode) -> None:
    before = state(node)
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/absent",
        params=[("index", "1")],
        body={"values": [value(1, "URL", "u")]},
        auth=True,
    )
    assert reply.status == 404
    assert reply.json["responseCode"] == 100
    assert state(node) == before


@pytest.mark.parametrize("stem", ["", "lot-"])
def test_put_mint_new_suffix(node: RunningNode, stem: str) -> None:
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/{stem}",
        params=[("mintNewSuffix", "true")],
        body={"values": [value(1, "URL", "minted")]},
        auth=True,
    )
    assert reply.status == 201, reply.body
    assert reply.json["responseCode"] == 1
    minted = reply.json["handle"]
    assert minted.startswith(f"{PREFIX}/{stem}")
    assert len(minted) > len(f"{PREFIX}/{stem}")
    got = resolve(node, minted)
    assert got.status == 200
    assert got.json["values"][0]["data"]["value"] == "minted"
    again = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/{stem}",
        params=[("mintNewSuffix", "true")],
        body={"values": [value(1, "URL", "minted")]},
        auth=True,
    )
    assert again.status == 201
    assert again.json["handle"] != minted


def test_put_bare_array_body(node: RunningNode) -> None:
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/arr",
        body=[value(2, "B", "b"), value(1, "A", "a")],
        auth=True,
    )
    assert reply.status == 201
    assert indexes(resolve(node, f"{PREFIX}/arr")) == [1, 2]


def test_put_single_value_body(node: RunningNode) -> None:
    reply = http(node, "PUT", f"/api/handles/{PREFIX}/one", body=value(1, "URL", "u"), auth=True)
    assert reply.status == 201
    got = resolve(node, f"{PREFIX}/one")
    assert indexes(got) == [1]
    assert got.json["values"][0]["data"] == {"format": "string", "value": "u"}


def test_put_bare_string_data_and_default_ttl(node: RunningNode) -> None:
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/bare",
        body={"values": [{"index": 1, "type": "URL", "data": "https://bare/"}]},
        auth=True,
    )
    assert reply.status == 201
    got = resolve(node, f"{PREFIX}/bare").json["values"][0]
    assert got["data"] == {"format": "string", "value": "https://bare/"}
    assert got["ttl"] == 86400


def test_put_body_naming_the_same_handle_is_fine(node: RunningNode) -> None:
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/named",
        body={"handle": f"{PREFIX}/named", "values": [value(1, "URL", "u")]},
        auth=True,
    )
    assert reply.status == 201


def _rejected(node: RunningNode, reply: Reply, status: int, code: int, before: Any) -> None:
    assert reply.status == status, (reply.status, reply.body)
    assert reply.json["responseCode"] == code, reply.body
    assert state(node) == before
    assert resolve(node, f"{PREFIX}/target").status == 404


@pytest.mark.parametrize(
    ("headers", "raw"),
    [
        ({"Content-Type": "application/json"}, b'{"values": [{"handle": "88.100.1/other"}]'),
        ({"Content-Type": "application/json"}, b"{not json"),
        ({"Content-Type": "application/json"}, b"\xff\xfe"),
        ({"Content-Type": "application/json"}, b""),
        ({"Content-Type": "text/plain"}, json.dumps({"values": [value(1, "URL", "u")]}).encode()),
        ({}, json.dumps({"values": [value(1, "URL", "u")]}).encode()),
    ],
    ids=["truncated", "malformed", "not-utf8", "empty", "text-plain", "no-content-type"],
)
def test_put_bad_body_400_4(node: RunningNode, headers: dict[str, str], raw: bytes) -> None:
    before = state(node)
    reply = http(node, "PUT", f"/api/handles/{PREFIX}/target", raw=raw, headers=headers, auth=True)
    _rejected(node, reply, 400, 4, before)


@pytest.mark.parametrize(
    "body",
    [
        {"handle": f"{PREFIX}/other", "values": [value(1, "URL", "u")]},
        {"handle": "88.999/target", "values": [value(1, "URL", "u")]},
        {"values": [{"index": 1, "type": "URL", "data": ["a", "b"]}]},
        {"values": [{"index": 1, "type": "URL", "data": 5}]},
        {"values": {"index": 1}},
        "just a string",
        {"values": [{"type": "URL", "data": "no index"}]},
    ],
    ids=[
        "other-handle",
        "other-prefix",
        "array-data",
        "number-data",
        "values-object",
        "string",
        "no-index",
    ],
)
def test_put_bad_shape_400_4(node: RunningNode, body: Any) -> None:
    before = state(node)
    reply = http(node, "PUT", f"/api/handles/{PREFIX}/target", body=body, auth=True)
    _rejected(node, reply, 400, 4, before)


def test_put_invalid_value_400_202(node: RunningNode) -> None:
    before = state(node)
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/target",
        body={"values": [value(0, "URL", "u")]},
        auth=True,
    )
    _rejected(node, reply, 400, 202, before)
    dup = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/target",
        body={"values": [value(1, "URL", "u"), value(1, "URL", "v")]},
        auth=True,
    )
    _rejected(node, dup, 400, 202, before)


def test_put_over_a_small_limit_413_when_the_body_comes_with_the_head(tmp_path: Any) -> None:
    with running_node(make_config(tmp_path / "data", max_http_body_bytes=200)) as node:
        body = {"values": [value(1, "URL", "x" * 300)]}
        reply = http(node, "PUT", f"/api/handles/{PREFIX}/target", body=body, auth=True)
        assert reply.status == 413
        assert reply.json["responseCode"] == 4
        assert resolve(node, f"{PREFIX}/target").status == 404
        small = {"values": [value(1, "URL", "u")]}
        assert http(node, "PUT", f"/api/handles/{PREFIX}/t2", body=small, auth=True).status == 201


def _exchange_raw(port: int, data: bytes, seconds: float) -> tuple[bytes, bool, float]:
    """Send ``data``, read until the server closes or ``seconds`` pass: (what came, whether it
    closed, seconds taken)."""
    started = time.monotonic()
    got = b""
    with socket.create_connection((HOST, port)) as sock:
        sock.sendall(data)
        sock.settimeout(0.2)
        while time.monotonic() - started < seconds:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return got, True, time.monotonic() - started
            if not chunk:
                return got, True, time.monotonic() - started
            got += chunk
    return got, False, time.monotonic() - started


def test_idle_and_half_sent_http_connections_are_closed(tmp_path: Any) -> None:
    with running_node(make_config(tmp_path / "data", http_idle_timeout_s=0.5)) as node:
        port = node.ports["http"]
        for sent in (b"", b"GET /api/handles/88.100.1/x HTTP/1.1\r\nHost: x\r\n"):
            got, closed, took = _exchange_raw(port, sent, 5)
            assert closed and got == b"" and took < 3, (sent, got, took)
        full = f"GET /api/handles/{PREFIX}/x HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        got, closed, took = _exchange_raw(port, full, 5)  # answered, then idle keep-alive
        assert got.startswith(b"HTTP/1.1 404") and closed and took < 3


def test_put_body_shorter_than_its_length_gets_408_and_nothing_is_stored(tmp_path: Any) -> None:
    with running_node(make_config(tmp_path / "data", http_idle_timeout_s=0.5)) as node:
        head = raw_put_head(f"{PREFIX}/short", 100)
        got, _, took = _exchange_raw(node.ports["http"], head + b'{"values":', 3)
        assert got.startswith(b"HTTP/1.1 408") and b"Connection: close" in got, got
        assert json.loads(got.partition(b"\r\n\r\n")[2])["responseCode"] == 4
        assert resolve(node, f"{PREFIX}/short").status == 404


def test_put_declaring_a_body_over_the_limit_gets_413_without_waiting(node: RunningNode) -> None:
    head = raw_put_head(f"{PREFIX}/huge", 99_999_999_999)
    started = time.monotonic()
    got, _, _ = _exchange_raw(node.ports["http"], head + b"abc", 2)
    assert got.startswith(b"HTTP/1.1 413"), got
    assert time.monotonic() - started < 2.5  # answered, not left waiting for 100 GB
    reply = json.loads(got.partition(b"\r\n\r\n")[2])
    assert reply["responseCode"] == 4 and reply["handle"] == f"{PREFIX}/huge"


def test_a_client_gone_mid_body_is_no_error_in_the_log(
    node: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.create_connection((HOST, node.ports["http"])) as sock:
        sock.sendall(raw_put_head(f"{PREFIX}/gone", 100) + b'{"values":')
    time.sleep(0.5)
    assert http(node, "GET", "/healthz").status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert resolve(node, f"{PREFIX}/gone").status == 404


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/handles/" + b"x" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # line too long
        b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic TOPSECRET" + b"y" * 9000 + b"\r\n\r\n",
        b"PUT /api/handles/88.100.1/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",  # two lengths
        b"PUT /api/handles/88.100.1/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"\r\nzz\r\n",  # a chunk size that is not hex
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2's preface
    ],
    ids=["long-line", "long-header", "two-lengths", "bad-chunk", "http2"],
)
def test_what_the_http_parser_refuses_is_answered_in_the_error_shape(
    node: RunningNode, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    got, _, _ = _exchange_raw(node.ports["http"], request_bytes, 2)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.split(b" ")[1].startswith(b"4"), head
    assert b"application/json" in head
    assert json.loads(body)["responseCode"] == 4
    assert b"TOPSECRET" not in body and b"yyyy" not in body  # the reason, not the bytes
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert http(node, "GET", "/healthz").status == 200


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"400"),
        (
            f"PUT /api/handles/{PREFIX}/expected HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nAuthorization: {AUTH['Authorization']}\r\n"
            "Content-Length: 2\r\nExpect: foo\r\nConnection: close\r\n\r\n".encode(),
            b"417",
        ),
    ],
    ids=["options-star", "unknown-expect"],
)
def test_what_the_router_refuses_is_answered_in_the_error_shape(
    node: RunningNode, request_bytes: bytes, status: bytes
) -> None:
    """aiohttp's router answered these in plain text."""
    got, _, _ = _exchange_raw(node.ports["http"], request_bytes, 2)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == status and b"application/json" in head, got
    assert json.loads(body)["responseCode"] == 4
    assert resolve(node, f"{PREFIX}/expected").status == 404


def test_put_expecting_100_continue_gets_it_before_the_body(node: RunningNode) -> None:
    body = json.dumps({"values": [value(1, "URL", "u")]}).encode()
    auth = AUTH["Authorization"]
    head = (
        f"PUT /api/handles/{PREFIX}/continued HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nAuthorization: {auth}\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()

    async def go() -> tuple[bytes, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.ports["http"])
        try:
            writer.write(head)
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            writer.write(body)
            final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            return interim, final
        finally:
            writer.close()

    interim, final = asyncio.run(go())
    assert interim.startswith(b"HTTP/1.1 100")
    assert final.startswith(b"HTTP/1.1 201")
    assert resolve(node, f"{PREFIX}/continued").status == 200


@pytest.mark.parametrize(
    ("headers", "status", "why"),
    [
        ("Content-Type: text/plain\r\nContent-Length: 20\r\n", 400, "Content-Type"),
        ("Content-Type: application/json\r\nContent-Length: 2000000\r\n", 413, "over"),
    ],
    ids=["content-type", "too-long"],
)
def test_put_expecting_100_continue_that_its_head_dooms_is_refused_before_the_body(
    node: RunningNode, headers: str, status: int, why: str
) -> None:
    """No ``100 Continue`` (the client would send a body only to hear it refused): the
    refusal, counted like any answer."""
    refused = node.node.metrics.transports["http"].op(OpCode.CREATE_HANDLE).codes
    before = refused.get(4, 0)
    head = (
        f"PUT /api/handles/{PREFIX}/doomed HTTP/1.1\r\nHost: x\r\n{headers}"
        f"Authorization: {AUTH['Authorization']}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()

    async def go() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.ports["http"])
        try:
            writer.write(head)
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = int(re.search(rb"Content-Length: (\d+)", answer)[1])  # type: ignore[index]
            return answer + await asyncio.wait_for(reader.readexactly(length), 10)
        finally:
            writer.close()

    answer = asyncio.run(go())
    assert answer.startswith(f"HTTP/1.1 {status}".encode()), answer
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["responseCode"] == 4 and why in body["message"]
    assert resolve(node, f"{PREFIX}/doomed").status == 404
    assert refused.get(4, 0) == before + 1


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize(
    ("escape", "why"),
    [
        ("a%0Ab", "non-printable"),  # a newline once decoded, which ``.`` would not route
        ("a%0D%0Ab", "non-printable"),
        ("a%00b", "non-printable"),
        ("%FFX", "not UTF-8"),  # yarl kept it as the text %FFX, the handle %25FFX names
        ("%ED%A0%80", "not UTF-8"),  # a lone surrogate
        ("%C3", "not UTF-8"),  # a cut sequence
    ],
)
def test_a_path_escape_that_is_no_printable_utf8_is_an_invalid_handle_102(
    node: RunningNode, method: str, escape: str, why: str
) -> None:
    body = {"values": [value(1, "URL", "u")]} if method == "PUT" else None
    before = state(node)
    reply = http(node, method, f"/api/handles/{PREFIX}/{escape}", body=body, auth=True)
    assert reply.status == 400
    assert reply.json["responseCode"] == 102
    assert why in reply.json["message"]
    assert state(node) == before


def test_put_to_a_percent_encoded_path_creates_the_decoded_handle(node: RunningNode) -> None:
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/with%20space",
        body={"values": [value(1, "URL", "u")]},
        auth=True,
    )
    assert reply.status == 201
    assert reply.json["handle"] == f"{PREFIX}/with space"


def test_put_over_one_mib_413(node: RunningNode) -> None:
    before = state(node)
    big = "x" * (1024 * 1024 + 10)
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/target",
        body={"values": [value(1, "URL", big)]},
        auth=True,
    )
    assert reply.status == 413
    assert reply.json["responseCode"] == 4
    assert state(node) == before
    assert resolve(node, f"{PREFIX}/target").status == 404


def test_put_without_credentials_401_402(node: RunningNode) -> None:
    before = state(node)
    reply = http(
        node, "PUT", f"/api/handles/{PREFIX}/target", body={"values": [value(1, "URL", "u")]}
    )
    assert reply.headers.get("WWW-Authenticate") == WWW_AUTH
    _rejected(node, reply, 401, 402, before)


def test_put_overwrite_without_credentials_leaves_data(node: RunningNode) -> None:
    create(node, f"{PREFIX}/kept", value(1, "URL", "orig"))
    before = state(node)
    for params in ([], [("index", "1")], [("index", "2")]):
        reply = http(
            node,
            "PUT",
            f"/api/handles/{PREFIX}/kept",
            params=params,
            body={"values": [value(1 if params != [("index", "2")] else 2, "URL", "evil")]},
        )
        assert reply.status == 401
        assert reply.json["responseCode"] == 402
        assert reply.headers.get("WWW-Authenticate") == WWW_AUTH
    assert state(node) == before


@pytest.mark.parametrize(
    "headers",
    [
        BAD_AUTH,
        basic("300%3A88.100.1/NOBODY", SECRET),
        basic("301%3A88.100.1/ADMIN", SECRET),
    ],
    ids=["wrong-secret", "unknown-handle", "wrong-index"],
)
def test_put_wrong_credentials_401_403(node: RunningNode, headers: dict[str, str]) -> None:
    # the reference server answers a wrong password with 401 (its table says 403; see codes.py)
    before = state(node)
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/target",
        body={"values": [value(1, "URL", "u")]},
        headers=headers,
    )
    _rejected(node, reply, 401, 403, before)


def test_put_malformed_authorization_is_refused(node: RunningNode) -> None:
    before = state(node)
    for header in ("Basic !!!notbase64", "Bearer abc", "Basic " + "bm9jb2xvbg=="):
        reply = http(
            node,
            "PUT",
            f"/api/handles/{PREFIX}/target",
            body={"values": [value(1, "URL", "u")]},
            headers={"Authorization": header},
        )
        # INVALID_CREDENTIAL (404) -> HTTP 403 per the reference's table
        assert reply.status == 403, (header, reply.status, reply.body)
        assert reply.json["responseCode"] == 404
    assert state(node) == before
    assert resolve(node, f"{PREFIX}/target").status == 404


def test_put_prefix_not_homed_400_301(node: RunningNode) -> None:
    before = state(node)
    reply = http(
        node,
        "PUT",
        "/api/handles/88.999.1/target",
        body={"values": [value(1, "URL", "u")]},
        auth=True,
    )
    assert reply.status == 400
    assert reply.json["responseCode"] == 301
    assert reply.json["message"] == "That prefix doesn't live here"
    assert state(node) == before


def test_put_after_rejections_cache_is_not_stale(node: RunningNode) -> None:
    # a resolution answered from the cache must follow every accepted write
    create(node, f"{PREFIX}/c", value(1, "URL", "v1"))
    assert resolve(node, f"{PREFIX}/c").json["values"][0]["data"]["value"] == "v1"
    create(node, f"{PREFIX}/c", value(1, "URL", "v2"))
    assert resolve(node, f"{PREFIX}/c").json["values"][0]["data"]["value"] == "v2"
    assert resolve(node, f"{PREFIX}/nc").status == 404  # negative answer cached
    create(node, f"{PREFIX}/nc", value(1, "URL", "now"))
    assert resolve(node, f"{PREFIX}/nc").status == 200


# ------------------------------------------------------------------------------------------------
# DELETE


def test_delete_200_1(node: RunningNode) -> None:
    create(node, f"{PREFIX}/del", value(1, "URL", "u"))
    assert resolve(node, f"{PREFIX}/del").status == 200
    reply = http(node, "DELETE", f"/api/handles/{PREFIX}/del", auth=True)
    assert reply.status == 200
    assert reply.json["responseCode"] == 1
    assert reply.json["handle"] == f"{PREFIX}/del"
    assert resolve(node, f"{PREFIX}/del").status == 404


def test_delete_missing_404_100(node: RunningNode) -> None:
    before = state(node)
    reply = http(node, "DELETE", f"/api/handles/{PREFIX}/nothing", auth=True)
    assert reply.status == 404
    assert reply.json["responseCode"] == 100
    assert state(node) == before


def test_index_parameters_of_writes(node: RunningNode) -> None:
    """Repeated indexes count once, ``various`` names no index to remove, a non-integer index is
    refused, and a PUT with ``index=`` writes only the body's values at the indexes named."""
    handle = f"{PREFIX}/iq"
    create(node, handle, value(1, "URL", "u"), value(2, "EMAIL", "e"), value(3, "X", "x"))

    def write(method: str, params: list[tuple[str, str]], *values: dict[str, Any]) -> Reply:
        body = {"values": list(values)} if method == "PUT" else None
        return http(node, method, f"/api/handles/{handle}", params=params, body=body, auth=True)

    twice = write("DELETE", [("index", "2"), ("index", "2")])
    assert twice.status == 200 and indexes(resolve(node, handle)) == [1, 3]
    for refused in (
        write("DELETE", [("index", "various")]),
        write("DELETE", [("index", "x")]),
        write("PUT", [("index", "abc")], value(4, "URL", "v")),
        write("PUT", [("index", "7")], value(5, "URL", "v")),  # the body has none at 7
    ):
        assert (refused.status, refused.json["responseCode"]) == (400, 4), refused.json
        assert indexes(resolve(node, handle)) == [1, 3]
    only = write("PUT", [("index", "4")], value(4, "URL", "four"), value(5, "URL", "five"))
    assert only.status == 201 and indexes(resolve(node, handle)) == [1, 3, 4]
    various = write("PUT", [("index", "various")], value(5, "URL", "five"), value(6, "X", "six"))
    assert various.status == 201 and indexes(resolve(node, handle)) == [1, 3, 4, 5, 6]


def test_delete_index_removes_only_it(node: RunningNode) -> None:
    create(node, f"{PREFIX}/dv", value(1, "URL", "u"), value(2, "EMAIL", "e"), value(3, "X", "x"))
    reply = http(node, "DELETE", f"/api/handles/{PREFIX}/dv", params=[("index", "2")], auth=True)
    assert reply.status == 200
    assert reply.json["responseCode"] == 1
    assert indexes(resolve(node, f"{PREFIX}/dv")) == [1, 3]
    several = http(
        node,
        "DELETE",
        f"/api/handles/{PREFIX}/dv",
        params=[("index", "1"), ("index", "3")],
        auth=True,
    )
    # removing every value would leave an empty handle: refused or the handle goes; never empty
    got = resolve(node, f"{PREFIX}/dv")
    if several.status == 200:
        assert got.status == 404 or got.json["values"] != []
    else:
        assert indexes(got) == [1, 3]


def test_delete_missing_index_400_200(node: RunningNode) -> None:
    create(node, f"{PREFIX}/dv", value(1, "URL", "u"), value(2, "EMAIL", "e"))
    before = state(node)
    reply = http(node, "DELETE", f"/api/handles/{PREFIX}/dv", params=[("index", "9")], auth=True)
    assert reply.status == 400
    assert reply.json["responseCode"] == 200
    both = http(
        node,
        "DELETE",
        f"/api/handles/{PREFIX}/dv",
        params=[("index", "1"), ("index", "9")],
        auth=True,
    )
    assert both.status == 400
    assert both.json["responseCode"] == 200
    assert state(node) == before  # index 1 was not removed either


def test_delete_without_credentials_401_402(node: RunningNode) -> None:
    create(node, f"{PREFIX}/dv", value(1, "URL", "u"), value(2, "EMAIL", "e"))
    before = state(node)
    for params in ([], [("index", "1")]):
        reply = http(node, "DELETE", f"/api/handles/{PREFIX}/dv", params=params)
        assert reply.status == 401
        assert reply.json["responseCode"] == 402
        assert reply.headers.get("WWW-Authenticate") == WWW_AUTH
    wrong = http(node, "DELETE", f"/api/handles/{PREFIX}/dv", headers=BAD_AUTH)
    assert wrong.status == 401
    assert wrong.json["responseCode"] == 403
    assert state(node) == before


def test_delete_prefix_not_homed_400_301(node: RunningNode) -> None:
    reply = http(node, "DELETE", "/api/handles/88.999.1/x", auth=True)
    assert reply.status == 400
    assert reply.json["responseCode"] == 301
    assert reply.json["message"] == "That prefix doesn't live here"


# ------------------------------------------------------------------------------------------------
# list


def test_list_with_credentials_and_paging(node: RunningNode) -> None:
    names = [f"{PREFIX}/h{i:02d}" for i in range(7)]
    for name in reversed(names):
        create(node, name, value(1, "URL", name))
    all_handles = sorted([*names, ADMIN_HANDLE], key=str.upper)
    reply = http(
        node,
        "GET",
        "/api/handles",
        params=[("prefix", PREFIX), ("page", "0"), ("pageSize", "3")],
        auth=True,
    )
    assert reply.status == 200
    body = reply.json
    assert body["responseCode"] == 1
    assert body["prefix"] == PREFIX
    assert body["totalCount"] == str(len(all_handles))
    assert isinstance(body["totalCount"], str)
    assert body["page"] == 0
    assert body["pageSize"] == 3
    assert body["handles"] == all_handles[:3]
    pages = []
    for page in range(3):
        r = http(
            node,
            "GET",
            "/api/handles",
            params=[("prefix", PREFIX), ("page", str(page)), ("pageSize", "3")],
            auth=True,
        )
        assert r.json["page"] == page
        pages += r.json["handles"]
    assert pages == all_handles
    default = http(node, "GET", "/api/handles", params=[("prefix", PREFIX)], auth=True)
    assert default.json["pageSize"] == 100
    assert default.json["handles"] == all_handles


def test_list_anonymous_401_402(node: RunningNode) -> None:
    reply = http(node, "GET", "/api/handles", params=[("prefix", PREFIX)])
    assert reply.status == 401
    assert reply.json["responseCode"] == 402
    assert reply.headers.get("WWW-Authenticate") == WWW_AUTH
    assert b"ADMIN" not in reply.body


def test_list_wrong_secret_401_403(node: RunningNode) -> None:
    reply = http(node, "GET", "/api/handles", params=[("prefix", PREFIX)], headers=BAD_AUTH)
    assert reply.status == 401
    assert reply.json["responseCode"] == 403


def test_list_prefix_not_homed_400_301(node: RunningNode) -> None:
    reply = http(node, "GET", "/api/handles", params=[("prefix", "88.999.1")], auth=True)
    assert reply.status == 400
    assert reply.json["responseCode"] == 301
    assert reply.json["message"] == "That prefix doesn't live here"


@pytest.mark.parametrize(
    "params",
    [[("page", "-1")], [("pageSize", "0")], [("pageSize", "x")], [("pageSize", "1000000")]],
)
def test_list_bad_paging_400_4(node: RunningNode, params: list[tuple[str, str]]) -> None:
    reply = http(node, "GET", "/api/handles", params=[("prefix", PREFIX), *params], auth=True)
    assert reply.status == 400
    assert reply.json["responseCode"] == 4


def test_concurrent_http_writes_and_reads_agree(node: RunningNode) -> None:
    async def go() -> list[int]:
        async with aiohttp.ClientSession(headers=AUTH) as session:

            async def one(i: int) -> int:
                async with session.put(
                    node.url(f"/api/handles/{PREFIX}/cc{i}"),
                    json={"values": [value(1, "URL", str(i))]},
                ) as resp:
                    return resp.status

            return await asyncio.gather(*(one(i) for i in range(50)))

    assert node.call(go) == [201] * 50
    for i in range(0, 50, 7):
        assert resolve(node, f"{PREFIX}/cc{i}").json["values"][0]["data"]["value"] == str(i)


# ------------------------------------------------------------------------------------------------
# hostile input: every request gets a REST-shaped answer, never a 500, and nothing is stored


def _refused_in_rest_shape(node: RunningNode, reply: Reply, codes: tuple[int, ...]) -> None:
    assert reply.status == 400, (reply.status, reply.body[:300])
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json["responseCode"] in codes, reply.body


def test_put_reference_index_out_of_range_is_refused(node: RunningNode) -> None:
    before = state(node)
    for index in (2**70, 2**31, -(2**31) - 1):
        reply = http(
            node,
            "PUT",
            f"/api/handles/{PREFIX}/target",
            body={
                "values": [
                    value(1, "URL", "u", references=[{"handle": f"{PREFIX}/x", "index": index}])
                ]
            },
            auth=True,
        )
        _refused_in_rest_shape(node, reply, (4, 202))
    assert state(node) == before
    assert resolve(node, f"{PREFIX}/target").status == 404


def test_put_reference_handle_not_unicode_is_refused(node: RunningNode) -> None:
    before = state(node)
    raw = (
        b'{"values":[{"index":1,"type":"URL","data":"u",'
        b'"references":[{"handle":"88.100.1/\\ud800","index":1}]}]}'
    )
    reply = http(
        node,
        "PUT",
        f"/api/handles/{PREFIX}/target",
        raw=raw,
        headers={"Content-Type": "application/json"},
        auth=True,
    )
    _refused_in_rest_shape(node, reply, (4, 202))
    assert state(node) == before


def test_put_deeply_nested_json_400_4(node: RunningNode) -> None:
    before = state(node)
    depth = 200_000
    for raw in (b"[" * depth + b"]" * depth, b'{"values":' + b"[" * depth):
        reply = http(
            node,
            "PUT",
            f"/api/handles/{PREFIX}/target",
            raw=raw,
            headers={"Content-Type": "application/json"},
            auth=True,
        )
        _refused_in_rest_shape(node, reply, (4,))
    assert state(node) == before


def test_list_page_beyond_any_offset_is_answered(node: RunningNode) -> None:
    for page, size in (("99999999999999999999", "100"), ("92233720368547758", "1000")):
        reply = http(
            node,
            "GET",
            "/api/handles",
            params=[("prefix", PREFIX), ("page", page), ("pageSize", size)],
            auth=True,
        )
        assert reply.status in (200, 400), (reply.status, reply.body[:300])
        assert reply.headers["Content-Type"].startswith("application/json")
        if reply.status == 200:
            assert reply.json["handles"] == []
        else:
            assert reply.json["responseCode"] == 4
    assert http(node, "GET", "/readyz").status == 200


def test_unknown_paths_and_methods_answer_in_the_error_shape(node: RunningNode) -> None:
    # the statuses of the reference's table: code 4 -> 400, code 5 -> 501
    for path in ("/nope", "/no%0Ape"):  # a newline once decoded, which ``.`` would not match
        missing = http(node, "GET", path)
        assert missing.status == 400
        assert missing.json["responseCode"] == 4
    for method in ("POST", "PATCH"):
        wrong_method = http(node, method, f"/api/handles/{PREFIX}/x")
        assert wrong_method.status == 501
        assert wrong_method.json["responseCode"] == 5
        assert wrong_method.json["handle"] == f"{PREFIX}/x"
