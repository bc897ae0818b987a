"""Configuration precedence and the ``idnode serve`` command line.

Later sources win: defaults < TOML ``--config`` < ``IDNODE_*`` environment < flags. Port 0 picks a
free port, and the real ports are printed and logged; SIGTERM stops the node with status 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node import config as config_mod
from node.config import Config
from protocol.messages import ListHomedPrefixesRequest, ListPrefixesResponse, ResolveRequest
from tests.node.conftest import (
    LISTENING,
    PREFIX,
    ROOT,
    NodeProcess,
    http,
    tcp_request,
    udp_request,
)


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------
# precedence


def test_defaults_without_any_source() -> None:
    config = config_mod.parse([], environ={})
    assert config == Config()
    assert config.http_port == 8000
    assert config.port == 2641
    assert config.home == []
    assert config.host == "127.0.0.1"


def test_a_dead_hop_is_reported_before_a_client_with_default_settings_gives_up() -> None:
    from node.client import DEFAULT_TIMEOUT_S

    # one dead hop takes hop_timeout_s; the rest of a walk a few milliseconds
    assert Config().hop_timeout_s + 0.5 <= DEFAULT_TIMEOUT_S


def test_precedence_defaults_toml_env_flags(tmp_path: Path) -> None:
    toml = write_toml(
        tmp_path / "idnode.toml",
        'http_port = 8100\nport = 2700\nlog_level = "DEBUG"\ndata_dir = "/from/toml"\n'
        'admin_secret = "toml-secret"\nshutdown_grace_s = 1.5\n',
    )
    environ = {"IDNODE_PORT": "2800", "IDNODE_LOG_LEVEL": "WARNING", "IDNODE_DATA_DIR": "/from/env"}

    only_toml = config_mod.parse(["--config", str(toml)], environ={})
    assert (only_toml.http_port, only_toml.port, only_toml.log_level) == (8100, 2700, "DEBUG")
    assert only_toml.data_dir == "/from/toml"
    assert only_toml.shutdown_grace_s == 1.5
    assert only_toml.max_frame_bytes == Config().max_frame_bytes  # untouched: default

    toml_env = config_mod.parse(["--config", str(toml)], environ=environ)
    assert toml_env.http_port == 8100  # only in TOML
    assert toml_env.port == 2800  # env beats TOML
    assert toml_env.log_level == "WARNING"
    assert toml_env.data_dir == "/from/env"
    assert toml_env.admin_secret == "toml-secret"

    all_three = config_mod.parse(
        ["--config", str(toml), "--port", "2900", "--data-dir", "/from/flag"], environ=environ
    )
    assert all_three.http_port == 8100
    assert all_three.port == 2900  # flag beats env and TOML
    assert all_three.data_dir == "/from/flag"
    assert all_three.log_level == "WARNING"


def test_config_file_from_environment(tmp_path: Path) -> None:
    toml = write_toml(tmp_path / "env.toml", "http_port = 8123\n")
    config = config_mod.parse([], environ={"IDNODE_CONFIG": str(toml)})
    assert config.http_port == 8123
    flag_file = write_toml(tmp_path / "flag.toml", "http_port = 8124\n")
    config = config_mod.parse(["--config", str(flag_file)], environ={"IDNODE_CONFIG": str(toml)})
    assert config.http_port == 8124


def test_env_values_are_converted_to_field_types() -> None:
    config = config_mod.parse(
        [],
        environ={
            "IDNODE_HTTP_PORT": "0",
            "IDNODE_NEGATIVE_CACHE_TTL_S": "2.5",
            "IDNODE_CASE_SENSITIVE_SUFFIX": "true",
            "IDNODE_HOME": "88.1, 88.2",
            "UNRELATED": "x",
        },
    )
    assert config.http_port == 0 and isinstance(config.http_port, int)
    assert config.negative_cache_ttl_s == 2.5
    assert config.case_sensitive_suffix is True
    assert config.home == ["88.1", "88.2"]


@pytest.mark.parametrize(
    ("argv", "environ", "toml", "said"),
    [
        (["--port", "abc"], {}, None, "flags: port must be int, not 'abc'"),
        ([], {"IDNODE_HTTP_PORT": "x"}, None, "IDNODE_* environment: http_port must be int"),
        ([], {}, "bogus_key = 1\n", "unknown setting 'bogus_key'"),
        ([], {}, "port = [\n", "config file"),
        (["--config", "/nonexistent/idnode.toml"], {}, None, "No such file"),
        # each of these started a node that wrapped the port, crashed, hung or failed later
        (["--port", "70000"], {}, None, "port must be an integer from 0 to 65,535"),
        (["--http-port", "-1"], {}, None, "http_port must be an integer from 0 to 65,535"),
        (["--role", "bogus"], {}, None, "role must be one of secondary, toplevel, recursive"),
        (["--profile", "bogus"], {}, None, "profile must be one of protocol, snms"),
        (["--log-level", "LOUD"], {}, None, "log_level must be one of DEBUG"),
        (["--workers", "-3"], {}, None, "workers must be an integer from 0 to 256"),
        (["--udp-queue-len", "0"], {}, None, "udp_queue_len must be an integer of at least 1"),
        (["--max-frame-bytes", "0"], {}, None, "max_frame_bytes must be an integer from 1,024"),
        (["--max-http-body-bytes", "-1"], {}, None, "max_http_body_bytes must be an integer"),
        (["--tcp-idle-timeout-s", "nan"], {}, None, "tcp_idle_timeout_s must be a finite number"),
        (["--write-batch-wait-s", "inf"], {}, None, "write_batch_wait_s must be a finite number"),
        (["--heartbeat-interval-s", "0"], {}, None, "heartbeat_interval_s must be a finite"),
        (["--shutdown-grace-s", "-1"], {}, None, "shutdown_grace_s must be a finite number"),
        (["--hop-timeout-s", "0"], {}, None, "hop_timeout_s must be a finite number"),
        (["--recursion-limit", "0"], {}, None, "recursion_limit must be an integer from 1"),
        (["--site-serial", "70000"], {}, None, "site_serial must be an integer from 0 to 65,535"),
        (["--home", "bad/x", "--admin-secret", "s"], {}, None, "home 'bad/x': a prefix"),
        (["--home", "0.NA", "--admin-secret", "s"], {}, None, "0.NA cannot be homed"),
        (["--toplevel", "nohostport"], {}, None, "toplevel: expected HOST:PORT"),
        (["--role", "recursive"], {}, None, "a recursive node needs the top-level node's"),
        (["--site", "1.2.3.4:2641:x"], {}, None, "site server '1.2.3.4:2641:x': expected HOST:P"),
        # a part missing was reported as a malformed HOST:PORT of the rest ('1.2.3.4', or '')
        (["--site", "1.2.3.4:x"], {}, None, "site server '1.2.3.4:x': expected HOST:PORT:HTTP"),
        (["--site", "1.2.3.4"], {}, None, "site server '1.2.3.4': expected HOST:PORT:HTTP_PORT"),
        ([], {"IDNODE_CASE_SENSITIVE_SUFFIX": "ture"}, None, "case_sensitive_suffix must be"),
        ([], {}, "http_port = 1.9\n", "http_port must be int, not 1.9"),
        ([], {}, "http_port = true\n", "http_port must be int, not True"),
        ([], {}, 'admin_secret = ["a"]\n', "admin_secret must be str"),
        ([], {}, "home = [88, 1.5]\n", "home must be list[str]"),
    ],
)
def test_a_bad_setting_is_named_and_serve_exits_2_without_a_traceback(
    tmp_path: Path,
    argv: list[str],
    environ: dict[str, str],
    toml: str | None,
    said: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from node.cli import main

    if toml is not None:
        argv = [*argv, "--config", str(write_toml(tmp_path / "bad.toml", toml))]
    with pytest.raises(config_mod.ConfigError, match=re.escape(said)):
        config_mod.parse(argv, environ=environ)
    with pytest.MonkeyPatch.context() as patch:
        for name, raw in environ.items():
            patch.setenv(name, raw)
        with pytest.raises(SystemExit) as exited:
            main(["serve", "--data-dir", str(tmp_path / "d"), *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


def test_a_choice_in_any_case_is_kept_as_its_list_writes_it() -> None:
    """``--profile SNMS`` passed the check, then failed with a KeyError traceback."""
    config = config_mod.parse(["--profile", "SNMS", "--role", "Toplevel"], environ={})
    assert (config.profile, config.role) == ("snms", "toplevel")


def test_a_misspelt_setting_variable_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    """Other tools read IDNODE_* variables of their own: only a near miss is named."""
    environ = {"IDNODE_HTTPPORT": "5", "IDNODE_WORKLOAD_FILE": "w.json", "IDNODE_SECRET": "s"}
    assert config_mod.parse([], environ=environ).http_port == 8000
    warned = [r.getMessage() for r in caplog.records if r.name == "idnode.config"]
    assert warned == ["ignoring IDNODE_HTTPPORT: no setting has that name; IDNODE_HTTP_PORT?"]


def test_home_is_repeatable_and_flags_replace_lower_sources(tmp_path: Path) -> None:
    assert config_mod.parse(["--home", "88.1", "--home", "88.2.3"], environ={}).home == [
        "88.1",
        "88.2.3",
    ]
    toml = write_toml(tmp_path / "h.toml", 'home = ["88.10", "88.11"]\n')
    assert config_mod.parse(["--config", str(toml)], environ={}).home == ["88.10", "88.11"]
    assert config_mod.parse(["--config", str(toml)], environ={"IDNODE_HOME": "88.20"}).home == [
        "88.20"
    ]
    # comma-separated in every source alike
    assert config_mod.parse(["--home", "88.1,88.2"], environ={}).home == ["88.1", "88.2"]
    assert config_mod.parse(
        ["--config", str(toml), "--home", "88.30"], environ={"IDNODE_HOME": "88.20"}
    ).home == ["88.30"]


def test_bool_flag_beats_env() -> None:
    environ = {"IDNODE_CASE_SENSITIVE_SUFFIX": "yes"}
    assert config_mod.parse([], environ=environ).case_sensitive_suffix is True
    assert (
        config_mod.parse(["--no-case-sensitive-suffix"], environ=environ).case_sensitive_suffix
        is False
    )
    assert config_mod.parse(["--case-sensitive-suffix"], environ={}).case_sensitive_suffix is True


def test_unknown_toml_setting_is_refused(tmp_path: Path) -> None:
    toml = write_toml(tmp_path / "bad.toml", "no_such_setting = 1\n")
    with pytest.raises(ValueError, match="no_such_setting"):
        config_mod.parse(["--config", str(toml)], environ={})


def test_every_field_is_documented() -> None:
    for f in Config.fields():
        assert f.metadata.get("doc"), f.name


# ------------------------------------------------------------------------------------------------
# the command line


def _help() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "node", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def test_serve_help_lists_every_config_flag() -> None:
    text = _help()
    flat = re.sub(r"\s+", " ", text)
    assert "--config" in text
    for f in Config.fields():
        flag = "--" + f.name.replace("_", "-")
        assert re.search(re.escape(flag) + r"\b", text), f"{flag} missing from serve --help"
        doc = re.sub(r"\s+", " ", f.metadata["doc"])
        assert doc in flat, f"help of {flag} missing: {doc!r}"


def test_port_zero_prints_and_logs_the_real_ports(tmp_path: Path, spawn_node: Any) -> None:
    proc: NodeProcess = spawn_node(tmp_path / "data")
    http_port, tcp_port, udp_port = proc.ports["http"], proc.ports["tcp"], proc.ports["udp"]
    assert proc.host == "127.0.0.1"
    assert 0 not in (http_port, tcp_port, udp_port)
    assert tcp_port == udp_port
    assert http(proc, "GET", "/readyz").status == 200
    homed = asyncio.run(tcp_request(tcp_port, ListHomedPrefixesRequest(request_id=1)))
    assert isinstance(homed, ListPrefixesResponse) and homed.prefixes == (PREFIX,)
    over_udp = asyncio.run(
        udp_request(udp_port, ResolveRequest(request_id=2, handle=f"{PREFIX}/ADMIN"))
    )
    assert int(over_udp.code) == 1
    logged = f"listening on 127.0.0.1: http={http_port} tcp={tcp_port} udp={udp_port}"
    deadline = time.monotonic() + 5
    while logged not in proc.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert logged in proc.stderr(), proc.stderr()[-2000:]
    assert LISTENING.search(proc.line)
    assert proc.terminate() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_with_status_0_within_seconds(
    tmp_path: Path, spawn_node: Any, sig: signal.Signals
) -> None:
    proc: NodeProcess = spawn_node(tmp_path / "data")
    assert http(proc, "GET", "/healthz").status == 200
    started = time.monotonic()
    proc.proc.send_signal(sig)
    rc = proc.proc.wait(10)
    elapsed = time.monotonic() - started
    proc.close()
    assert rc == 0, proc.stderr()[-2000:]
    assert elapsed < 5, f"took {elapsed:.1f}s to stop"


def test_a_taken_port_is_one_line_and_status_1(tmp_path: Path, spawn_node: Any) -> None:
    proc: NodeProcess = spawn_node(tmp_path / "data")
    taken = str(proc.ports["http"])
    argv = ["serve", "--data-dir", str(tmp_path / "other"), "--workers", "1"]
    second = subprocess.run(
        [sys.executable, "-m", "node", *argv, "--http-port", taken, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1
    assert (
        "cannot listen on 127.0.0.1" in second.stderr and "address already in use" in second.stderr
    )
    assert "Traceback" not in second.stderr
    assert proc.terminate() == 0


def _serve_fails(data_dir: Path, *extra: str) -> str:
    """``idnode serve`` on ``data_dir`` that must exit 1 with one line and no traceback: the line."""
    argv = ["serve", "--data-dir", str(data_dir), "--http-port", "0", "--port", "0", *extra]
    done = subprocess.run(
        [sys.executable, "-m", "node", *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_data_dir_served_by_another_process_is_refused(
    tmp_path: Path, spawn_node: Any, workers: str
) -> None:
    """Each process caches answers: a second one would answer stale what the first wrote."""
    proc: NodeProcess = spawn_node(tmp_path / "data")
    said = _serve_fails(tmp_path / "data", "--workers", workers)
    assert "is served by another idnode process" in said
    assert http(proc, "GET", "/healthz").status == 200
    assert proc.terminate() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_data_dir_that_cannot_be_served_is_one_line(tmp_path: Path, workers: str) -> None:
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "idnode.sqlite3").write_bytes(b"not a database, " * 400)
    assert "cannot open the store" in _serve_fails(garbage, "--workers", workers)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert "cannot use the data directory" in _serve_fails(a_file, "--workers", workers)


@contextlib.contextmanager
def _immutable(path: Path) -> Iterator[None]:
    """``path`` unwritable even by root (``chattr +i``) for the block; skips where that is not
    allowed (no CAP_LINUX_IMMUTABLE, or a file system without the flag)."""
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_database_it_may_not_write_is_refused_at_start(
    tmp_path: Path, spawn_node: Any, workers: str
) -> None:
    """SQLite opens such a file read-only without a word: the node must not start and say
    ready, then fail every write."""
    data = tmp_path / "data"
    assert spawn_node(data).terminate() == 0
    with _immutable(data / "idnode.sqlite3"):
        said = _serve_fails(data, "--workers", workers)
    assert "cannot open the store" in said and "readonly" in said


def test_a_checkpoint_that_fails_at_stop_loses_nothing(tmp_path: Path, spawn_node: Any) -> None:
    """The log keeps what the database file could not take: a warning, status 0, and the next
    start reads the write back."""
    data = tmp_path / "data"
    proc: NodeProcess = spawn_node(data)
    body = {"values": [{"index": 1, "type": "URL", "data": "https://example.com/kept"}]}
    assert http(proc, "PUT", f"/api/handles/{PREFIX}/kept", body=body, auth=True).status == 201
    with _immutable(data / "idnode.sqlite3"):
        assert proc.terminate() == 0
    assert "could not checkpoint" in proc.stderr_path.read_text()
    again: NodeProcess = spawn_node(data)
    assert http(again, "GET", f"/api/handles/{PREFIX}/kept").status == 200
    assert again.terminate() == 0


def test_toml_config_file_drives_a_real_node(tmp_path: Path, spawn_node: Any) -> None:
    toml = write_toml(tmp_path / "node.toml", f'home = ["{PREFIX}", "88.100.3"]\nport = 1\n')
    # flags (--port 0, from the helper) beat the TOML file's port
    proc: NodeProcess = spawn_node(tmp_path / "data", home=False, extra=["--config", str(toml)])
    homed = asyncio.run(tcp_request(proc.ports["tcp"], ListHomedPrefixesRequest(request_id=1)))
    assert isinstance(homed, ListPrefixesResponse)
    assert sorted(homed.prefixes) == [PREFIX, "88.100.3"]
    assert proc.terminate() == 0


def test_serve_refuses_homing_without_a_secret(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "node",
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--http-port",
            "0",
            "--port",
            "0",
            "--home",
            PREFIX,
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 2
    assert b"needs an admin secret" in out.stderr and b"Traceback" not in out.stderr
