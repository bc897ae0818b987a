"""The workload model: what each simulated factory system asks for, and which keys it asks about.

A ``Workload`` is the operation mix (resolve, create, modify, delete; weights, default 90/8/1/1),
key popularity (``uniform``; ``zipf`` with exponent ``zipf_s`` over the manifest's keys ranked by
their popularity; or ``manifest``, the popularity weights as given), the share of lookups of keys
that do not exist (``not_found_share``), the share of lookups of other enterprises' keys than the
user's own ("cross-industry", ``cross_share``), how many identifiers one registration task creates
in a row (``batch_size``), and the constant request rate per user of the open model
(``rate_per_user``; 0 runs a closed loop). It comes from a TOML file whose keys are the field names
or the flags' names with underscores, overridden by command-line flags.

``KeySpace`` turns a manifest and a workload into per-user ``KeyPicker`` objects: each user has a
home enterprise prefix (where its creates go and most of its lookups), and picks keys by popularity
from the home prefix or, for the cross share, from every other prefix.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import secrets
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from benchmarks.locust.manifest import Key, Manifest

OPERATIONS = ("resolve", "create", "modify", "delete")
POPULARITY = ("uniform", "zipf", "manifest")
NOT_FOUND_SUFFIX = "LOADTEST-NOTFOUND-"  #: suffixes no seed generator mints
TOML_EXTRA_KEYS = frozenset({"manifest"})  #: workload-file keys that are not workload fields
#: fields whose flag is named otherwise; the workload file takes either name
FLAG_NAMES = {"request_timeout_s": "request_timeout"}


class WorkloadError(ValueError):
    """A workload setting is out of range or malformed."""


def parse_mix(text: str) -> dict[str, float]:
    """``"resolve=90,create=8,modify=1,delete=1"`` -> weights; operations not named weigh 0."""
    mix = dict.fromkeys(OPERATIONS, 0.0)
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, weight = part.partition("=")
        name = name.strip()
        if not sep or name not in OPERATIONS:
            raise WorkloadError(
                f"mix entry {part.strip()!r}: expected OP=WEIGHT with OP in {OPERATIONS}"
            )
        try:
            mix[name] = float(weight)
        except ValueError:
            raise WorkloadError(f"mix entry {part.strip()!r}: the weight is not a number") from None
    return mix


def _number(name: str, value: object) -> float:
    """``value`` as a float, refused unless it is a finite int or float (a TOML ``true`` is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise WorkloadError(f"{name} must be a finite number, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class Workload:
    """One workload model; every field can come from TOML (same name) or a flag."""

    mix: Mapping[str, float] = field(
        default_factory=lambda: {"resolve": 90.0, "create": 8.0, "modify": 1.0, "delete": 1.0}
    )  #: operation -> relative weight
    popularity: str = "zipf"  #: ``uniform``, ``zipf`` or ``manifest``
    zipf_s: float = 1.0  #: Zipf exponent: key of rank r weighs 1 / r**s
    not_found_share: float = 0.05  #: share of lookups of keys that do not exist
    cross_share: float = 0.1  #: share of lookups of other prefixes than the user's home prefix
    batch_size: int = 1  #: identifiers one create task registers in a row
    rate_per_user: float = 0.0  #: requests per second per user (open model); 0: closed loop
    request_timeout_s: float = 2.0  #: msgpack clients: wait this long for an answer

    def __post_init__(self) -> None:
        if not isinstance(self.mix, Mapping):
            raise WorkloadError(f"mix must be a table of operation weights, not {self.mix!r}")
        unknown = set(self.mix) - set(OPERATIONS)
        if unknown:
            raise WorkloadError(f"unknown operations in the mix: {sorted(unknown)}")
        mix = {op: _number(f"the mix weight of {op}", self.mix.get(op, 0.0)) for op in OPERATIONS}
        if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
            raise WorkloadError("mix weights must be >= 0 and not all 0")
        object.__setattr__(self, "mix", mix)
        if self.popularity not in POPULARITY:
            raise WorkloadError(f"popularity must be one of {POPULARITY}, not {self.popularity!r}")
        if _number("zipf_s", self.zipf_s) < 0:
            raise WorkloadError("zipf_s must be >= 0")
        for name in ("not_found_share", "cross_share"):
            if not 0.0 <= _number(name, getattr(self, name)) <= 1.0:
                raise WorkloadError(f"{name} must be between 0 and 1")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise WorkloadError(f"batch_size must be a whole number, not {self.batch_size!r}")
        if self.batch_size < 1:
            raise WorkloadError("batch_size must be at least 1")
        if _number("rate_per_user", self.rate_per_user) < 0:
            raise WorkloadError("rate_per_user must be >= 0")
        if _number("request_timeout_s", self.request_timeout_s) <= 0:
            raise WorkloadError("request_timeout_s must be > 0")

    @property
    def writes(self) -> bool:
        """Whether the mix writes (and so needs the admin secret)."""
        return any(self.mix[op] > 0 for op in ("create", "modify", "delete"))

    def with_overrides(self, overrides: Mapping[str, Any]) -> Workload:
        """A copy with the given fields replaced (``None`` values are ignored)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if isinstance(given.get("mix"), str):
            given["mix"] = parse_mix(given["mix"])
        names = {f.name for f in fields(self)}
        unknown = set(given) - names
        if unknown:
            raise WorkloadError(f"unknown workload settings: {sorted(unknown)}")
        return replace(self, **given)


def load_toml(path: str | Path) -> tuple[Workload, dict[str, Any]]:
    """The workload in a TOML file, and its other keys (``manifest`` and the like) kept aside.

    Keys are the field names or the flags' (``request_timeout`` for ``--request-timeout``).
    ``mix`` is a table (``mix = {resolve = 90, create = 10}``) or the flag's string form; a
    relative ``manifest`` path is taken from the file's directory.
    """
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise WorkloadError(
            f"cannot read the workload file {path}: {exc.strerror or exc}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise WorkloadError(f"{path}: not valid TOML: {exc}") from None
    for name, flag in FLAG_NAMES.items():
        if flag in data:
            if name in data:
                raise WorkloadError(f"{path}: {flag} and {name} are one setting: give one")
            data[name] = data.pop(flag)
    names = {f.name for f in fields(Workload)}
    extra = {k: v for k, v in data.items() if k not in names}
    unknown = set(extra) - TOML_EXTRA_KEYS
    if unknown:  # most likely a typo, which would otherwise silently keep a default
        raise WorkloadError(f"{path}: unknown settings {sorted(unknown)}")
    settings = {k: v for k, v in data.items() if k in names}
    if "manifest" in extra:
        if not isinstance(extra["manifest"], str) or not extra["manifest"]:
            raise WorkloadError(f"{path}: manifest must be a path, not {extra['manifest']!r}")
        extra["manifest"] = str(Path(path).parent / extra["manifest"])
    try:
        return Workload().with_overrides(settings), extra
    except (TypeError, WorkloadError) as exc:
        raise WorkloadError(f"{path}: {exc}") from None


class Pool:
    """Keys to pick from, by weight (``None``: all equally likely), in O(log n) per pick."""

    def __init__(self, handles: Sequence[str], weights: Sequence[float] | None) -> None:
        self.handles = list(handles)
        self._cumulative = list(itertools.accumulate(weights)) if weights is not None else None
        if self._cumulative is not None and self._cumulative[-1] <= 0:
            self._cumulative = None  # all weights zero: uniform rather than nothing

    def __len__(self) -> int:
        return len(self.handles)

    def pick(self, rng: random.Random) -> str:
        if self._cumulative is None:
            return self.handles[int(rng.random() * len(self.handles))]
        at = bisect.bisect_right(self._cumulative, rng.random() * self._cumulative[-1])
        return self.handles[min(at, len(self.handles) - 1)]


class KeySpace:
    """The manifest's keys weighted by the workload's popularity model, split by prefix."""

    def __init__(self, manifest: Manifest, workload: Workload) -> None:
        self.manifest = manifest
        self.workload = workload
        self._weights = self._key_weights(manifest.keys, workload)
        self._by_prefix: dict[str, list[int]] = {}
        for i, key in enumerate(manifest.keys):
            self._by_prefix.setdefault(key.prefix, []).append(i)
        # users live at enterprises that have keys to look up first, then at the others
        with_keys = [e.prefix for e in manifest.enterprises if e.prefix in self._by_prefix]
        self.homes = tuple(with_keys or manifest.prefixes)
        self._pools: dict[tuple[str, bool], Pool] = {}
        self._home_counter = itertools.count()

    @staticmethod
    def _key_weights(keys: Sequence[Key], workload: Workload) -> list[float] | None:
        if workload.popularity == "uniform":
            return None
        if workload.popularity == "manifest":
            return [k.popularity for k in keys]
        # Zipf over ranks: the most popular key (by the manifest's weights, then its order) first
        order = sorted(range(len(keys)), key=lambda i: -keys[i].popularity)
        weights = [0.0] * len(keys)
        for rank, i in enumerate(order, start=1):
            weights[i] = rank**-workload.zipf_s
        return weights

    def pool(self, home: str, cross: bool) -> Pool:
        """The keys of ``home`` (``cross`` False) or of every other prefix (True); cached."""
        cached = self._pools.get((home, cross))
        if cached is None:
            if cross:
                chosen = [i for p, idx in self._by_prefix.items() if p != home for i in idx]
            else:
                chosen = self._by_prefix.get(home, [])
            if not chosen:  # a single-prefix manifest has no cross keys; a keyless home no own ones
                chosen = list(range(len(self.manifest.keys)))
            chosen.sort()
            weights = None if self._weights is None else [self._weights[i] for i in chosen]
            cached = Pool([self.manifest.keys[i].handle for i in chosen], weights)
            self._pools[(home, cross)] = cached
        return cached

    def next_home(self, offset: int = 0) -> str:
        """Home prefixes round-robin, so users spread over the enterprises (``offset``: worker)."""
        return self.homes[(next(self._home_counter) + offset) % len(self.homes)]

    def picker(self, home: str, rng: random.Random | None = None) -> KeyPicker:
        return KeyPicker(self, home, rng or random.Random(secrets.randbits(64)))


class KeyPicker:
    """One user's view of the keys: its home prefix, its random stream, its fresh suffixes."""

    def __init__(self, space: KeySpace, home: str, rng: random.Random) -> None:
        self.space = space
        self.home = home
        self.rng = rng
        self.others = tuple(p for p in space.manifest.prefixes if p != home) or (home,)
        self._token = f"{rng.getrandbits(32):08x}"
        self._serial = itertools.count(1)
        self._ops = list(self.space.workload.mix)
        self._op_cumulative = list(itertools.accumulate(self.space.workload.mix.values()))

    def operation(self) -> str:
        """The next operation, drawn from the mix."""
        at = bisect.bisect_right(self._op_cumulative, self.rng.random() * self._op_cumulative[-1])
        return self._ops[min(at, len(self._ops) - 1)]

    def lookup(self) -> tuple[str, bool]:
        """A handle to resolve and whether it should exist (False for the not-found share)."""
        workload = self.space.workload
        cross = self.rng.random() < workload.cross_share
        if self.rng.random() < workload.not_found_share:
            prefix = self.others[int(self.rng.random() * len(self.others))] if cross else self.home
            return f"{prefix}/{NOT_FOUND_SUFFIX}{self.rng.getrandbits(64):016x}", False
        return self.space.pool(self.home, cross).pick(self.rng), True

    def fresh(self) -> str:
        """A handle under the home prefix that no one has created yet (for registrations)."""
        return f"{self.home}/LOAD-{self._token}-{next(self._serial)}"


def summary(workload: Workload, manifest: Manifest, extra: Iterable[str] = ()) -> str:
    """One line describing the workload, for the log of every run."""
    mix = "/".join(f"{op}={w:g}" for op, w in workload.mix.items())
    popularity = workload.popularity + (
        f"(s={workload.zipf_s:g})" if workload.popularity == "zipf" else ""
    )
    mode = (
        f"open, {workload.rate_per_user:g} req/s per user" if workload.rate_per_user else "closed"
    )
    parts = [
        f"mix {mix}",
        f"popularity {popularity}",
        f"not-found {workload.not_found_share:.0%}",
        f"cross {workload.cross_share:.0%}",
        f"batch {workload.batch_size}",
        f"model {mode}",
        f"{len(manifest.keys)} keys under {len(manifest.enterprises)} prefixes",
        *extra,
    ]
    return "workload: " + ", ".join(parts)
