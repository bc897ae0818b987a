"""The capacity report rebuilt from hand-written CSVs: the headline obeys the p99/error rule."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.report import (
    COLUMNS,
    ERROR_LIMIT,
    P99_LIMIT_MS,
    PLOTS,
    build_report,
    headline,
    read_steps,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

HEADER = ",".join(COLUMNS)
# door,server,offered,achieved,p50,p95,p99,max,send_p50,send_p99,requests,errors,timeouts,
# lag_p99,lag_max,cpu,ok,note
HTTP = [
    "http,node,1000,1000,0.9,1.5,2.0,4.0,0.5,1.2,2000,0,0,1.0,2.0,0.2,True,ok",
    "http,node,2000,2000,1.0,2.5,4.0,8.0,0.6,2.0,4000,0,0,1.0,2.0,0.3,True,ok",
    # more throughput but errors 0.5%: not the headline
    "http,node,3000,2990,1.2,3.0,6.0,9.0,0.7,3.0,6000,30,0,1.0,2.0,0.4,True,ok",
    # more throughput but p99 over the limit: not the headline
    "http,node,4000,3950,2.0,9.0,25.0,40.0,1.0,8.0,8000,0,0,1.0,2.0,0.5,True,ok",
    # perfect figures but the generator fell behind: never the headline
    "http,node,5000,5000,1.0,2.0,3.0,5.0,0.5,1.0,10000,0,0,9.0,20.0,0.95,False,"
    "CPU saturated (95% of a core)",
    "http,floor,1000,1000,0.5,1.0,1.5,3.0,0.3,0.8,2000,0,0,1.0,2.0,0.2,True,ok",
    "http,floor,4000,4000,0.6,1.2,2.0,3.0,0.3,1.0,8000,0,0,1.0,2.0,0.4,True,ok",
    "http,floor,8000,7000,5.0,30.0,80.0,120.0,1.0,5.0,16000,0,0,1.0,2.0,0.6,True,ok",
]
UDP = [
    "udp,node,2000,2000,0.8,1.0,1.5,3.0,0.2,0.5,4000,0,0,1.0,2.0,0.2,True,ok",
    "udp,node,4000,4000,0.8,1.2,1.8,3.0,0.2,0.6,8000,0,3,1.0,2.0,0.3,True,ok",
    "udp,floor,2000,2000,0.5,0.9,1.2,2.0,0.1,0.3,4000,0,0,1.0,2.0,0.2,True,ok",
]


def _run_dir(tmp_path: Path) -> Path:
    (tmp_path / "steps-http.csv").write_text("\n".join([HEADER, *HTTP]) + "\n")
    (tmp_path / "steps-udp.csv").write_text("\n".join([HEADER, *UDP]) + "\n")
    (tmp_path / "meta.json").write_text(json.dumps({"started": "test", "cpus": 2}))
    return tmp_path


def test_headline_obeys_the_p99_and_error_rule(tmp_path: Path) -> None:
    rows = read_steps(_run_dir(tmp_path))
    assert len(rows) == len(HTTP) + len(UDP)
    best, why = headline(rows, "http")
    assert best is not None
    assert best["offered_per_s"] == 2000 and best["achieved_per_s"] == 2000
    assert best["p99_ms"] < P99_LIMIT_MS
    assert (best["errors"] + best["timeouts"]) / best["requests"] < ERROR_LIMIT
    assert best["generator_ok"]
    assert why.startswith("errors")
    floor, floor_why = headline(rows, "http", "floor")
    assert floor is not None and floor["achieved_per_s"] == 4000 and floor_why.startswith("p99")
    # 3 timeouts in 8000 requests is under 0.1%: the top step holds, and it is the ladder's top
    best, why = headline(rows, "udp")
    assert best is not None and best["offered_per_s"] == 4000 and why.startswith("ladder top")
    assert headline(rows, "tcp") == (None, "no step passed")


def test_build_report_writes_markdown_and_three_pngs(tmp_path: Path) -> None:
    run_dir = _run_dir(tmp_path)
    report = build_report(run_dir)
    text = report.read_text()
    assert report == run_dir / "report.md"
    table = [line for line in text.splitlines() if line.startswith("| http |")]
    assert table[0].split("|")[2].strip() == "2,000"  # headline row: 2,000 req/s
    assert "0.50x" in table[0]  # against the floor's 4,000
    assert "| udp | 4,000 |" in text
    assert "CPU saturated (95% of a core)" in text  # the flagged step is listed, not chosen
    assert "- **cpus**: 2" in text
    for name in PLOTS:
        data = (run_dir / name).read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC), name
        assert f"]({name})" in text
