"""``idnode topology up|status|down``: an emulated national topology on this machine.

Operators size the hierarchy, not only one node: a top-level node holding the industry prefixes,
one secondary node per industry (165 and more: the real system had 156 in 2021 and 380+ in 2024),
and a recursive node resolving anything through them. ``up`` starts them all on 127.0.0.1:

- the top-level node, its own process: ``python -m node serve --role toplevel``;
- the secondary nodes, seeded first (``node.seed``, their own industry only: real industries of
  ``node.industries`` first, then synthetic ones from code 201, see ``synthetic_industry`` there)
  and run several to a process by ``node.topohost`` (an interpreter costs about 40 MB, a node
  about 1); each homes ``88.<industry>`` and its enterprise prefixes and registers with the
  top-level;
- the recursive node, its own process, starting its walks at the top-level.

Every process is detached (its own session, logs in ``D/logs``) so the topology outlives ``up``.
``D/topology.json`` says where everything is (ports, pids, data dirs, seed manifests for load
tests) and is rewritten as processes start, so ``down`` can stop even what a failed ``up`` left;
``D/running`` marks a topology as running. A failing ``up`` stops what it started, and so does one
that SIGINT, SIGTERM or SIGHUP stops (a second signal does not cut that short); only a topology
whose ``state`` is ``up`` is up. Every ``up`` starts the top-level and recursive nodes on empty
stores (their registrations are the secondaries' of this ``up``, which register at start); a
secondary keeps its data dir when its seed manifest describes the data asked for (the same seed,
identifiers and enterprises, and the same admin secret), else it is emptied and seeded again.
Processes are named by pid and start time (``node.processes``): a reused pid is never signalled.
``status`` (``node.topocli``) asks every node's ``/healthz`` and the top-level's delegations.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node import industries, seed
from node.config import Config, ConfigError
from node.processes import STOP_TIMEOUT_S, alive, start_time, stop_processes

DEFAULT_DIR = "./topology"
DEFAULT_SECRET = "idnode-topology-secret"  #: an emulation secret, the same for every node
TOPOLOGY = "topology.json"
MARKER = "running"
HOST = "127.0.0.1"
LISTENING = re.compile(r"idnode listening on (\S+): http=(\d+) tcp=(\d+) udp=(\d+)")
_ROOT = Path(__file__).resolve().parents[1]  #: ``python -m node`` works from here, even uninstalled


class TopologyError(Exception):
    """Why ``up`` or ``down`` failed; printed on stderr, exit status 1."""


@dataclass(frozen=True)
class Options:
    """What ``up`` starts; recorded in ``topology.json``."""

    secondaries: int = len(industries.INDUSTRIES)
    identifiers_per_node: int = 500
    enterprises_per_industry: int = 3
    nodes_per_process: int = 0  #: 0: the secondaries spread evenly over the CPUs
    admin_secret: str = DEFAULT_SECRET
    seed: int = 1
    cache_bytes: int = 16 * 1024 * 1024  #: each secondary's resolution cache bound
    log_level: str = "INFO"
    start_timeout_s: float = 0.0  #: 0: from the work each host process has to do
    recursive_port: int = 0  #: the recursive node's Handle port (3641 nationally); 0: any free


def industry_codes(count: int) -> tuple[str, ...]:
    """The industries of ``count`` secondary nodes: the real ones first, then synthetic ones."""
    real = tuple(i.code for i in industries.INDUSTRIES)
    return real[:count] + industries.synthetic_codes(max(0, count - len(real)))


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def nodes_per_process(options: Options) -> int:
    if options.nodes_per_process > 0:
        return options.nodes_per_process
    return max(1, math.ceil(options.secondaries / _cpus()))


def secondary_entries(root: Path, options: Options, toplevel: str) -> list[dict[str, Any]]:
    """One host-spec entry per secondary: its name, industry, ``Config`` fields and seed."""
    entries = []
    for code in industry_codes(options.secondaries):
        industry = industries.industry_by_code(code)
        spec = seed.SeedSpec(
            seed=options.seed * 100_003 + int(code),  # per node: its enterprises differ
            identifiers=options.identifiers_per_node,
            industries=(code,),
            enterprises_per_industry=options.enterprises_per_industry,
        )
        entries.append(
            {
                "name": f"secondary-{code}",
                "industry": code,
                "industry_name": industry.name,
                "config": {
                    "data_dir": str(root / "nodes" / code),
                    "host": HOST,
                    "http_port": 0,
                    "port": 0,
                    "home": [industry.prefix],  # the enterprise prefixes: homed by the seed
                    "admin_secret": options.admin_secret,
                    "role": "secondary",
                    "toplevel": toplevel,
                    "cache_max_bytes": options.cache_bytes,
                    "shutdown_grace_s": 2.0,
                    "log_level": options.log_level,
                },
                "seed": asdict(spec),
            }
        )
    return entries


class Launched:
    """The processes ``up`` started, each written to ``topology.json`` as soon as it runs."""

    def __init__(self, root: Path, record: dict[str, Any]) -> None:
        self.root = root
        self.record = record
        self.popens: list[subprocess.Popen[bytes]] = []

    def spawn(self, role: str, name: str, args: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = self.root / "logs" / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
        env["PYTHONUNBUFFERED"] = "1"
        with log_path.open("ab") as log:
            log.write(f"--- {datetime.now(UTC).isoformat()} topology up\n".encode())
            offset = log.tell()
            proc = subprocess.Popen(
                [sys.executable, "-m", "node", *args],
                cwd=_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # detached: a Ctrl-C at the terminal does not reach it
            )
        self.popens.append(proc)
        self.record["processes"].append(
            {
                "pid": proc.pid,
                "start_time": start_time(proc.pid),
                "role": role,
                "name": name,
                "log": str(log_path),
                "log_offset": offset,
            }
        )
        write_record(self.root, self.record)
        return proc, log_path

    def stop_all(self) -> None:
        """Stop every process started (they are our children here: reap them too), even one an
        interrupt kept out of the record."""
        known = {p["pid"] for p in self.record["processes"]}
        unknown = [{"pid": p.pid} for p in self.popens if p.pid not in known]
        stop_processes(self.record["processes"] + unknown)
        for proc in self.popens:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass


def _log_tail(path: Path, offset: int = 0, size: int = 3000) -> str:
    try:
        data = path.read_bytes()[offset:]
    except OSError:
        return ""
    return data[-size:].decode(errors="replace")


def _wait(
    what: str, done: Callable[[], Any], procs: list[tuple[subprocess.Popen[bytes], Path, int]],
    timeout_s: float,
) -> Any:  # fmt: skip
    """Poll ``done()`` until it answers (not None); fails when a process of ``procs`` exits or the
    time is up, showing the end of that process's log."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = done()
        if found is not None:
            return found
        for proc, log, offset in procs:
            if proc.poll() is not None:
                raise TopologyError(
                    f"{what}: process {proc.pid} exited with status {proc.returncode};"
                    f" end of {log}:\n{_log_tail(log, offset)}"
                )
        if time.monotonic() > deadline:
            logs = "".join(f"\nend of {log}:\n{_log_tail(log, o, 1500)}" for _, log, o in procs)
            raise TopologyError(f"{what}: not done within {timeout_s:.0f} s{logs}")
        time.sleep(0.1)


def _listening(log: Path, offset: int) -> Callable[[], dict[str, int] | None]:
    def check() -> dict[str, int] | None:
        m = LISTENING.search(_log_tail(log, offset, 1 << 20))
        if m is None:
            return None
        return {"http": int(m.group(2)), "tcp": int(m.group(3)), "udp": int(m.group(4))}

    return check


def http_json(url: str, timeout_s: float = 2.0) -> Any:
    """GET ``url`` and decode its JSON body; raises ``OSError`` or ``ValueError`` on failure
    (``urllib.error.HTTPError``, an ``OSError``, for a status of 400 and above)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def delegations(toplevel_http: int, timeout_s: float = 2.0) -> dict[str, str] | None:
    """The top-level's view, prefix (upper case) -> alive or stale; None where it has no
    ``/api/delegations`` (a node without roles) or does not answer."""
    try:
        body = http_json(f"http://{HOST}:{toplevel_http}/api/delegations", timeout_s)
        return {str(d["prefix"]).upper(): str(d["state"]) for d in body["delegations"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- topology.json -------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_record(root: Path) -> dict[str, Any] | None:
    record: dict[str, Any] | None = read_json(root / TOPOLOGY)
    return record


def write_record(root: Path, record: dict[str, Any]) -> None:
    path = root / TOPOLOGY
    partial = path.with_name(TOPOLOGY + ".part")
    partial.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(partial, path)


def running_pids(root: Path) -> list[int]:
    """Processes of the topology in ``root`` that still run."""
    record = read_record(root) or {}
    return [p["pid"] for p in record.get("processes", ()) if alive(p["pid"], p.get("start_time"))]


def _node(
    role: str, name: str, ports: dict[str, int], pid: int, config: dict[str, Any]
) -> dict[str, Any]:
    return {
        "role": role,
        "name": name,
        "prefixes": [],
        "host": HOST,
        "ports": {k: ports[k] for k in ("http", "tcp", "udp")},
        "pid": pid,
        "data_dir": config["data_dir"],
    }


# -- up ------------------------------------------------------------------------------------------


def _claim(root: Path) -> None:
    """Create the running marker, refusing while a topology runs in ``root``."""
    marker = root / MARKER
    if marker.exists():
        pids = running_pids(root)
        if pids:
            raise TopologyError(
                f"a topology is already running in {root} (pids {' '.join(map(str, pids))});"
                f" stop it first: idnode topology down --dir {root}"
            )
        print(f"topology: the last topology in {root} is not running any more", file=sys.stderr)
        marker.unlink(missing_ok=True)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError as exc:  # another ``up`` got here first
        raise TopologyError(f"another topology up is starting in {root}") from exc
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)


def check(options: Options) -> None:
    """Refuse what ``up`` could only fail on once processes run: ``TopologyError``, one line."""
    most = len(industries.INDUSTRIES) + industries.SYNTHETIC_LAST - industries.SYNTHETIC_FIRST + 1
    if not 1 <= options.secondaries <= most:
        raise TopologyError(f"--secondaries must be 1 to {most}")
    if options.identifiers_per_node < 0:
        raise TopologyError("--identifiers-per-node must be 0 or more")
    if not 1 <= options.enterprises_per_industry <= seed.MAX_ENTERPRISES:
        raise TopologyError(f"--enterprises-per-industry must be 1 to {seed.MAX_ENTERPRISES}")
    if options.nodes_per_process < 0:
        raise TopologyError("--nodes-per-process must be 0 (spread over the CPUs) or more")
    if not 0 <= options.recursive_port <= 65535:
        raise TopologyError("--recursive-port must be 0 (any free) to 65535")
    if not (math.isfinite(options.start_timeout_s) and options.start_timeout_s >= 0):
        raise TopologyError("--start-timeout-s must be more than 0 (0: from the work)")
    if not options.admin_secret:
        raise TopologyError("homing prefixes needs an admin secret (--admin-secret)")
    if options.cache_bytes < 0:
        raise TopologyError("--cache-mb must be 0 or more")
    try:  # as every node will check it
        Config().merged({"log_level": options.log_level}, "--log-level")
    except ConfigError as exc:
        raise TopologyError(str(exc)) from None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def _signals(handler: Any) -> Iterator[None]:
    """``handler`` for SIGINT, SIGTERM and SIGHUP while in the block, but for a signal ignored
    already (``nohup``, a background job) (only the main thread can handle signals: elsewhere,
    nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = {sig: signal.getsignal(sig) for sig in sigs}
    for sig in sigs:
        if handler is signal.SIG_IGN or before[sig] is not signal.SIG_IGN:
            signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)


def up(root: Path, options: Options) -> dict[str, Any]:
    """Start the topology of ``options`` in ``root``; returns the record written to
    ``topology.json``. On failure, or SIGINT, SIGTERM or SIGHUP, stops what it started and raises
    ``TopologyError``."""
    check(options)
    started = time.monotonic()
    root = root.resolve()
    try:
        for sub in ("logs", "run", "nodes"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        _claim(root)
    except OSError as exc:
        raise TopologyError(f"cannot use {root}: {exc.strerror or exc}") from None
    previous = read_record(root)
    record: dict[str, Any] = {
        "version": 1,
        "state": "starting",
        "dir": str(root),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "admin_secret": options.admin_secret,
        "options": asdict(options),
        "processes": [],
        "nodes": [],
    }
    launched = Launched(root, record)
    # an ``up`` stopped by its terminal (SIGHUP), a timeout or a supervisor (SIGTERM) must stop
    # what it started as Ctrl-C does: its processes are detached and would run on, half started
    with _signals(_interrupt):
        try:
            write_record(root, record)
            _empty_stores(root, options, previous)
            _start(root, options, record, launched)
            record["state"] = "up"
            record["up_seconds"] = round(time.monotonic() - started, 2)
            write_record(root, record)
        except BaseException as exc:
            with _signals(signal.SIG_IGN):  # an impatient second Ctrl-C would leave them running
                if isinstance(exc, KeyboardInterrupt):
                    print(
                        "idnode topology up: interrupted; stopping...", file=sys.stderr, flush=True
                    )
                launched.stop_all()
                record["state"] = "failed"
                write_record(root, record)
                (root / MARKER).unlink(missing_ok=True)
            if isinstance(exc, KeyboardInterrupt):
                raise TopologyError("interrupted; everything started was stopped") from exc
            raise
    return record


def _empty_stores(root: Path, options: Options, previous: dict[str, Any] | None) -> None:
    """Empty what a topology run before in ``root`` left and this one must not serve: the
    top-level's delegations (a secondary gone would stay there, stale, for ever) and the recursive
    node's store, always; a secondary's data dir unless it holds what this one asks for."""
    same_secret = previous is None or previous.get("admin_secret") == options.admin_secret
    dirs = [root / "toplevel", root / "recursive"]
    for entry in secondary_entries(root, options, ""):
        data_dir = Path(entry["config"]["data_dir"])
        manifest = read_json(data_dir / seed.MANIFEST) if same_secret else None
        if manifest is None or not seed.describes(
            manifest, seed.make_plan(seed.SeedSpec.from_json(entry["seed"]))
        ):
            dirs.append(data_dir)
    for path in dirs:
        if path.is_dir():  # anything else there is no store: starting the node says why
            try:
                shutil.rmtree(path)
            except OSError as exc:
                raise TopologyError(f"cannot empty {path}: {exc.strerror or exc}") from None


def _serve(launched: Launched, role: str, options: Options, *extra: str) -> dict[str, Any]:
    """Start ``idnode serve --role ROLE`` (one process of one node), wait for its ports."""
    data_dir = launched.root / role
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "serve", "--role", role, "--workers", "1", "--data-dir", str(data_dir), "--host", HOST,
        "--port", "0", "--http-port", "0", "--admin-secret", options.admin_secret,
        "--log-level", options.log_level, *extra,
    ]  # fmt: skip
    proc, log = launched.spawn(role, role, args)
    offset = launched.record["processes"][-1]["log_offset"]
    timeout = options.start_timeout_s or 60.0
    ports = _wait(f"the {role} node", _listening(log, offset), [(proc, log, offset)], timeout)
    node = _node(role, role, ports, proc.pid, {"data_dir": str(data_dir)})
    launched.record[role] = node
    launched.record["nodes"].append(node)
    write_record(launched.root, launched.record)
    return node


def _start(root: Path, options: Options, record: dict[str, Any], launched: Launched) -> None:
    target = f"{HOST}:{_serve(launched, 'toplevel', options)['ports']['tcp']}"

    entries = secondary_entries(root, options, target)
    per = nodes_per_process(options)
    hosts = []
    for n, first in enumerate(range(0, len(entries), per)):
        group = entries[first : first + per]
        name = f"host-{n + 1}"
        ports_file = root / "run" / f"{name}.ports.json"
        ports_file.unlink(missing_ok=True)
        spec_file = root / "run" / f"{name}.spec.json"
        spec = {"nodes": group, "ports_file": str(ports_file), "log_level": options.log_level}
        spec_file.write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
        proc, log = launched.spawn("host", name, ["topology", "host", "--spec", str(spec_file)])
        record["processes"][-1]["nodes"] = [e["name"] for e in group]
        hosts.append((proc, log, record["processes"][-1]["log_offset"], ports_file, group))
    write_record(root, record)
    # seeding and starting, one node after the other; the hosts share the CPUs
    work_s = per * (0.5 + options.identifiers_per_node / 5000) * max(1, len(hosts) / _cpus())
    timeout = options.start_timeout_s or 60.0 + work_s

    def ready() -> list[Any] | None:
        reports = [read_json(ports_file) for _, _, _, ports_file, _ in hosts]
        return None if None in reports else reports

    reports = _wait(
        f"{len(entries)} secondary nodes in {len(hosts)} processes",
        ready,
        [(p, log, off) for p, log, off, _, _ in hosts],
        timeout,
    )
    for (proc, _, _, _, group), report in zip(hosts, reports, strict=True):
        for entry, got in zip(group, report["nodes"], strict=True):
            node = _node("secondary", entry["name"], got["ports"], proc.pid, entry["config"])
            node.update(
                industry=entry["industry"],
                industry_name=entry["industry_name"],
                prefixes=_industry_first(entry["config"]["home"][0], got["prefixes"]),
                manifest=got["manifest"],
            )
            record["nodes"].append(node)
    write_record(root, record)

    port = ["--port", str(options.recursive_port)] if options.recursive_port else []
    _serve(launched, "recursive", options, "--toplevel", target, *port)
    record["manifests"] = {n["name"]: n["manifest"] for n in record["nodes"] if n.get("manifest")}
    write_record(root, record)
    _wait_registered(record, options.start_timeout_s or 30.0 + 0.2 * len(entries))


def _industry_first(industry: str, prefixes: list[str]) -> list[str]:
    return [industry] + [p for p in prefixes if p.upper() != industry.upper()]


def _wait_registered(record: dict[str, Any], timeout_s: float) -> None:
    """Wait until the top-level lists every secondary's industry prefix as alive (skipped when it
    has no ``/api/delegations``): a topology ``up`` returns is one that resolves end to end."""
    http = record["toplevel"]["ports"]["http"]
    if delegations(http) is None:
        return
    wanted = {n["prefixes"][0].upper() for n in record["nodes"] if n["role"] == "secondary"}
    deadline = time.monotonic() + timeout_s
    while True:
        seen = delegations(http) or {}
        missing = sorted(p for p in wanted if seen.get(p) != "alive")
        if not missing:
            return
        if time.monotonic() > deadline:
            host = next(p for p in record["processes"] if p["role"] == "host")
            raise TopologyError(
                f"{len(missing)} secondary nodes not registered with the top-level within"
                f" {timeout_s:.0f} s: {', '.join(missing[:10])}; end of {host['log']}:\n"
                + _log_tail(Path(host["log"]), host["log_offset"], 2000)
            )
        time.sleep(0.2)


# -- down ----------------------------------------------------------------------------------------


def down(root: Path, timeout_s: float = STOP_TIMEOUT_S) -> tuple[int, float]:
    """Stop every process of the topology in ``root``; returns (processes stopped, seconds).
    Idempotent: nothing running is nothing to do. Raises ``TopologyError`` if any survives."""
    started = time.monotonic()
    root = root.resolve()
    record = read_record(root)
    if record is None:
        (root / MARKER).unlink(missing_ok=True)
        return 0, 0.0
    procs = record.get("processes", [])
    live = [p for p in procs if alive(p["pid"], p.get("start_time"))]
    left = stop_processes(live, timeout_s)
    if left:
        raise TopologyError(f"processes still running after SIGKILL: {left}")
    if record.get("state") != "down":
        record["state"] = "down"
        record["stopped_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_record(root, record)
    (root / MARKER).unlink(missing_ok=True)
    return len(live), time.monotonic() - started
