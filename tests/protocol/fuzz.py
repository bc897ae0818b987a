"""Fuzz harness for every decoder of ``protocol/``: ``python -m tests.protocol.fuzz --runs N``.

The rule each target is held to: the only exception that may escape is ``ProtocolError`` (or a
subclass), and no single input may take more than 10 ms. A decoded msgpack message must also survive
a round trip (re-encode, decode, compare). Inputs are capped at what a transport can deliver: 64 KiB
for a msgpack frame, a REST body or value data (the frame limit of ``WireLimits``), 8 KiB for an
identifier (aiohttp's request-line limit). A TCP stream (``wire.Connection``, up to two frames'
worth of bytes) is held to 10 ms per step, one ``receive_data`` or one ``next_event``: the stream as
a whole takes time in proportion to its number of frames.

Two engines share the targets and the seed corpus (``fuzz_corpus.py``):

- ``atheris`` (coverage-guided libFuzzer) when importable: the first byte of an input picks the target,
  a custom mutator mixes libFuzzer's mutations with ours. It runs in worker processes, because
  libFuzzer ends its process when done; slow inputs it reports are timed again in the parent,
  without instrumentation, before they count.
- ``fallback``: seeded ``random`` plus the structure-aware mutator, deterministic for a seed, used
  when atheris is missing and by ``test_fuzz.py``.

The report gives inputs per target, the slowest input and every finding; the exit status is 1 when
there is a finding.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.codes import MessageFlag, OpCode
from protocol.errors import ProtocolError
from protocol.identifiers import PROTOCOL, SNMS, classify, parse_handle
from protocol.jsonapi import response_from_json, values_from_body
from protocol.messages import TruncatedResponse
from protocol.records import AdminValue, unpack_vlist
from protocol.site import decode_site
from protocol.wire import NEED_DATA, Connection, WireLimits, decode_message, encode_message
from tests.protocol.fuzz_corpus import (
    HANDLE,
    KIND_BINARY,
    KIND_FRAMES,
    KIND_JSON,
    KIND_MSGPACK,
    KIND_TEXT,
    SEEDS_BY_KIND,
    Mutator,
)

LIMIT_S = 0.010  #: the most one input may take
FRAME_BYTES = 65536


class NotJson(Exception):
    """``json.loads`` refused the bytes: outside the REST decoders, so not a finding."""


class InvariantBroken(Exception):
    """A decoder returned something that breaks a property the harness checks."""


# ---------------------------------------------------------------------------------------------
# Targets: bytes in, ProtocolError or nothing out

_ROUND_TRIP_LIMITS = WireLimits(max_frame_bytes=2 * FRAME_BYTES)


def _round_trip(message: Any) -> None:
    """A decoded message encodes, and decodes back to itself (untimed: not part of decoding)."""
    mflags = MessageFlag.TRUNCATED if isinstance(message, TruncatedResponse) else 0
    try:
        again = decode_message(encode_message(message, mflags), _ROUND_TRIP_LIMITS)
    except Exception as exc:
        raise InvariantBroken(f"re-encoding {message!r} failed: {exc!r}") from exc
    if again != message:
        raise InvariantBroken(f"round trip changed {message!r} into {again!r}")


class _Stream:
    """Feeds one input to a ``Connection`` and times each step (one chunk, or one event)."""

    def __init__(self, data: bytes) -> None:
        self.conn = Connection()
        self.budget = len(data) + 100  # events possible: one per 4 bytes at most
        self.longest = 0.0

    def feed(self, chunk: bytes) -> bool:
        """Give ``chunk``, read events until NEED_DATA; False once the stream is dead (fatal)."""
        start = time.perf_counter()
        self.conn.receive_data(chunk)
        while True:
            self.budget -= 1
            if self.budget < 0:
                raise InvariantBroken("next_event keeps answering without consuming input")
            try:
                event = self.conn.next_event()
            except ProtocolError as exc:
                if exc.fatal:
                    return False
                event = None
            now = time.perf_counter()
            self.longest = max(self.longest, now - start)
            start = now
            if event is NEED_DATA:
                return True


def _connection(data: bytes) -> float:
    """The stream cut at random places; returns its slowest step, which the 10 ms rule applies to.

    The whole stream's time grows with its number of frames (about 1-2 us per frame, even for an
    empty one), so a per-input budget would only measure how many frames fit in the input.
    """
    rng = random.Random(zlib.crc32(data))  # the chunking is part of the input, so reproducible
    cuts = sorted(rng.sample(range(1, len(data)), min(max(len(data) - 1, 0), rng.randint(0, 64))))
    stream = _Stream(data)
    start = 0
    for end in [*cuts, len(data)]:
        if not stream.feed(data[start:end]):
            return stream.longest
        start = end
    stream.feed(b"")
    return stream.longest


def _texts(data: bytes) -> tuple[str, str]:
    """The input as lone surrogates where it encodes them (else escaped bytes), and as U+FFFD."""
    try:
        raw = data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:  # surrogatepass still refuses invalid UTF-8: escape those bytes
        raw = data.decode("utf-8", "surrogateescape")
    return raw, data.decode("utf-8", "replace")


def _text_target(parse: Callable[..., object]) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        for text in _texts(data):
            for profile in (PROTOCOL, SNMS):
                try:
                    parse(text, profile)
                except ProtocolError:
                    pass

    return run


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, int digits
        raise NotJson from exc


def _values_from_body(data: bytes) -> None:
    values_from_body(_json(data), HANDLE)


_ANSWER_OPS = (
    OpCode.RESOLUTION,
    OpCode.CREATE_HANDLE,
    OpCode.LIST_HANDLES,
    OpCode.DELETE_HANDLE,
    OpCode(4242),
)


def _response_from_json(data: bytes) -> None:
    obj = _json(data)
    for op in _ANSWER_OPS:
        try:
            response_from_json(obj, op)
        except ProtocolError:
            pass


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], object]  #: the timed part
    kind: str  #: which seeds and mutator
    max_bytes: int  #: inputs are cut to this length
    check: Callable[[Any], None] | None = None  #: untimed property of what ``run`` returned
    times_itself: bool = False  #: ``run`` returns the seconds its slowest step took


#: times a slow input is run again, keeping the fastest, before it counts as slow: a busy
#: machine (a test run beside other work) must not turn the 10 ms rule into a lottery
SLOW_RETRIES = 3

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("wire.decode_message", decode_message, KIND_MSGPACK, FRAME_BYTES, _round_trip),
        Target("wire.Connection", _connection, KIND_FRAMES, 2 * (FRAME_BYTES + 4), None, True),
        Target("identifiers.parse_handle", _text_target(parse_handle), KIND_TEXT, 8192),
        Target("identifiers.classify", _text_target(classify), KIND_TEXT, 8192),
        Target("jsonapi.values_from_body", _values_from_body, KIND_JSON, FRAME_BYTES),
        Target("jsonapi.response_from_json", _response_from_json, KIND_JSON, FRAME_BYTES),
        Target("records.AdminValue.from_bytes", AdminValue.from_bytes, KIND_BINARY, FRAME_BYTES),
        Target("records.unpack_vlist", unpack_vlist, KIND_BINARY, FRAME_BYTES),
        Target("site.decode_site", decode_site, KIND_BINARY, FRAME_BYTES),
    )
}
NAMES = tuple(TARGETS)


# ---------------------------------------------------------------------------------------------
# The harness: run, time, record


@dataclass
class Finding:
    target: str
    kind: str  #: "exception", "invariant" or "slow"
    where: str  #: what makes two findings the same: exception type and place, or just "slow"
    detail: str  #: the exception and its message, or the time taken
    data: bytes  #: the smallest input seen for an exception, the slowest for "slow"
    count: int = 0
    ms: float = 0.0

    @property
    def key(self) -> tuple[str, str, str]:
        return self.target, self.kind, self.where

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "kind": self.kind,
            "where": self.where,
            "detail": self.detail,
            "count": self.count,
            "ms": round(self.ms, 3),
            "data": self.data.hex(),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Finding:
        data = bytes.fromhex(obj.pop("data"))
        return cls(data=data, **obj)


@dataclass
class TargetStats:
    inputs: int = 0
    not_json: int = 0
    max_ms: float = 0.0
    slowest: bytes = b""


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}protocol{os.sep}" in f.filename] or frames
    last = ours[-1]
    return f"{type(exc).__name__} at {Path(last.filename).name}:{last.lineno} in {last.name}"


@dataclass
class Harness:
    """Runs inputs against targets; keeps counts, the slowest input and deduplicated findings."""

    limit_s: float = LIMIT_S
    retry_slow: bool = True  #: time a slow input again before calling it slow (a loaded machine)
    targets: dict[str, Target] = field(default_factory=lambda: TARGETS)
    stats: dict[str, TargetStats] = field(default_factory=dict)
    findings: dict[tuple[str, str, str], Finding] = field(default_factory=dict)
    on_finding: Callable[[Finding], None] | None = None

    def __post_init__(self) -> None:
        for name in self.targets:
            self.stats.setdefault(name, TargetStats())

    def execute(self, name: str, data: bytes) -> None:
        target = self.targets[name]
        data = data[: target.max_bytes]
        stats = self.stats[name]
        stats.inputs += 1
        elapsed = self._run(target, data)
        for _ in range(SLOW_RETRIES if self.retry_slow else 0):
            if elapsed <= self.limit_s:
                break
            elapsed = min(elapsed, self._run(target, data, record=False))
        if elapsed * 1000 > stats.max_ms:
            stats.max_ms, stats.slowest = elapsed * 1000, data
        if elapsed > self.limit_s:
            detail = f"{elapsed * 1000:.3f} ms, over {self.limit_s * 1000:g} ms"
            self._record(Finding(name, "slow", "slow", detail, data, ms=elapsed * 1000))

    def _run(self, target: Target, data: bytes, record: bool = True) -> float:
        result = None
        start = time.perf_counter()
        try:
            result = target.run(data)
        except ProtocolError:
            pass
        except NotJson:
            if record:
                self.stats[target.name].not_json += 1
        except Exception as exc:  # InvariantBroken or a decoder bug
            if record:
                self._failed(target, data, exc)
        elapsed = time.perf_counter() - start
        if target.times_itself and isinstance(result, float):
            elapsed = result
        if record and result is not None and target.check is not None:
            try:
                target.check(result)
            except Exception as exc:
                self._failed(target, data, exc)
        return elapsed

    def _failed(self, target: Target, data: bytes, exc: Exception) -> None:
        kind = "invariant" if isinstance(exc, InvariantBroken) else "exception"
        detail = f"{type(exc).__name__}: {str(exc)[:300]}"
        self._record(Finding(target.name, kind, _where(exc), detail, data))

    def _record(self, new: Finding) -> None:
        seen = new.count or 1
        found = self.findings.get(new.key)
        if found is None:
            new.count = seen
            self.findings[new.key] = new
            if self.on_finding is not None:
                self.on_finding(new)
            return
        found.count += seen
        # keep the smallest reproducer of an exception and the slowest input of a "slow"
        if new.ms > found.ms if new.kind == "slow" else len(new.data) < len(found.data):
            found.data, found.ms, found.detail = new.data, new.ms, new.detail

    def merge(self, other: dict[str, Any]) -> None:
        """Add a worker's ``summary()``."""
        for name, s in other["targets"].items():
            mine = self.stats[name]
            mine.inputs += s["inputs"]
            mine.not_json += s["not_json"]
            if s["max_ms"] > mine.max_ms:
                mine.max_ms, mine.slowest = s["max_ms"], bytes.fromhex(s["slowest"])
        for obj in other["findings"]:
            self._record(Finding.from_json(obj))

    def summary(self) -> dict[str, Any]:
        return {
            "targets": {
                n: {
                    "inputs": s.inputs,
                    "not_json": s.not_json,
                    "max_ms": round(s.max_ms, 3),
                    "slowest": s.slowest.hex(),
                }
                for n, s in self.stats.items()
            },
            "findings": [f.to_json() for f in self.findings.values()],
        }

    @property
    def total(self) -> int:
        return sum(s.inputs for s in self.stats.values())


def seed_corpus() -> dict[str, list[bytes]]:
    """The seeds of each target, by its input kind."""
    by_kind = {kind: make() for kind, make in SEEDS_BY_KIND.items()}
    return {name: by_kind[t.kind] for name, t in TARGETS.items()}


# ---------------------------------------------------------------------------------------------
# Engines


def run_fallback(
    runs: int, seed: int = 0, targets: tuple[str, ...] = NAMES, harness: Harness | None = None
) -> Harness:
    """Deterministic mutation fuzzing: ``runs`` inputs spread evenly over ``targets``.

    Every seed runs once as it is, then inputs are mutated seeds (3% are plain random bytes).
    """
    harness = harness or Harness()
    corpus = seed_corpus()
    rng = random.Random(seed)
    mutator = Mutator(rng)
    for i in range(runs):
        name = targets[i % len(targets)]
        seeds, target = corpus[name], TARGETS[name]
        turn = i // len(targets)
        if turn < len(seeds):
            data = seeds[turn]
        elif rng.random() < 0.03:
            data = rng.randbytes(rng.randint(0, 64))
        else:
            data = mutator.mutate(
                target.kind, rng.choice(seeds), rng.choice(seeds), target.max_bytes
            )
        harness.execute(name, data)
    return harness


def _atheris_worker(runs: int, seed: int, stats_path: Path, targets: tuple[str, ...]) -> None:
    """Coverage-guided fuzzing in this process; writes the summary and exits after ``runs``."""
    import atheris

    harness = Harness(retry_slow=False)  # instrumented timings are re-checked by the parent

    def dump(_: Finding | None = None) -> None:
        stats_path.write_text(json.dumps(harness.summary()))

    harness.on_finding = dump
    mutator = Mutator(random.Random(seed))
    corpus = seed_corpus()

    def test_one(data: bytes) -> None:
        if not data:
            return
        harness.execute(targets[data[0] % len(targets)], data[1:])
        if harness.total >= runs:
            dump()
            os._exit(0)

    def custom_mutator(data: bytes, max_size: int, mutation_seed: int) -> bytes:
        mutator.rng.seed(mutation_seed)
        if not data or mutator.rng.random() < 0.5:
            out: bytes = atheris.Mutate(data, max_size)
            return out
        index = data[0] % len(targets)
        name = targets[index]
        other = mutator.rng.choice(corpus[name])
        out = mutator.mutate(TARGETS[name].kind, data[1:], other, max_size - 1)
        return bytes([index]) + out

    atheris.instrument_all()
    with tempfile.TemporaryDirectory(prefix="fuzz-corpus-") as tmp:
        work, seeds = Path(tmp, "work"), Path(tmp, "seeds")
        work.mkdir()
        seeds.mkdir()
        for index, name in enumerate(targets):
            for n, data in enumerate(corpus[name]):
                Path(seeds, f"{index:02d}-{n:04d}").write_bytes(bytes([index]) + data)
        max_len = max(TARGETS[n].max_bytes for n in targets) + 1
        argv = [
            sys.argv[0],
            "-runs=-1",
            f"-seed={seed + 1}",
            f"-max_len={max_len}",
            "-rss_limit_mb=4096",
            "-print_final_stats=0",
            "-print_pcs=0",
            str(work),
            str(seeds),
        ]
        atheris.Setup(argv, test_one, custom_mutator=custom_mutator)
        atheris.Fuzz()


def _have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run_workers(
    engine: str, runs: int, workers: int, seed: int, targets: tuple[str, ...], quiet: bool
) -> Harness:
    """Split ``runs`` over worker processes and merge what they found."""
    harness = Harness()
    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="fuzz-stats-") as tmp:
        procs = []
        for w in range(workers):
            share = runs // workers + (1 if w < runs % workers else 0)
            out = Path(tmp, f"worker-{w}.json")
            cmd = [
                sys.executable,
                "-m",
                "tests.protocol.fuzz",
                "--worker",
                "--engine",
                engine,
                "--runs",
                str(share),
                "--seed",
                str(seed + w),
                "--stats-out",
                str(out),
                "--targets",
                ",".join(targets),
            ]
            sink = subprocess.DEVNULL if quiet else None
            procs.append((subprocess.Popen(cmd, cwd=root, stdout=sink, stderr=sink), out))
        for proc, out in procs:
            proc.wait()
            if not out.exists():
                raise SystemExit(f"a fuzz worker exited with {proc.returncode} and no report")
            harness.merge(json.loads(out.read_text()))
    if engine == "atheris":
        _recheck_slow(harness)
    return harness


def _recheck_slow(harness: Harness) -> None:
    """Time the slow inputs again without instrumentation; only confirmed ones are findings."""
    clean = Harness()
    for name, stats in harness.stats.items():
        if stats.inputs:
            clean.execute(name, stats.slowest)
    for key, found in list(harness.findings.items()):
        if found.kind == "slow":
            del harness.findings[key]
            clean.execute(found.target, found.data)
    for name, stats in harness.stats.items():
        stats.max_ms, stats.slowest = clean.stats[name].max_ms, clean.stats[name].slowest
    for key, found in clean.findings.items():
        if found.kind == "slow":
            harness.findings[key] = found


def report(harness: Harness, engine: str, wall_s: float, out: Any = None) -> None:
    out = out or sys.stdout
    print(f"engine {engine}: {harness.total} inputs in {wall_s:.1f} s", file=out)
    print(f"{'target':34} {'inputs':>10} {'slowest ms':>11} {'not JSON':>9}", file=out)
    for name, s in harness.stats.items():
        print(f"{name:34} {s.inputs:>10} {s.max_ms:>11.3f} {s.not_json:>9}", file=out)
    print("(wire.Connection: the slowest step of a stream, one chunk or one event)", file=out)
    print(f"findings: {len(harness.findings)}", file=out)
    for f in harness.findings.values():
        print(f"- [{f.kind}] {f.target} x{f.count}: {f.detail}", file=out)
        if f.ms:
            print(f"  {f.ms:.3f} ms", file=out)
        print(f"  input ({len(f.data)} bytes): {f.data[:200].hex()}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.protocol.fuzz",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=1_000_000, help="inputs in total")
    parser.add_argument("--engine", choices=("auto", "atheris", "fallback"), default="auto")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(os.cpu_count() or 1, 8),
        help="processes running in parallel (default: one per CPU, at most 8)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", default=",".join(NAMES), help="comma-separated target names")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--verbose", action="store_true", help="show libFuzzer's output")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stats-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    targets = tuple(args.targets.split(","))
    if unknown := set(targets) - set(NAMES):
        parser.error(f"unknown targets {sorted(unknown)}; known: {', '.join(NAMES)}")
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if _have_atheris() else "fallback"
    if args.worker:
        if engine == "atheris":
            _atheris_worker(args.runs, args.seed, args.stats_out, targets)
        harness = run_fallback(args.runs, args.seed, targets)
        args.stats_out.write_text(json.dumps(harness.summary()))
        return 0
    start = time.perf_counter()
    if engine == "fallback" and args.workers == 1:
        harness = run_fallback(args.runs, args.seed, targets)
    else:
        harness = run_workers(engine, args.runs, args.workers, args.seed, targets, not args.verbose)
    wall = time.perf_counter() - start
    report(harness, engine, wall)
    if args.json:
        args.json.write_text(json.dumps({"engine": engine, "wall_s": wall, **harness.summary()}))
    return 1 if harness.findings else 0


if __name__ == "__main__":
    sys.exit(main())
