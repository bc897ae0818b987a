"""Seed corpus and mutators for the decoder fuzz harness (``tests/protocol/fuzz.py``).

Seeds are real encodings made by the code under test (every message kind, every REST shape, HS_ADMIN
and HS_VLIST data, identifiers of every scheme) plus hand-made hostile inputs: deep nesting, msgpack
headers declaring 4 GiB, frames of absurd length, inputs right at the size limits. The mutator knows
the four input kinds (msgpack, TCP frame streams, JSON, text, big-endian binary) well enough to edit
structure (replace a node of a decoded tree, edit a length field) as well as bytes, so a pure-Python
engine without coverage feedback still reaches the deep branches of each decoder.
"""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import msgpack

from protocol.codes import ALL_ADMIN_PERMISSIONS, AdminPermission, OpCode, OpFlag, ResponseCode
from protocol.jsonapi import response_to_json, value_to_json
from protocol.messages import (
    AddValuesRequest,
    CreateRequest,
    CreateResponse,
    Credential,
    DeleteRequest,
    DoneResponse,
    ErrorResponse,
    GetSiteInfoRequest,
    HomePrefixRequest,
    Interface,
    ListHandlesRequest,
    ListHandlesResponse,
    ListHomedPrefixesRequest,
    ListPrefixesResponse,
    Message,
    ModifyValuesRequest,
    ReferralResponse,
    RemoveValuesRequest,
    ResolveRequest,
    ResolveResponse,
    Server,
    SiteInfo,
    SiteInfoResponse,
    TruncatedResponse,
    UnhomePrefixRequest,
)
from protocol.records import TTL_ABSOLUTE, AdminValue, HandleValue, Reference, pack_vlist
from protocol.site import encode_site, site_value
from protocol.wire import encode_datagram, encode_message, frame

NOW = 1764300000  #: 2025-11-28T03:20:00Z, the timestamp every seed value carries
HANDLE = "88.118.8/PRD-2026-000123"

#: what each target's input is, which picks the mutator
KIND_MSGPACK, KIND_FRAMES, KIND_JSON, KIND_TEXT, KIND_BINARY = (
    "msgpack",
    "frames",
    "json",
    "text",
    "bin",
)

# ---------------------------------------------------------------------------------------------
# Seeds


_SITE = SiteInfo(
    7, 1, (Server(1, "192.0.2.1", (Interface(3, 0, 2641), Interface(3, 1, 2641))),), True
)


def sample_values() -> tuple[HandleValue, ...]:
    """A factory record: URL, product data, an absolute TTL, HS_ADMIN, HS_VLIST with references."""
    admin = AdminValue("0.NA/88.118.8", 200, ALL_ADMIN_PERMISSIONS).to_bytes()
    vlist = pack_vlist((Reference("88.118.8/ADMIN", 300), Reference("88.118.8/OPS", 301)))
    return (
        HandleValue(1, "URL", b"https://mes.example.cn/p/PRD-2026-000123", timestamp=NOW),
        HandleValue(2, "PRODUCT_NAME", "数控机床主轴".encode(), timestamp=NOW),
        HandleValue(3, "MODEL", b"SK-5080", ttl=3600, timestamp=NOW),
        HandleValue(
            4, "BATCH", b"B20261128-07", ttl=NOW + 86400, ttl_type=TTL_ABSOLUTE, timestamp=NOW
        ),
        HandleValue(5, "SECRET_NOTE", b"\x00\xff\xfe binary", permissions=0x8, timestamp=NOW),
        HandleValue(100, "HS_ADMIN", admin, timestamp=NOW),
        HandleValue(200, "HS_VLIST", vlist, references=(Reference("88.118.8/X", 1),)),
        site_value(_SITE, index=300),
    )


def sample_messages() -> list[Message]:
    """One message of every kind the wire codec knows, most with every optional field set."""
    values = sample_values()
    cred = Credential("88.118.8/ADMIN", 300, "s3cret")
    rid = 0x01020304
    return [
        ResolveRequest(request_id=1, flags=OpFlag.PUBLIC_ONLY, handle=HANDLE),
        ResolveRequest(request_id=rid, handle=HANDLE, indexes=(1, 100), types=("URL", "HS_")),
        ResolveRequest(request_id=0xFFFFFFFF, flags=0xFFFFFFFF, credential=cred, handle="0.NA/88"),
        GetSiteInfoRequest(request_id=2),
        CreateRequest(
            request_id=3, flags=OpFlag.OVERWRITE, credential=cred, handle=HANDLE, values=values
        ),
        DeleteRequest(request_id=4, credential=cred, handle=HANDLE),
        AddValuesRequest(request_id=5, credential=cred, handle=HANDLE, values=values[:2]),
        RemoveValuesRequest(request_id=6, credential=cred, handle=HANDLE, indexes=(2, 3)),
        ModifyValuesRequest(request_id=7, credential=cred, handle=HANDLE, values=values[2:4]),
        ListHandlesRequest(request_id=8, credential=cred, prefix="88.118.8", page=2, page_size=50),
        ListHomedPrefixesRequest(request_id=9),
        HomePrefixRequest(request_id=10, credential=cred, prefix="88.118.9"),
        UnhomePrefixRequest(request_id=11, credential=cred, prefix="88.118.9"),
        ResolveResponse(request_id=1, handle=HANDLE, values=values),
        ResolveResponse(request_id=1, handle=HANDLE, values=()),
        CreateResponse(request_id=3, handle=HANDLE, created=False),
        DoneResponse(request_id=4, answers=OpCode.DELETE_HANDLE),
        DoneResponse(request_id=10, answers=OpCode.HOME_NA),
        ListHandlesResponse(
            request_id=8,
            prefix="88.118.8",
            total=1234,
            page=2,
            page_size=3,
            handles=("88.118.8/a", "88.118.8/b", "88.118.8/c"),
        ),
        ListPrefixesResponse(request_id=9, prefixes=("88.118.8", "88.118.9")),
        SiteInfoResponse(request_id=2, site=_SITE),
        ErrorResponse(
            request_id=1,
            code=ResponseCode.HANDLE_NOT_FOUND,
            answers=OpCode.RESOLUTION,
            message="Handle Not Found",
            handle=HANDLE,
        ),
        ErrorResponse(request_id=1, code=999, answers=OpCode(4242), message="future"),
        ReferralResponse(
            request_id=1,
            code=ResponseCode.PREFIX_REFERRAL,
            answers=OpCode.RESOLUTION,
            handle="88.100.5/X",
            prefix_handle="0.NA/88.100",
            values=(site_value(_SITE),),
        ),
        TruncatedResponse(request_id=1, code=ResponseCode.SUCCESS, answers=OpCode.RESOLUTION),
    ]


def _packb(obj: Any) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


#: msgpack headers that declare a 4 GiB str, bin, array, map and ext
HUGE_HEADERS = (
    b"\xdb\xff\xff\xff\xff",
    b"\xc6\xff\xff\xff\xff",
    b"\xdd\xff\xff\xff\xff",
    b"\xdf\xff\xff\xff\xff",
    b"\xc9\xff\xff\xff\xff\x01",
)


def msgpack_seeds() -> list[bytes]:
    """Valid messages of every kind, near-limit messages and hostile headers."""
    seeds = [encode_message(m) for m in sample_messages()]
    seeds.append(encode_message(sample_messages()[-1], 0x2000))
    many = tuple(HandleValue(i, "URL", b"https://x/%d" % i, timestamp=NOW) for i in range(1, 2049))
    seeds.append(encode_datagram(ResolveResponse(request_id=5, handle=HANDLE, values=many)))
    seeds.append(encode_message(ResolveResponse(request_id=5, handle=HANDLE, values=many)))
    page = tuple(f"88.118.8/{i}" for i in range(4096))
    seeds.append(
        encode_message(
            ListHandlesResponse(prefix="88", total=9, page=0, page_size=4096, handles=page)
        )
    )
    seeds.append(
        _packb([1, 1, 1, 1, 0, 0, {"h": HANDLE, "v": [[1, "", b"", 0, 0, 0, 0, []]] * 4096}])
    )
    refs = [["", i % 128] for i in range(240)]
    fat = [[i, "URL", b"", 0, 0, 0, 14, refs] for i in range(1, 85)]
    seeds.append(_packb([1, 9, 100, 0, 0, 0, {"h": HANDLE, "v": fat}]))
    seeds.append(_packb([1, 1, 1, 0, 0, 0, {"h": "x" * 65000}]))
    envelope = _packb([1, 1, 1, 0, 0, 0, {"h": HANDLE}])
    seeds += [b"\x91" * 5000, b"\x81\xa1h" * 3000, b"\x97" + b"\x91" * 2000]
    for header in HUGE_HEADERS:
        seeds += [header, header + b"abc", envelope[: -len(HANDLE) - 1] + header + b"x"]
        seeds.append(b"\x97\x01\x01\x01\x00\x00\x00\x81\xa1h" + header)
    seeds += [b"", b"\xc1", b"\x90", b"\x97" + b"\xc0" * 7, envelope + b"\x00", envelope[:-3]]
    seeds += [
        _packb([1, 1, 1, 1, 0, 0, {"s": [1, 0, True, False, [[1, "a", [[1, 1, x]]]]]}])
        for x in (1.5, math.inf, math.nan, "7", b"7", True, 2**64 - 1, -(2**63))
    ]
    seeds += [_packb([1, 1, op, 0, 0, 0, {}]) for op in (0, 3, 106, 200, 2000, 2**32, -1)]
    seeds.append(_packb([1, 2**32, 1, 0, 0, 0, {}]))
    seeds.append(_packb([2, 1, 1, 0, 2**40, 0, {"h": HANDLE}]))
    return seeds


def frame_seeds() -> list[bytes]:
    """TCP byte streams: pipelined frames, empty and oversized frames, a cut-off frame."""
    frames = [frame(p) for p in msgpack_seeds()[:26]]
    seeds = [b"".join(frames[:8]), b"".join(frames[8:16]), b"".join(frames[16:])]
    seeds += [
        frames[0] + b"\x00\x00\x00\x00" + frames[1],
        frames[0] + b"\xff\xff\xff\xff" + frames[1],
    ]
    seeds += [b"\x00\x01\x00\x01" + b"\x00" * 64, frames[0] + frames[1][:-5], b"\x00\x00"]
    seeds += [frame(b"\x91" * 5000), frame(HUGE_HEADERS[2]) + frames[2], frame(b"\xc1") + frames[3]]
    return seeds


def json_seeds() -> list[bytes]:
    """REST bodies: PUT bodies in their three shapes, every data format, answers of every kind."""
    values = [value_to_json(v) for v in sample_values()]
    values[0]["permissions"] = "1010"
    values.append({"index": 6, "type": "NOTE", "data": "bare string", "ttl": 60})
    values.append({"index": 7, "type": "HEX", "data": {"format": "hex", "value": "00ff"}})
    values.append({"index": 8, "type": "B64", "data": {"format": "base64", "value": "AP8="}})
    values.append(
        {
            "index": 9,
            "type": "T",
            "timestamp": 1764300000,
            "ttlType": 1,
            "ttl": NOW,
            "references": [{"handle": HANDLE, "index": 1}],
        }
    )
    bodies: list[Any] = [{"handle": HANDLE, "values": values}, values, values[0], {"values": []}]
    for m in sample_messages():
        if isinstance(
            m,
            (ResolveResponse, CreateResponse, ListHandlesResponse, ErrorResponse, ReferralResponse),
        ):
            bodies.append(response_to_json(m))
    bodies.append({"responseCode": 200, "values": []})
    seeds = [json.dumps(b, ensure_ascii=False).encode() for b in bodies]
    seeds += [b"[" * 5000, b'{"values": ' * 3000, b"1" * 5000, b'"\\ud800"', b"NaN", b"\xff"]
    seeds.append(("[" + ",".join(['{"index":1,"type":""}'] * 3000) + "]").encode())
    return seeds


def text_seeds() -> list[bytes]:
    """Identifiers of every scheme, wrapped handles, escapes, odd Unicode and long inputs."""
    texts = [
        HANDLE,
        "88.1021.150/a/b:c",
        "0.NA/88.118.8",
        "0.NA/0.NA",
        "hdl:88.118.8/x",
        "https://hdl.handle.net/88.118.8/%E4%B8%AD",
        "http://hdl.handle.net/88.118.8/%ff",
        "88..1/x",
        " 88/x",
        "88/",
        "/x",
        "88.118.8/产品-1",
        "88/\u0085",
        "88/\x00",
        "06901234567892",
        "4006381333931",
        "12345670",
        "036000291452",
        "06901234567891",
        "https://id.gs1.org/01/09506000134352/10/ABC/21/12345",
        "https://example.com/01/9506000134352/22/2A/10/L%201",
        "https://x/01/",
        "https://[::1/01/1",
        "urn:oid:1.3.6.1.4.1",
        "2.999.1",
        "1.40",
        "01.2",
        "3.1",
        "1." + "9" * 5000,
        "",
        "hdl:" + "%" * 10,
        "a" * 2100 + "/b",
        "88/" + "x" * 300,
    ]
    seeds = [t.encode("utf-8", "surrogatepass") for t in texts]
    seeds += [b"88/\xed\xa0\x80", b"\xff\xfe88/x", b"88.\xc0\x80/x"]
    return seeds


def binary_seeds() -> list[bytes]:
    """HS_ADMIN, HS_VLIST and HS_SITE data, with their int32 length and count fields at the edges."""
    admin = AdminValue("0.NA/88.118.8", 200, AdminPermission(0xFFF)).to_bytes()
    vlist = pack_vlist(tuple(Reference(f"88.118.8/{i}", i) for i in range(5)))
    seeds = [admin, vlist, pack_vlist(()), AdminValue("", -1, AdminPermission(0)).to_bytes()]
    seeds += [b"\x00\x01\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff", b"\x00"]
    seeds.append(struct.pack(">I", 8191) + b"\x00" * 65528)
    site = SiteInfo(
        serial=1,
        hash_option=2,
        servers=(Server(1, "127.0.0.1", (Interface(3, 1, 2641),)), Server(2, "2001:db8::1", ())),
    )
    seeds.append(encode_site(site))
    return seeds


SEEDS_BY_KIND = {
    KIND_MSGPACK: msgpack_seeds,
    KIND_FRAMES: frame_seeds,
    KIND_JSON: json_seeds,
    KIND_TEXT: text_seeds,
    KIND_BINARY: binary_seeds,
}


# ---------------------------------------------------------------------------------------------
# Mutation

_INTERESTING_INTS = (
    0,
    1,
    -1,
    0x7F,
    0x80,
    0xFF,
    0x7FFF,
    0xFFFF,
    0x7FFFFFFF,
    0xFFFFFFFF,
    -(2**31),
    2**32,
    2**63 - 1,
    2**64 - 1,
    -(2**63),
)
_INTERESTING_BYTES = (
    0x00,
    0x01,
    0x7F,
    0x80,
    0xFF,
    0x90,
    0x91,
    0x97,
    0xA0,
    0xC0,
    0xC1,
    0xC2,
    0xC4,
    0xC6,
    0xCA,
    0xCB,
    0xCF,
    0xD3,
    0xD9,
    0xDB,
    0xDC,
    0xDD,
    0xDE,
    0xDF,
)
_TEXT_TOKENS = (
    "hdl:",
    "https://hdl.handle.net/",
    "http://",
    "https://",
    "/",
    ".",
    "0.NA",
    "/01/",
    "/22/",
    "/10/",
    "/21/",
    "urn:oid:",
    "%",
    "%ff",
    "%E4%B8",
    "\x00",
    "\u0085",
    "\ud800",
    "中",
    ":",
    " ",
    "9" * 40,
    "88",
    "..",
    "//",
)


def _jsonable_leaf(rng: random.Random) -> Any:
    return rng.choice(
        (
            None,
            True,
            False,
            0,
            -1,
            2**31,
            2**64,
            1.5,
            math.inf,
            -math.inf,
            math.nan,
            "",
            "x" * rng.randint(1, 300),
            "\ud800",
            "1110",
            "2026-11-28T10:00:00Z",
            "9999-12-31T23:59:59-23:59",
            [],
            {},
            [[[]]],
            {"format": "vlist"},
        )
    )


def _packable_leaf(rng: random.Random) -> Any:
    if rng.random() < 0.5:
        return rng.choice(_INTERESTING_INTS)
    return rng.choice(
        (
            None,
            True,
            False,
            1.5,
            math.inf,
            math.nan,
            "",
            "x" * rng.randint(1, 300),
            b"",
            b"\x00" * rng.randint(1, 64),
            (),
            {},
            ((),),
            {"h": "a"},
            [1, "a"],
        )
    )


class Mutator:
    """Structure-aware and byte-level mutations, reproducible from the ``random.Random`` given."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def mutate(self, kind: str, data: bytes, other: bytes, max_len: int) -> bytes:
        """A variant of ``data``; ``other`` is a second seed for splicing."""
        rng = self.rng
        roll = rng.random()
        # nearly any byte edit breaks JSON, and json.loads is not under test: mostly edit the tree
        structured = 0.85 if kind == KIND_JSON else 0.35
        if roll < structured:
            data = self._structured(kind, data, other)
        elif roll < structured + 0.07:
            data = self._splice(data, other)
        edits = (0,) * 9 + (1,) if kind == KIND_JSON and roll < structured else (0, 1, 1, 2, 3, 5)
        for _ in range(rng.choice(edits)):
            data = self._bytes(kind, data)
        return data[:max_len]

    # structure ----------------------------------------------------------------------------

    def _structured(self, kind: str, data: bytes, other: bytes) -> bytes:
        try:
            if kind == KIND_MSGPACK:
                tree = msgpack.unpackb(data, raw=False, strict_map_key=False)
                return _packb(self._tree(tree, _packable_leaf))
            if kind == KIND_JSON:
                try:
                    tree = json.loads(data)
                except ValueError:
                    tree = json.loads(other)  # the splice partner may still be JSON
                return json.dumps(self._tree(tree, _jsonable_leaf)).encode()
            if kind == KIND_TEXT:
                return self._text(data.decode("utf-8", "surrogatepass"))
            if kind == KIND_BINARY or kind == KIND_FRAMES:
                return self._length_field(data)
        except Exception:  # the seed was already mangled: fall back to byte mutations
            pass
        return data

    def _tree(self, node: Any, leaf: Any) -> Any:
        rng = self.rng
        if isinstance(node, (list, tuple)) and node and rng.random() < 0.8:
            items = list(node)
            at = rng.randrange(len(items))
            op = rng.random()
            if op < 0.6:
                items[at] = self._tree(items[at], leaf)
            elif op < 0.75:
                del items[at]
            elif op < 0.9:
                items.insert(
                    at, leaf(rng) if rng.random() < 0.5 else items[rng.randrange(len(items))]
                )
            else:
                items = items * rng.randint(2, 64)
            return items
        if isinstance(node, dict) and node and rng.random() < 0.8:
            out = dict(node)
            key = rng.choice(list(out))
            op = rng.random()
            if op < 0.65:
                out[key] = self._tree(out[key], leaf)
            elif op < 0.8:
                del out[key]
            else:
                out[
                    rng.choice(
                        (
                            "h",
                            "v",
                            "a",
                            "i",
                            "t",
                            "s",
                            "values",
                            "data",
                            "index",
                            "format",
                            "responseCode",
                            "totalCount",
                            "handles",
                            "x",
                        )
                    )
                ] = leaf(rng)
            return out
        if rng.random() < 0.15:
            return [node] * rng.randint(1, 8) if rng.random() < 0.5 else {"x": node}
        return leaf(rng)

    def _text(self, text: str) -> bytes:
        rng = self.rng
        for _ in range(rng.randint(1, 3)):
            at = rng.randint(0, len(text))
            token = rng.choice(_TEXT_TOKENS)
            if rng.random() < 0.1:
                token *= rng.randint(2, 400)
            cut = at + rng.choice((0, 0, 1, 3))
            text = text[:at] + token + text[cut:]
        return text.encode("utf-8", "surrogatepass")

    def _length_field(self, data: bytes) -> bytes:
        if len(data) < 4:
            return data + struct.pack(">I", self.rng.choice(_INTERESTING_INTS) & 0xFFFFFFFF)
        at = self.rng.randrange(len(data) - 3)
        value = self.rng.choice((*_INTERESTING_INTS, len(data), len(data) - at, len(data) // 8))
        return data[:at] + struct.pack(">I", value & 0xFFFFFFFF) + data[at + 4 :]

    # bytes --------------------------------------------------------------------------------

    def _splice(self, data: bytes, other: bytes) -> bytes:
        rng = self.rng
        return data[: rng.randint(0, len(data))] + other[rng.randint(0, len(other)) :]

    def _bytes(self, kind: str, data: bytes) -> bytes:
        rng = self.rng
        op = rng.randrange(9)
        if not data:
            return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))
        at = rng.randrange(len(data))
        if op == 0:  # flip one bit
            return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]
        if op == 1:  # an interesting byte, msgpack headers first
            return data[:at] + bytes([rng.choice(_INTERESTING_BYTES)]) + data[at + 1 :]
        if op == 2:  # truncate
            return data[:at]
        if op == 3:  # delete a range
            return data[:at] + data[at + rng.randint(1, 64) :]
        if op == 4:  # insert random bytes
            noise = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 8)))
            return data[:at] + noise + data[at:]
        if op == 5:  # duplicate a range
            chunk = data[at : at + rng.randint(1, 256)]
            return data[:at] + chunk * rng.randint(2, 16) + data[at:]
        if op == 6:  # a big-endian length field set to an edge
            return self._length_field(data)
        if op == 7 and kind in (KIND_MSGPACK, KIND_FRAMES):  # a header declaring 4 GiB, or nesting
            insert = (
                rng.choice(HUGE_HEADERS) if rng.random() < 0.5 else b"\x91" * rng.randint(1, 3000)
            )
            return data[:at] + insert + data[at:]
        return data[:at] + bytes([rng.getrandbits(8)]) + data[at + 1 :]
