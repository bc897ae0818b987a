"""The capacity report rebuilt from hand-written CSVs: the headline obeys the p99/error rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.report import (
    COLUMNS,
    ERROR_LIMIT,
    P99_LIMIT_MS,
    PLOTS,
    ReportInputError,
    build_report,
    headline,
    main,
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


def test_a_retried_step_is_judged_by_the_try_where_the_generator_kept_up(tmp_path: Path) -> None:
    # capacity retries a step where the generator fell behind; here the retry kept its
    # schedule and shows the node over the p99 bound: the node is the limit, not the generator
    rows = [
        HTTP[0],
        HTTP[1],
        "http,node,4000,3990,1.0,2.0,3.0,5.0,0.5,1.0,8000,0,0,9.0,20.0,0.7,False,"
        "behind schedule (lag p99 9.0 ms > 5 ms)",
        "http,node,4000,3950,2.0,9.0,25.0,40.0,1.0,8.0,8000,0,0,1.0,2.0,0.5,True,ok",
    ]
    (tmp_path / "steps-http.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    best, why = headline(read_steps(tmp_path), "http")
    assert best is not None and best["offered_per_s"] == 2000
    assert why == "p99 25.0 ms at 4,000/s"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (HEADER + "\n", "no ladder step"),
        ("\n".join([HEADER, HTTP[0], "http,node,2000,1999"]), "line 3: 18 fields"),
        ("door,server,offered_per_s\nhttp,node,1000\n", "no column achieved_per_s"),
        ("\n".join([HEADER, HTTP[0].replace(",1000,", ",x,", 1)]), "'x' is not a number"),
    ],
    ids=["header only", "short row", "old columns", "not a number"],
)
def test_bad_or_partial_input_is_named_not_a_traceback(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "steps-http.csv").write_text(text)
    with pytest.raises(ReportInputError, match=message):
        build_report(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m benchmarks.report: error: ") and message in err
    assert not (tmp_path / "report.md").exists()


def test_command_line_on_a_missing_folder_and_a_bad_meta(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    run_dir = _run_dir(tmp_path / "run")
    (run_dir / "meta.json").write_text("{not json")
    for target, message in ((tmp_path / "none", "not a folder"), (run_dir, "meta.json: not JSON")):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.report", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
