"""Identifier and value rules as the reference states them, through a real node.

Case: prefixes compare upper-cased ASCII; suffixes compare case-insensitively (ASCII only) unless
the node is case-sensitive; ``0.NA/<PREFIX>`` is written upper-cased. One operation gives the same
answer over every transport, an index named twice included.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from protocol.codes import ResponseCode
from protocol.messages import (
    AddValuesRequest,
    ModifyValuesRequest,
    RemoveValuesRequest,
)
from protocol.records import HandleValue
from tests.node.conftest import (
    CREDENTIAL,
    PREFIX,
    SECRET,
    RunningNode,
    basic,
    create,
    http,
    make_config,
    resolve,
    running_node,
    tcp_request,
    value,
)


def test_with_case_sensitive_suffixes_only_ADMIN_administers_a_prefix(tmp_path: Path) -> None:
    """``88.100.1/Admin`` is another handle there: writing it is no admin change, and a secret
    put in it gives no right on the prefix."""
    with running_node(make_config(tmp_path, case_sensitive_suffix=True)) as node:
        create(node, f"{PREFIX}/admin", value(1, "URL", "http://x"))  # 403 before
        seckey = {"index": 300, "type": "HS_SECKEY", "data": "other"}
        create(node, f"{PREFIX}/Admin", seckey)
        impostor = basic(f"300%3A{PREFIX}/Admin", "other")
        body = {"values": [value(1, "URL", "http://y")]}
        reply = http(node, "PUT", f"/api/handles/{PREFIX}/byother", body=body, headers=impostor)
        assert reply.status == 403 and reply.json["responseCode"] == 400, reply.body
        assert resolve(node, f"{PREFIX}/byother").status == 404


def test_a_body_naming_the_handle_is_compared_by_the_node_case_rule(tmp_path: Path) -> None:
    body = {"handle": f"{PREFIX}/MASSE", "values": [value(1, "URL", "u")]}
    with running_node(make_config(tmp_path / "ci")) as node:
        # ß is not ASCII: Maße and MASSE are two handles, which Unicode upper-casing mixed up
        reply = http(node, "PUT", f"/api/handles/{PREFIX}/Ma%C3%9Fe", body=body, auth=True)
        assert reply.status == 400 and reply.json["responseCode"] == 4, reply.body
        same = {"handle": f"{PREFIX}/wrapped", "values": [value(1, "URL", "u")]}
        reply = http(node, "PUT", f"/api/handles/hdl:{PREFIX}/WRAPPED", body=same, auth=True)
        assert reply.status == 201, reply.body
    with running_node(make_config(tmp_path / "cs", case_sensitive_suffix=True)) as node:
        lower = {"handle": f"{PREFIX}/LOWER", "values": [value(1, "URL", "u")]}
        reply = http(node, "PUT", f"/api/handles/{PREFIX}/lower", body=lower, auth=True)
        assert reply.status == 400 and reply.json["responseCode"] == 4, reply.body


def test_type_filters_fold_ascii_case_only(node: RunningNode) -> None:
    create(node, f"{PREFIX}/types", value(1, "straße", "x"), value(2, "Url", "u"))
    for asked, indexes in (("STRASSE", []), ("strasse", []), ("STRAßE", [1]), ("url", [2])):
        reply = resolve(node, f"{PREFIX}/types", params=[("type", asked)])
        assert [v["index"] for v in reply.json.get("values", [])] == indexes, (asked, reply.body)


def test_an_index_named_twice_gets_one_answer_over_every_transport(node: RunningNode) -> None:
    handle = f"{PREFIX}/twice"
    create(node, handle, value(1, "URL", "u"), value(5, "EMAIL", "e"), value(6, "EMAIL", "f"))
    before = resolve(node, handle).json["values"]
    twice = [value(7, "URL", "a"), value(7, "URL", "b")]
    for params in ([("index", "various")], [("index", "7")]):
        reply = http(
            node, "PUT", f"/api/handles/{handle}", body={"values": twice}, params=params, auth=True
        )
        assert reply.status == 400 and reply.json["responseCode"] == 202, reply.body
    hv = [HandleValue(1, "URL", b"a"), HandleValue(1, "URL", b"b")]
    for request in (
        AddValuesRequest(
            handle=handle, values=(HandleValue(8, "URL", b"a"),) * 2, credential=CREDENTIAL
        ),
        ModifyValuesRequest(handle=handle, values=tuple(hv), credential=CREDENTIAL),
    ):
        answer = asyncio.run(tcp_request(node.ports["tcp"], request))
        assert answer.code == ResponseCode.INVALID_VALUE, answer
    assert resolve(node, handle).json["values"] == before  # nothing changed
    # a removal naming an index twice removes it once, as HTTP's does
    removed = RemoveValuesRequest(handle=handle, indexes=(5, 5), credential=CREDENTIAL)
    assert asyncio.run(tcp_request(node.ports["tcp"], removed)).code == ResponseCode.SUCCESS
    reply = http(
        node, "DELETE", f"/api/handles/{handle}", params=[("index", "6"), ("index", "6")], auth=True
    )
    assert reply.status == 200, reply.body
    assert [v["index"] for v in resolve(node, handle).json["values"]] == [1]


def test_a_prefix_handle_is_written_upper_cased(tmp_path: Path) -> None:
    """``0.NA/<PREFIX>`` (upper-cased), as the reference writes it: the reference's spelling
    then overwrites it instead of clashing with the spelling first written."""
    with running_node(make_config(tmp_path, home=[PREFIX, "88.ab"])) as node:
        admin = basic("300%3A0.NA/88.ab", SECRET)
        body = {"values": [value(1, "URL", "http://na")]}
        reply = http(node, "PUT", "/api/handles/0.NA/88.ab", body=body, headers=admin)
        assert reply.status in (200, 201), reply.body
        again = http(node, "PUT", "/api/handles/0.NA/88.AB", body=body, headers=admin)
        assert again.status == 200, again.body
        assert resolve(node, "0.na/88.ab").json["handle"] == "0.NA/88.AB"
