"""The seed manifest: which identifiers a seeded node holds, so load never uses hard-coded keys.

``idnode seed`` writes it next to the data (``<data_dir>/manifest.json``)::

    {"version": 1, "seed": 7, "identifiers": 100000,
     "industries": [{"code": "118", "name": "...", "prefix": "88.118", "class": "..."}],
     "enterprises": [{"prefix": "88.118.8", "industry": "118", "name": "...", "identifiers": 1200}],
     "sample": [{"handle": "88.118.8/PRD-...", "popularity": 0.0123}, ...],
     "admin_secret_hint": "..."}

Only ``sample`` (handles known to exist, with an optional popularity weight) and ``enterprises``
(the prefixes creates go under) matter to the load; unknown keys are ignored so the generator can
grow. The secret is never in the manifest: writes take ``--admin-secret``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPPORTED_VERSION = 1


class ManifestError(ValueError):
    """The manifest cannot drive a load test (missing, malformed, or without keys)."""


@dataclass(frozen=True, slots=True)
class Key:
    """One seeded identifier."""

    handle: str  #: ``prefix/suffix``
    prefix: str  #: the part before the first ``/``
    popularity: float  #: relative weight from the generator (0 when it gave none)


@dataclass(frozen=True, slots=True)
class Enterprise:
    """An enterprise prefix: a home for load users and where their creates go."""

    prefix: str  #: e.g. ``88.118.8``
    industry: str  #: industry code, ``""`` when unknown
    name: str  #: display name


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a load test needs from the seed manifest."""

    keys: tuple[Key, ...]  #: the sample of existing identifiers
    enterprises: tuple[Enterprise, ...]  #: every enterprise prefix (at least those of the keys)
    seed: int | None = None  #: the generator's seed, reported with results
    identifiers: int | None = None  #: how many identifiers the node holds in all
    admin_secret_hint: str = ""  #: where to find the admin secret (never the secret itself)

    @property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(e.prefix for e in self.enterprises)


def _str(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{where}: {key!r} must be a non-empty string")
    return value


def parse(data: Any, source: str = "manifest") -> Manifest:
    """Check and convert a decoded manifest; raises ``ManifestError`` naming the bad field."""
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: a manifest is a JSON object")
    version = data.get("version")
    if version != SUPPORTED_VERSION:
        raise ManifestError(f"{source}: version {version!r} is not supported (expected 1)")
    sample = data.get("sample")
    if not isinstance(sample, list) or not sample:
        raise ManifestError(f"{source}: 'sample' must be a non-empty list of handles")
    keys = []
    for i, item in enumerate(sample):
        where = f"{source}: sample[{i}]"
        if not isinstance(item, dict):
            raise ManifestError(f"{where} must be an object")
        handle = _str(item, "handle", where)
        prefix, slash, suffix = handle.partition("/")
        if not (slash and prefix and suffix):
            raise ManifestError(f"{where}: {handle!r} is not prefix/suffix")
        popularity = item.get("popularity", 0.0)
        if isinstance(popularity, bool) or not isinstance(popularity, int | float):
            raise ManifestError(f"{where}: 'popularity' must be a number")
        if popularity < 0:
            raise ManifestError(f"{where}: 'popularity' must not be negative")
        keys.append(Key(handle, prefix, float(popularity)))
    enterprises: dict[str, Enterprise] = {}
    listed = data.get("enterprises", [])
    if not isinstance(listed, list):
        raise ManifestError(f"{source}: 'enterprises' must be a list")
    for i, item in enumerate(listed):
        where = f"{source}: enterprises[{i}]"
        if not isinstance(item, dict):
            raise ManifestError(f"{where} must be an object")
        prefix = _str(item, "prefix", where)
        industry, name = item.get("industry", ""), item.get("name", "")
        enterprises.setdefault(prefix, Enterprise(prefix, str(industry), str(name)))
    for key in keys:  # a sample key's prefix is an enterprise even when the list left it out
        enterprises.setdefault(key.prefix, Enterprise(key.prefix, "", ""))
    seed, identifiers = data.get("seed"), data.get("identifiers")
    return Manifest(
        keys=tuple(keys),
        enterprises=tuple(enterprises.values()),
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        identifiers=identifiers if isinstance(identifiers, int) else None,
        admin_secret_hint=str(data.get("admin_secret_hint", "")),
    )


def load(path: str | Path) -> Manifest:
    """Read and check the manifest at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"{path}: not valid JSON: {exc}") from None
    return parse(data, str(path))
