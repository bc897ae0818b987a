"""The fuzz harness in the test suite: a short deterministic campaign and hypothesis on the decoder.

``make fuzz`` runs the long campaign (a million inputs, atheris when installed); here the pure-Python
engine runs 16,000 inputs over every decoder in a few seconds, so a decoder that lets an exception
other than ``ProtocolError`` escape, or takes 10 ms on one input, fails ``make test``. Timings are
retried once before they count (see ``Harness.retry_slow``), so a loaded machine does not fail it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.protocol.fuzz import (
    LIMIT_S,
    NAMES,
    Finding,
    Harness,
    NotJson,
    Target,
    main,
    run_fallback,
)
from tests.protocol.fuzz_corpus import KIND_MSGPACK, msgpack_seeds

RUNS = 18_000  # 2,000 per decoder
SEED = 20261128


#: findings in modules this harness may not change, each with where the fix belongs; matched on
def _describe(findings: list[Finding]) -> str:
    return "\n".join(
        f"[{f.kind}] {f.target} x{f.count}: {f.detail}\n  input {f.data[:120].hex()}"
        for f in findings
    )


def test_fallback_campaign_over_every_decoder() -> None:
    start = time.perf_counter()
    harness = run_fallback(RUNS, seed=SEED)
    elapsed = time.perf_counter() - start
    assert harness.total == RUNS
    assert {n: s.inputs for n, s in harness.stats.items()} == dict.fromkeys(
        NAMES, RUNS // len(NAMES)
    )
    assert elapsed < 60, f"{RUNS} inputs took {elapsed:.1f} s"
    findings = list(harness.findings.values())
    assert not findings, _describe(findings)
    for name, stats in harness.stats.items():
        assert stats.max_ms < LIMIT_S * 1000, (name, stats.max_ms)


# ---------------------------------------------------------------------------------------------
# hypothesis on the msgpack decoder

_SEEDS = [s for s in msgpack_seeds() if len(s) < 4096]


def _assert_clean(data: bytes) -> None:
    harness = Harness()
    harness.execute("wire.decode_message", data)
    assert not harness.findings, _describe(list(harness.findings.values()))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_decode_message_on_random_bytes(data: bytes) -> None:
    _assert_clean(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(_SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 4096),
    insert=st.sampled_from([b"", b"\x91" * 3000, b"\xdb\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff"]),
)
def test_decode_message_on_mutated_valid_bytes(
    seed: bytes, edits: list[tuple[int, int]], cut: int, insert: bytes
) -> None:
    data = bytearray(seed)
    for at, byte in edits:
        if data:
            data[at % len(data)] = byte
    at = cut % (len(data) + 1)
    _assert_clean(bytes(data[:at]) + insert + bytes(data[at:]) if cut % 3 else bytes(data[:at]))


# ---------------------------------------------------------------------------------------------
# the harness itself: it must see what it is there to see


def _boom(data: bytes) -> None:
    if data == b"bug":
        raise KeyError("planted")


def _not_json(data: bytes) -> None:
    raise NotJson


def _slow(data: bytes) -> None:
    time.sleep(LIMIT_S * 1.5)


def test_harness_reports_escaping_exceptions_slow_inputs_and_not_json() -> None:
    targets = {
        "boom": Target("boom", _boom, KIND_MSGPACK, 64),
        "json": Target("json", _not_json, KIND_MSGPACK, 64),
        "slow": Target("slow", _slow, KIND_MSGPACK, 64),
    }
    harness = Harness(targets=targets)
    for data in (b"fine", b"bug", b"bug"):
        harness.execute("boom", data)
    harness.execute("json", b"{")
    harness.execute("slow", b"x")
    kinds = sorted((f.target, f.kind, f.count) for f in harness.findings.values())
    assert kinds == [("boom", "exception", 2), ("slow", "slow", 1)]
    assert harness.stats["json"].not_json == 1
    assert harness.stats["slow"].max_ms >= LIMIT_S * 1000
    merged = Harness(targets=targets)
    merged.merge(json.loads(json.dumps(harness.summary())))
    merged.merge(harness.summary())
    assert merged.total == 2 * harness.total
    assert sorted(f.count for f in merged.findings.values()) == [2, 4]


def test_cli_runs_workers_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "summary.json"
    argv = ["--engine", "fallback", "--runs", "400", "--workers", "2", "--json", str(out)]
    # cheap targets: this checks the CLI and its workers, not the 10 ms rule (tested above), which
    # two worker processes on a busy 2-core machine would turn into a race
    status = main([*argv, "--targets", "identifiers.parse_handle,records.AdminValue.from_bytes"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "engine fallback: 400 inputs" in printed
    summary = json.loads(out.read_text())
    assert sum(t["inputs"] for t in summary["targets"].values()) == 400
    assert summary["findings"] == []
