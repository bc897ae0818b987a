"""Identifier grammar: Handle prefix/suffix, case rules, parents, limits, and the GS1/OID schemes."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from protocol.codes import ResponseCode
from protocol.errors import InvalidHandle, ProtocolError
from protocol.identifiers import (
    NA_PREFIX,
    PROFILES,
    PROTOCOL,
    ROOT,
    SNMS,
    Handle,
    Identifier,
    Profile,
    Scheme,
    ascii_upper,
    check_prefix,
    classify,
    gtin_check_digit,
    na_handle,
    parent_chain,
    parent_prefix,
    parse_digital_link,
    parse_gtin,
    parse_handle,
    parse_oid,
    unwrap,
)

SETTINGS = settings(max_examples=200, deadline=None)


def invalid(call: object, *args: object, **kwargs: object) -> InvalidHandle:
    """Run ``call`` expecting InvalidHandle with code 102; return the error."""
    assert callable(call)
    with pytest.raises(InvalidHandle) as info:
        call(*args, **kwargs)
    error = info.value
    assert isinstance(error, ProtocolError)
    assert error.code == int(ResponseCode.INVALID_HANDLE) == 102
    assert error.message == str(error)
    return error


# ---------------------------------------------------------------------------------------------
# prefix/suffix


def test_split_at_the_first_slash() -> None:
    handle = parse_handle("88.118.8/A1")
    assert handle == Handle("88.118.8", "A1")
    assert (handle.prefix, handle.suffix) == ("88.118.8", "A1")
    assert str(handle) == "88.118.8/A1"
    assert handle.segments == ("88", "118", "8")


def test_suffix_may_hold_slashes_and_colons() -> None:
    handle = parse_handle("88.1021.150/lot:42/item/7:x")
    assert handle.prefix == "88.1021.150"
    assert handle.suffix == "lot:42/item/7:x"
    assert str(handle) == "88.1021.150/lot:42/item/7:x"


@pytest.mark.parametrize("prefix", ["88.118.8", "88.1021.150", "88.101.0042", "20.500.12345", "88"])
def test_segment_widths_are_not_fixed(prefix: str) -> None:
    assert parse_handle(f"{prefix}/x").prefix == prefix
    assert check_prefix(prefix) == prefix


def test_any_printable_unicode_is_kept_as_written() -> None:
    handle = parse_handle("88.118.8/产品-Ünïcödé 序列号")
    assert handle.suffix == "产品-Ünïcödé 序列号"
    assert str(handle) == "88.118.8/产品-Ünïcödé 序列号"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hdl:88.118.8/A1", Handle("88.118.8", "A1")),
        ("HDL:88.118.8/A1", Handle("88.118.8", "A1")),
        ("https://hdl.handle.net/88.118.8/A1", Handle("88.118.8", "A1")),
        ("http://hdl.handle.net/88.118.8/A1", Handle("88.118.8", "A1")),
        ("HTTPS://HDL.HANDLE.NET/88.118.8/A1", Handle("88.118.8", "A1")),
        ("https://hdl.handle.net/88.118.8/A%2F1%3Ax%20y", Handle("88.118.8", "A/1:x y")),
        ("https://hdl.handle.net/88.118.8/%E4%B8%AD", Handle("88.118.8", "中")),
        ("https://hdl.handle.net/88%2E118.8/x", Handle("88.118.8", "x")),
    ],
)
def test_wrappers_are_removed(text: str, expected: Handle) -> None:
    assert parse_handle(text) == expected


def test_unwrap_leaves_plain_handles_alone() -> None:
    assert unwrap("88.118.8/A%20B") == "88.118.8/A%20B"
    assert unwrap("hdl:88.1/x") == "88.1/x"


def test_bad_percent_escape_in_a_wrapper() -> None:
    error = invalid(parse_handle, "https://hdl.handle.net/88.118.8/%FF")
    assert error.message == "the wrapped handle has a bad %-escape"


# ---------------------------------------------------------------------------------------------
# Case rules


def test_key_upper_cases_the_prefix_and_by_default_the_suffix() -> None:
    handle = parse_handle("88.abc.8/MixedCase-x")
    assert handle.key() == "88.ABC.8/MIXEDCASE-X"
    assert handle.key(case_sensitive_suffix=True) == "88.ABC.8/MixedCase-x"
    assert str(handle) == "88.abc.8/MixedCase-x"  # the original case is kept


def test_case_variants_share_a_key_unless_the_suffix_is_case_sensitive() -> None:
    lower, upper = parse_handle("88.abc/x/y"), parse_handle("88.ABC/X/Y")
    assert lower != upper
    assert lower.key() == upper.key() == "88.ABC/X/Y"
    assert lower.key(case_sensitive_suffix=True) != upper.key(case_sensitive_suffix=True)
    prefix_only = parse_handle("88.abc/X/Y")
    assert prefix_only.key(case_sensitive_suffix=True) == upper.key(case_sensitive_suffix=True)


def test_case_folding_is_ascii_only() -> None:
    """The reference compares upper-cased ASCII: no Unicode folding such as ß -> SS."""
    assert parse_handle("88.1/straße").key() == "88.1/STRAßE"
    assert parse_handle("88.1/straße").key() != parse_handle("88.1/STRASSE").key()
    assert parse_handle("88.1/ﬁ").key() == "88.1/ﬁ"
    assert na_handle("88.ß") == "0.NA/88.ß"


def test_prefix_handle_suffix_is_always_case_insensitive() -> None:
    lower, upper = parse_handle("0.na/88.abc"), parse_handle("0.NA/88.ABC")
    assert lower.is_prefix_handle and upper.is_prefix_handle
    assert lower.key(case_sensitive_suffix=True) == upper.key(case_sensitive_suffix=True)
    assert lower.key(case_sensitive_suffix=True) == "0.NA/88.ABC"
    assert not parse_handle("88.NA/x").is_prefix_handle


# ---------------------------------------------------------------------------------------------
# Parents


def test_parent_prefix() -> None:
    assert parent_prefix("88.118.8") == "88.118"
    assert parent_prefix("88.118") == "88"
    assert parent_prefix("88") is None
    assert parent_prefix("88.1021.150") == "88.1021"


def test_na_handle_upper_cases() -> None:
    assert na_handle("88.118.8") == "0.NA/88.118.8"
    assert na_handle("88.abc.x") == "0.NA/88.ABC.X"
    assert NA_PREFIX == "0.NA" and ROOT == "0.NA/0.NA"


@pytest.mark.parametrize(
    ("prefix", "chain"),
    [
        ("88.118.8", ("0.NA/88.118.8", "0.NA/88.118", "0.NA/88", "0.NA/0.NA")),
        ("88.1021.150", ("0.NA/88.1021.150", "0.NA/88.1021", "0.NA/88", "0.NA/0.NA")),
        ("88.abc", ("0.NA/88.ABC", "0.NA/88", "0.NA/0.NA")),
        ("88", ("0.NA/88", "0.NA/0.NA")),
        ("20.500.12345", ("0.NA/20.500.12345", "0.NA/20.500", "0.NA/20", "0.NA/0.NA")),
        ("0.NA", ("0.NA/0.NA",)),
        ("0.na", ("0.NA/0.NA",)),
    ],
)
def test_parent_chain_runs_up_to_the_root(prefix: str, chain: tuple[str, ...]) -> None:
    assert parent_chain(prefix) == chain


# ---------------------------------------------------------------------------------------------
# Faults, each named


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty handle"),
        ("88.118.8", "no '/' between prefix and suffix"),
        ("hdl:", "no '/' between prefix and suffix"),
        ("88.118.8/", "empty suffix"),
        ("/abc", "empty prefix"),
        ("88..8/x", "prefix segment 2 is empty"),
        (".88/x", "prefix segment 1 is empty"),
        ("88.118./x", "prefix segment 3 is empty"),
        ("88. 118/x", "prefix segment 2 has surrounding spaces"),
        ("88 .118/x", "prefix segment 1 has surrounding spaces"),
        ("88.1/a\nb", "suffix has a non-printable character U+000A at position 1"),
        ("88.1/ab\u200b", "suffix has a non-printable character U+200B at position 2"),
        ("88\t.1/x", "prefix has a non-printable character U+0009 at position 2"),
        ("0.NA/88..1", "prefix segment 2 is empty"),
        ("0.na/", "empty suffix"),
    ],
)
def test_faults_are_named(text: str, message: str) -> None:
    assert invalid(parse_handle, text).message == message


def test_non_string_handle() -> None:
    assert invalid(parse_handle, 42).message == "a handle must be a string"


def test_check_prefix_refuses_a_slash() -> None:
    assert invalid(check_prefix, "88/1").message == "a prefix cannot contain '/'"
    assert invalid(check_prefix, "").message == "empty prefix"


# ---------------------------------------------------------------------------------------------
# Limits of both profiles


def test_profiles() -> None:
    assert PROFILES == {"protocol": PROTOCOL, "snms": SNMS}
    assert PROTOCOL == Profile("protocol", 2048, 2048, 1024, 0, 10)
    assert (SNMS.max_handle_bytes, SNMS.max_prefix_bytes, SNMS.max_type_bytes) == (255, 64, 128)
    assert (SNMS.max_string_value_bytes, SNMS.max_index_digits) == (255, 11)


def test_protocol_handle_limit_is_2048_bytes() -> None:
    at_limit = "88.1/" + "a" * 2043
    assert len(at_limit) == 2048
    assert str(parse_handle(at_limit)) == at_limit
    error = invalid(parse_handle, at_limit + "a")
    assert error.message == "handle is 2049 bytes, over the protocol limit of 2048"


def test_limits_count_utf8_bytes_not_characters() -> None:
    text = "88.1/" + "€" * 681  # 5 + 2043 bytes
    assert len(text.encode()) == 2048
    assert parse_handle(text).suffix == "€" * 681
    over = "88.1/" + "é" * 1022  # 1027 characters, 2049 bytes
    assert invalid(parse_handle, over).message == (
        "handle is 2049 bytes, over the protocol limit of 2048"
    )


def test_snms_handle_limit_is_255_bytes() -> None:
    at_limit = "88.1/" + "a" * 250
    assert parse_handle(at_limit, SNMS).suffix == "a" * 250
    error = invalid(parse_handle, at_limit + "a", SNMS)
    assert error.message == "handle is 256 bytes, over the snms limit of 255"
    assert parse_handle(at_limit + "a").suffix == "a" * 251  # fine for the protocol profile


def test_snms_prefix_limit_is_64_bytes() -> None:
    assert parse_handle("8" * 64 + "/x", SNMS).prefix == "8" * 64
    error = invalid(parse_handle, "8" * 65 + "/x", SNMS)
    assert error.message == "prefix is 65 bytes, over the snms limit of 64"
    assert parse_handle("é" * 32 + "/x", SNMS).prefix == "é" * 32
    error = invalid(parse_handle, "é" * 32 + "e/x", SNMS)
    assert error.message == "prefix is 65 bytes, over the snms limit of 64"
    assert invalid(check_prefix, "1" * 65, SNMS).message.startswith("prefix is 65 bytes")


# ---------------------------------------------------------------------------------------------
# GTIN


def independent_check_digit(body: str) -> int:
    """GS1 check digit, computed the GS1 way: pad to 17 digits, weights 3,1,3,... from the left."""
    padded = body.rjust(17, "0")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(padded))
    return (10 - total % 10) % 10


# Real GTINs: EAN-13s, an ISBN-13, a UPC-A, EAN-8s and GS1 example GTIN-14s.
REAL_GTINS = [
    "4006381333931",
    "9780306406157",
    "5901234123457",
    "036000291452",
    "96385074",
    "73513537",
    "09506000134352",
    "10614141000415",
]


@pytest.mark.parametrize("gtin", REAL_GTINS)
def test_real_gtins_are_padded_to_14(gtin: str) -> None:
    assert independent_check_digit(gtin[:-1]) == int(gtin[-1])  # the fixture is valid
    assert gtin_check_digit(gtin[:-1]) == int(gtin[-1])
    assert parse_gtin(gtin) == gtin.zfill(14)
    assert classify(gtin) == Identifier(Scheme.GTIN, gtin.zfill(14))


def test_mistyped_check_digit_names_the_right_one() -> None:
    assert independent_check_digit("978030640615") == 7
    error = invalid(parse_gtin, "9780306406154")
    assert error.message == "GTIN check digit should be 7"
    assert invalid(classify, "9780306406152").message == "GTIN check digit should be 7"
    assert invalid(parse_gtin, "73513531").message == "GTIN check digit should be 7"


@pytest.mark.parametrize(("text", "message"), [("123456789", "not 9"), ("12a45670", "only digits")])
def test_gtin_shape(text: str, message: str) -> None:
    assert message in invalid(parse_gtin, text).message


@SETTINGS
@given(
    st.sampled_from([7, 11, 12, 13]).flatmap(
        lambda n: st.text("0123456789", min_size=n, max_size=n)
    )
)
def test_any_gtin_body_with_its_check_digit(body: str) -> None:
    digit = independent_check_digit(body)
    gtin = body + str(digit)
    assert parse_gtin(gtin) == gtin.zfill(14)
    for wrong in set(range(10)) - {digit}:
        assert invalid(parse_gtin, body + str(wrong)).message == (
            f"GTIN check digit should be {digit}"
        )


# ---------------------------------------------------------------------------------------------
# GS1 Digital Link


def test_digital_link_with_every_qualifier_in_order() -> None:
    ident = classify("https://example.com/01/09506000134352/22/2A/10/ABC123/21/12345")
    assert ident.scheme is Scheme.GS1_DIGITAL_LINK
    assert ident.parts == (
        ("01", "09506000134352"),
        ("22", "2A"),
        ("10", "ABC123"),
        ("21", "12345"),
    )
    assert ident.canonical == "https://id.gs1.org/01/09506000134352/22/2A/10/ABC123/21/12345"


@pytest.mark.parametrize(
    ("uri", "parts"),
    [
        ("https://id.gs1.org/01/09506000134352", (("01", "09506000134352"),)),
        ("https://id.gs1.org/01/09506000134352/", (("01", "09506000134352"),)),
        ("http://brand.example/01/9780306406157", (("01", "09780306406157"),)),
        (
            "https://brand.example/some/path/01/96385074/21/S%2F1?linkType=all",
            (("01", "00000096385074"), ("21", "S/1")),
        ),
        (
            "https://id.gs1.org/01/09506000134352/10/L1",
            (("01", "09506000134352"), ("10", "L1")),
        ),
    ],
)
def test_digital_link_parts(uri: str, parts: tuple[tuple[str, str], ...]) -> None:
    ident = parse_digital_link(uri)
    assert ident.parts == parts
    assert classify(uri) == ident
    assert classify(ident.canonical) == ident


def test_canonical_digital_link_escapes_values() -> None:
    ident = classify("https://brand.example/01/96385074/10/A%2FB%20C")
    assert ident.parts[1] == ("10", "A/B C")
    assert ident.canonical == "https://id.gs1.org/01/00000096385074/10/A%2FB%20C"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("https://x.example/01/09506000134352/21/1/10/2", "order 22, 10, 21"),
        ("https://x.example/01/09506000134352/10/1/22/2", "order 22, 10, 21"),
        ("https://x.example/01/09506000134352/21/1/22/2", "order 22, 10, 21"),
        ("https://x.example/01/09506000134352/10/1/10/2", "order 22, 10, 21"),
        ("https://x.example/01/09506000134352/17/260101", "GS1 qualifier '17' is not one of"),
        ("https://x.example/01/09506000134352/10", "GS1 qualifier '10' has no value"),
        ("https://x.example/01/09506000134352/10//21/x", "GS1 qualifier 10 is empty"),
        ("https://x.example/01/09506000134353", "GTIN check digit should be 2"),
        ("https://x.example/01/", "AI 01 has no GTIN"),
        ("https://x.example/gtin/09506000134352", "needs AI 01"),
        ("https://[::1/01/09506000134352", "not a URI"),
        # kept literally, these named one value with another (%FF and %EF%BF%BD, %2 and %252)
        ("https://x.example/01/09506000134352/10/%FF", "is not UTF-8 once decoded"),
        ("https://x.example/01/09506000134352/10/%2", "has a malformed %-escape"),
        ("https://x.example/01/09506000134352/10/a%zz", "has a malformed %-escape"),
    ],
)
def test_digital_link_faults(uri: str, message: str) -> None:
    assert message in invalid(classify, uri).message


GS1_CHARSET_82 = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!\"%&'()*+,-./:;<=>?_"
)


@SETTINGS
@given(
    st.sampled_from(REAL_GTINS),
    st.lists(
        st.tuples(
            st.sampled_from(["22", "10", "21"]), st.text(GS1_CHARSET_82, min_size=1, max_size=20)
        ),
        max_size=3,
        unique_by=lambda p: p[0],
    ),
)
def test_digital_link_canonical_form_is_stable(
    gtin: str, qualifiers: list[tuple[str, str]]
) -> None:
    qualifiers.sort(key=lambda p: ["22", "10", "21"].index(p[0]))
    uri = "https://brand.example/01/" + gtin
    uri += "".join(f"/{ai}/{quote(value, safe='')}" for ai, value in qualifiers)
    ident = classify(uri)
    assert ident.parts == (("01", gtin.zfill(14)), *qualifiers)
    assert classify(ident.canonical) == ident


# ---------------------------------------------------------------------------------------------
# OID


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("1.2.840.113549", "1.2.840.113549"),
        ("2.999.1", "2.999.1"),
        ("0.39", "0.39"),
        ("2.16.156.1", "2.16.156.1"),
        ("urn:oid:1.3.6.1.4.1", "1.3.6.1.4.1"),
        ("URN:OID:2.25.1", "2.25.1"),
    ],
)
def test_oids(text: str, canonical: str) -> None:
    assert classify(text) == Identifier(Scheme.OID, canonical)
    assert parse_oid(text) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3.1", "an OID's first arc is 0, 1 or 2"),
        ("10.1", "an OID's first arc is 0, 1 or 2"),
        ("1.40", "an OID's second arc is at most 39 under arcs 0 and 1"),
        ("0.100", "an OID's second arc is at most 39 under arcs 0 and 1"),
        ("1.02", "an OID arc has a leading zero"),
        ("1..2", "an OID is two or more dot-separated numbers"),
        ("urn:oid:1", "an OID is two or more dot-separated numbers"),
        ("1." + "9" * 5000, "an OID's second arc is at most 39 under arcs 0 and 1"),
        ("9" * 5000 + ".1", "an OID's first arc is 0, 1 or 2"),
    ],
)
def test_oid_faults(text: str, message: str) -> None:
    assert invalid(classify, text).message == message


# ---------------------------------------------------------------------------------------------
# Plain handles and unknown text through classify()


@pytest.mark.parametrize(
    ("text", "canonical", "prefix", "suffix"),
    [
        ("88.118.8/A1", "88.118.8/A1", "88.118.8", "A1"),
        ("hdl:88.118.8/A1", "88.118.8/A1", "88.118.8", "A1"),
        ("https://hdl.handle.net/88.118.8/a%2Fb", "88.118.8/a/b", "88.118.8", "a/b"),
        (
            "88.118.8/http://example.com/x",
            "88.118.8/http://example.com/x",
            "88.118.8",
            "http://example.com/x",
        ),
        ("0.NA/88.118.8", "0.NA/88.118.8", "0.NA", "88.118.8"),
        ("88.1:/x", "88.1:/x", "88.1:", "x"),
        ("a:/b", "A:/b", "a:", "b"),
        ("88.1://x", "88.1://x", "88.1:", "/x"),
        # prefixes compare upper-cased, 0.NA/ suffixes too (they are prefixes); suffixes keep
        # their case (whether it counts is the server's rule)
        ("88.ab/xY", "88.AB/xY", "88.ab", "xY"),
        ("0.na/88.ab", "0.NA/88.AB", "0.na", "88.ab"),
    ],
)
def test_classify_plain_handles(text: str, canonical: str, prefix: str, suffix: str) -> None:
    assert classify(text) == Identifier(
        Scheme.HANDLE, canonical, (("prefix", prefix), ("suffix", suffix))
    )


def test_classify_uses_the_profile() -> None:
    long = "88.1/" + "a" * 251
    assert classify(long).scheme is Scheme.HANDLE
    assert (
        invalid(classify, long, SNMS).message == "handle is 256 bytes, over the snms limit of 255"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty identifier"),
        ("hello", "not a Handle, GTIN, GS1 Digital Link or OID"),
        ("ftp://example.com/x", "not a Handle, GTIN, GS1 Digital Link or OID"),
        ("12345", "a GTIN has 8, 12, 13 or 14 digits, not 5"),
    ],
)
def test_classify_faults(text: str, message: str) -> None:
    assert invalid(classify, text).message == message


# ---------------------------------------------------------------------------------------------
# Round trip of any valid handle

NON_PRINTABLE: list[Any] = ["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"]
printable = st.one_of(st.characters(codec="utf-8", exclude_categories=NON_PRINTABLE), st.just(" "))
segments = st.text(printable.filter(lambda c: c not in "./"), min_size=1, max_size=8).filter(
    lambda s: s == s.strip()
)
prefixes = st.lists(segments, min_size=1, max_size=4).map(".".join)
suffixes = st.text(printable, min_size=1, max_size=40)


def ascii_swapcase(text: str) -> str:
    return "".join(c.swapcase() if c.isascii() else c for c in text)


@SETTINGS
@given(prefixes, suffixes)
def test_any_valid_handle_round_trips(prefix: str, suffix: str) -> None:
    assume(not prefix.lower().startswith("hdl:") and prefix.upper() != NA_PREFIX)
    text = f"{prefix}/{suffix}"
    assert text.isprintable()
    handle = parse_handle(text)
    assert (handle.prefix, handle.suffix) == (prefix, suffix)
    assert str(handle) == text
    assert str(parse_handle(str(handle))) == text
    assert parse_handle("hdl:" + text) == handle
    assert parse_handle("https://hdl.handle.net/" + quote(text, safe="")) == handle
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text):  # such a handle reads as a URI
        return
    canonical = f"{ascii_upper(prefix)}/{suffix}"  # prefixes compare upper-cased
    assert classify(text) == Identifier(
        Scheme.HANDLE, canonical, (("prefix", prefix), ("suffix", suffix))
    )
    assert classify(ascii_swapcase(prefix) + "/" + suffix).canonical == canonical


@SETTINGS
@given(prefixes, suffixes)
def test_ascii_case_variants_share_a_key(prefix: str, suffix: str) -> None:
    assume(not prefix.lower().startswith("hdl:") and prefix.upper() != NA_PREFIX)
    handle = parse_handle(f"{prefix}/{suffix}")
    variant = parse_handle(ascii_swapcase(f"{prefix}/{suffix}"))
    assert variant.key() == handle.key()
    assert parse_handle(handle.key()).key() == handle.key()
    same_suffix = variant.key(case_sensitive_suffix=True) == handle.key(case_sensitive_suffix=True)
    assert same_suffix == (ascii_swapcase(suffix) == suffix)
