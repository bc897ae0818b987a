"""Identifier grammar: Handle ``prefix/suffix``, prefixes and their parents, and the other schemes.

Follows RFC 3650/3651 (split at the first ``/``, any printable Unicode, UTF-8 on the wire, prefixes
compared upper-cased, ``0.NA/<PREFIX>`` describes a prefix) and the stricter limits of the Chinese
SNMS API. GS1 GTINs, GS1 Digital Link URIs and OIDs are recognised and given a canonical form, so a
factory system can hand the node whatever its labels carry.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from protocol.errors import InvalidHandle

NA_PREFIX = "0.NA"  #: the prefix of handles that describe prefixes
ROOT = f"{NA_PREFIX}/{NA_PREFIX}"  #: the root of the prefix tree


@dataclass(frozen=True, slots=True)
class Profile:
    """Length limits an identifier is checked against, in UTF-8 bytes unless named otherwise."""

    name: str  #: short name used in config and messages
    max_handle_bytes: int  #: whole ``prefix/suffix``
    max_prefix_bytes: int  #: the prefix alone
    max_type_bytes: int  #: a value's type
    max_string_value_bytes: int  #: a string-format value's data (0: only the data limit applies)
    max_index_digits: int  #: decimal digits of a value index


PROTOCOL = Profile("protocol", 2048, 2048, 1024, 0, 10)  #: the Handle protocol's own limits
SNMS = Profile("snms", 255, 64, 128, 255, 11)  #: the Chinese secondary-node API's limits
PROFILES = {p.name: p for p in (PROTOCOL, SNMS)}

_WRAPPERS = ("hdl:", "https://hdl.handle.net/", "http://hdl.handle.net/")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  #: ``scheme://`` opening a URI (RFC 3986)
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def ascii_upper(text: str) -> str:
    """Upper-case ASCII letters only, as the reference server compares (``ß`` stays ``ß``).
    ASCII text, nearly all, takes ``str.upper`` (several times faster than ``translate``), which
    changes only a-z there."""
    return text.upper() if text.isascii() else text.translate(_ASCII_UPPER)


@dataclass(frozen=True, slots=True)
class Handle:
    """A parsed ``prefix/suffix``, both kept exactly as written."""

    prefix: str  #: dot-separated segments, case-insensitive
    suffix: str  #: may contain further ``/`` and ``:``

    def __str__(self) -> str:
        return f"{self.prefix}/{self.suffix}"

    def key(self, *, case_sensitive_suffix: bool = False) -> str:
        """The form two handles are compared in: prefix upper-cased, suffix by the case rule.

        The suffix of a ``0.NA/<PREFIX>`` handle is a prefix, so it is always upper-cased.
        """
        prefix = ascii_upper(self.prefix)
        keep = case_sensitive_suffix and prefix != NA_PREFIX
        return f"{prefix}/{self.suffix if keep else ascii_upper(self.suffix)}"

    @property
    def segments(self) -> tuple[str, ...]:
        """The prefix's dot-separated segments."""
        return tuple(self.prefix.split("."))

    @property
    def is_prefix_handle(self) -> bool:
        """True for ``0.NA/<PREFIX>`` handles, which describe a prefix."""
        return ascii_upper(self.prefix) == NA_PREFIX


def unwrap(text: str) -> str:
    """Strip an ``hdl:`` or ``https://hdl.handle.net/`` wrapper (and its %-escapes)."""
    lowered = text[:24].lower()
    for wrapper in _WRAPPERS:
        if lowered.startswith(wrapper):
            inner = text[len(wrapper) :]
            return unquote(inner, errors="strict") if wrapper != "hdl:" else inner
    return text


def _check_text(text: str, what: str) -> None:
    if not text.isprintable():
        for position, char in enumerate(text):
            if not char.isprintable():
                raise InvalidHandle(
                    f"{what} has a non-printable character U+{ord(char):04X} at position {position}"
                )


def check_prefix(prefix: str, profile: Profile = PROTOCOL) -> str:
    """Validate a prefix and return it unchanged; raise ``InvalidHandle`` naming the fault."""
    if not prefix:
        raise InvalidHandle("empty prefix")
    _check_text(prefix, "prefix")
    if "/" in prefix:
        raise InvalidHandle("a prefix cannot contain '/'")
    size = len(prefix.encode("utf-8", "surrogatepass"))
    if size > profile.max_prefix_bytes:
        raise InvalidHandle(
            f"prefix is {size} bytes, over the {profile.name} limit of {profile.max_prefix_bytes}"
        )
    for number, segment in enumerate(prefix.split("."), start=1):
        if not segment:
            raise InvalidHandle(f"prefix segment {number} is empty")
        if segment != segment.strip():
            raise InvalidHandle(f"prefix segment {number} has surrounding spaces")
    return prefix


def check_homeable(prefix: str, profile: Profile = PROTOCOL) -> str:
    """``check_prefix``, and not ``0.NA`` (the prefix of the prefixes' own records): a prefix a
    node may home. ``InvalidHandle`` naming the fault."""
    check_prefix(prefix, profile)
    if ascii_upper(prefix) == NA_PREFIX:
        raise InvalidHandle(f"{NA_PREFIX} cannot be homed")
    return prefix


def parse_handle(text: str, profile: Profile = PROTOCOL) -> Handle:
    """Parse ``prefix/suffix`` (optionally wrapped); raise ``InvalidHandle`` naming the fault."""
    if not isinstance(text, str):
        raise InvalidHandle("a handle must be a string")
    if not text:
        raise InvalidHandle("empty handle")
    try:
        text = unwrap(text)
    except UnicodeDecodeError as exc:
        raise InvalidHandle("the wrapped handle has a bad %-escape") from exc
    prefix, slash, suffix = text.partition("/")
    if not slash:
        raise InvalidHandle("no '/' between prefix and suffix")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > profile.max_handle_bytes:
        raise InvalidHandle(
            f"handle is {size} bytes, over the {profile.name} limit of {profile.max_handle_bytes}"
        )
    check_prefix(prefix, profile)
    if not suffix:
        raise InvalidHandle("empty suffix")
    _check_text(suffix, "suffix")
    if ascii_upper(prefix) == NA_PREFIX:
        check_prefix(suffix, profile)
    return Handle(prefix, suffix)


def parent_prefix(prefix: str) -> str | None:
    """``88.118.8`` -> ``88.118`` -> ``88`` -> None."""
    head, dot, _ = prefix.rpartition(".")
    return head if dot else None


def na_handle(prefix: str) -> str:
    """The handle that describes a prefix: ``0.NA/<PREFIX>`` (upper-cased)."""
    return f"{NA_PREFIX}/{ascii_upper(prefix)}"


def parent_chain(prefix: str) -> tuple[str, ...]:
    """Prefix handles from the prefix itself up to the root ``0.NA/0.NA``."""
    chain = []
    current: str | None = prefix
    while current is not None:
        chain.append(na_handle(current))
        if ascii_upper(current) == NA_PREFIX:  # 0.NA is the root itself, not a child of "0"
            break
        current = parent_prefix(current)
    if chain[-1] != ROOT:
        chain.append(ROOT)
    return tuple(chain)


class Scheme(enum.StrEnum):
    """Identifier schemes a node meets on factory labels."""

    HANDLE = "handle"  #: Handle / VAA ``prefix/suffix``
    GTIN = "gtin"  #: GS1 GTIN-8/12/13/14
    GS1_DIGITAL_LINK = "gs1-digital-link"  #: ``https://host/01/{gtin}[/22/..][/10/..][/21/..]``
    OID = "oid"  #: ISO/ITU object identifier


@dataclass(frozen=True, slots=True)
class Identifier:
    """An identifier recognised in some scheme, with its canonical text."""

    scheme: Scheme  #: which grammar matched
    canonical: str  #: the one form two equal identifiers share
    parts: tuple[tuple[str, str], ...] = ()  #: named components (GS1 AIs, handle prefix/suffix)


def gtin_check_digit(body: str) -> int:
    """The GS1 mod-10 check digit of the digits before it."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def parse_gtin(text: str) -> str:
    """Verify a GTIN-8/12/13/14 and return it padded to 14 digits."""
    if not (text.isascii() and text.isdigit()):
        raise InvalidHandle("a GTIN has only digits")
    if len(text) not in (8, 12, 13, 14):
        raise InvalidHandle(f"a GTIN has 8, 12, 13 or 14 digits, not {len(text)}")
    expected = gtin_check_digit(text[:-1])
    if int(text[-1]) != expected:
        raise InvalidHandle(f"GTIN check digit should be {expected}")
    return text.rjust(14, "0")


_DL_QUALIFIERS = ("22", "10", "21")
_GS1_CANONICAL_HOST = "https://id.gs1.org"


def parse_digital_link(text: str) -> Identifier:
    """Parse a GS1 Digital Link URI: AI 01 then optional qualifiers 22, 10, 21 in that order."""
    _check_text(text, "GS1 Digital Link")
    try:
        text.encode("utf-8")
        path = urlsplit(text).path
    except UnicodeEncodeError as exc:
        raise InvalidHandle("a GS1 Digital Link must be valid Unicode") from exc
    except ValueError as exc:
        raise InvalidHandle(f"not a URI: {exc}") from exc
    segments = path.split("/")
    if "01" not in segments:
        raise InvalidHandle("a GS1 Digital Link needs AI 01 and a GTIN in its path")
    at = segments.index("01")
    rest = segments[at + 1 :]
    if not rest or not rest[0]:
        raise InvalidHandle("AI 01 has no GTIN")
    parts = [("01", parse_gtin(rest[0]))]
    pairs = rest[1:]
    if pairs and pairs[-1] == "":
        pairs = pairs[:-1]
    if len(pairs) % 2:
        raise InvalidHandle(f"GS1 qualifier {pairs[-1]!r} has no value")
    last = -1
    for i in range(0, len(pairs), 2):
        ai, value = pairs[i], _unescaped(pairs[i + 1])
        if ai not in _DL_QUALIFIERS:
            raise InvalidHandle(f"GS1 qualifier {ai!r} is not one of 22, 10, 21")
        order = _DL_QUALIFIERS.index(ai)
        if order <= last:
            raise InvalidHandle("GS1 qualifiers must come in the order 22, 10, 21")
        if not value:
            raise InvalidHandle(f"GS1 qualifier {ai} is empty")
        last = order
        parts.append((ai, value))
    canonical = _GS1_CANONICAL_HOST + "".join(f"/{ai}/{quote(v, safe='')}" for ai, v in parts)
    return Identifier(Scheme.GS1_DIGITAL_LINK, canonical, tuple(parts))


def parse_oid(text: str) -> str:
    """Verify an OID (``urn:oid:`` allowed): digit arcs, first 0-2, no leading zeros."""
    if text[:8].lower() == "urn:oid:":
        text = text[8:]
    arcs = text.split(".")
    if len(arcs) < 2 or not all(a.isascii() and a.isdigit() for a in arcs):
        raise InvalidHandle("an OID is two or more dot-separated numbers")
    if any(len(a) > 1 and a[0] == "0" for a in arcs):
        raise InvalidHandle("an OID arc has a leading zero")
    if len(arcs[0]) > 1 or int(arcs[0]) > 2:
        raise InvalidHandle("an OID's first arc is 0, 1 or 2")
    if int(arcs[0]) < 2 and (len(arcs[1]) > 2 or int(arcs[1]) > 39):
        raise InvalidHandle("an OID's second arc is at most 39 under arcs 0 and 1")
    return text


def _unescaped(text: str) -> str:
    """``text`` with its %-escapes decoded; InvalidHandle for a malformed escape or bytes that
    are not UTF-8 (kept literally, ``%2`` and ``%252`` would name one value)."""
    if _BAD_ESCAPE.search(text):
        raise InvalidHandle(f"GS1 qualifier value {text!r} has a malformed %-escape")
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise InvalidHandle(f"GS1 qualifier value {text!r} is not UTF-8 once decoded") from None


def classify(text: str, profile: Profile = PROTOCOL) -> Identifier:
    """Recognise the scheme of an identifier and give its canonical form."""
    if not isinstance(text, str) or not text:
        raise InvalidHandle("empty identifier")
    lowered = text[:24].lower()
    # a suffix may hold "://" (88.1/http://x): only text opening with ``scheme://`` is a URI
    if lowered.startswith(_WRAPPERS) or ("/" in text and not _URI.match(text)):
        handle = parse_handle(text, profile)
        parts = (("prefix", handle.prefix), ("suffix", handle.suffix))
        # prefixes compare upper-cased (and 0.NA/ suffixes, which are prefixes); a suffix's
        # case is the server's rule, so it stays as written
        return Identifier(Scheme.HANDLE, handle.key(case_sensitive_suffix=True), parts)
    if lowered.startswith(("http://", "https://")):
        return parse_digital_link(text)
    if text.isascii() and text.isdigit():
        return Identifier(Scheme.GTIN, parse_gtin(text))
    if lowered.startswith("urn:oid:") or text.replace(".", "").isdigit():
        return Identifier(Scheme.OID, parse_oid(text))
    raise InvalidHandle("not a Handle, GTIN, GS1 Digital Link or OID")
