"""The node's one configuration object, loaded from TOML, ``IDNODE_*`` environment and CLI flags.

Later sources win: defaults < ``--config`` TOML file < environment < command-line flags. Every field
is documented by the ``doc`` in its metadata (shown by ``idnode serve --help``) and carries its unit
in its name. Port 0 means "pick a free port"; the chosen ports are logged at start.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _f(default: Any, doc: str, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"doc": doc, **kw})
    return field(default=default, metadata={"doc": doc, **kw})


@dataclass
class Config:
    """Settings of one node."""

    data_dir: str = _f("./data", "directory of the embedded store")
    host: str = _f("127.0.0.1", "address every transport listens on")
    advertise_host: str = _f(
        "",
        "IP address other nodes reach this one at, put in its site information (HS_SITE); "
        "empty: host (set it when host is 0.0.0.0, as in a container)",
    )
    http_port: int = _f(8000, "HTTP port (Handle REST API, health, metrics); 0 picks one")
    port: int = _f(2641, "Handle protocol port for msgpack over TCP and UDP; 0 picks one")
    metrics_port: int = _f(
        0,
        "second port serving only GET /metrics, for scrapers kept off the API port; "
        "0: none (GET /metrics is always on the HTTP port too)",
    )
    home: list[str] = _f([], "prefix to home at start (repeatable)")
    admin_secret: str = _f("", "secret of the node admin and of homed prefixes' ADMIN handles")
    role: str = _f(
        "secondary",
        "secondary (serves its homed prefixes), toplevel (holds the 0.NA/ prefix records and "
        "refers), or recursive (holds no data; resolves anything through the hierarchy)",
    )
    toplevel: str = _f(
        "",
        "HOST:PORT of the top-level node's Handle protocol port (msgpack over TCP); a secondary "
        "registers its prefixes there, a recursive node starts its walks there; empty: none",
    )
    toplevel_secret: str = _f(
        "", "secret the top-level node accepts for 300:0.NA/<prefix>; empty: admin_secret"
    )
    heartbeat_interval_s: float = _f(
        10.0,
        "how often a secondary re-registers with the top-level (its heartbeat), and a recursive "
        "node checks that the top-level answers",
    )
    heartbeat_stale_s: float = _f(
        30.0,
        "top-level: a node silent this long is reported stale (never dropped); a secondary or "
        "recursive node that did not get through to the top-level this long is not ready",
    )
    recursion_limit: int = _f(8, "referrals followed for one request; more: RECURSION_LIMIT (6)")
    hop_timeout_s: float = _f(
        1.0,
        "how long one hop of a recursive resolution may take (under the clients' 2 s, so that"
        " they hear SERVER_BUSY naming the hop rather than time out themselves)",
    )
    site: list[str] = _f(
        [],
        "HOST:PORT:HTTP_PORT of every server of this node's site, in order (repeatable); "
        "empty: a site of this node alone",
    )
    site_server_id: int = _f(1, "this node's position (from 1) in --site")
    case_sensitive_suffix: bool = _f(False, "compare suffixes case-sensitively")
    profile: str = _f("protocol", "identifier limits: protocol (2048) or snms (255/64)")
    cache_max_bytes: int = _f(96 * 1024 * 1024, "bound of the resolution cache")
    negative_cache_ttl_s: float = _f(60.0, "how long a not-found answer is cached")
    max_frame_bytes: int = _f(65536, "largest msgpack message accepted over TCP or UDP")
    max_http_body_bytes: int = _f(1024 * 1024, "largest HTTP request body (413 above)")
    tcp_idle_timeout_s: float = _f(60.0, "close a TCP connection idle this long")
    http_idle_timeout_s: float = _f(
        60.0, "close an HTTP connection idle, or sending a request head or body, this long"
    )
    udp_queue_len: int = _f(1024, "UDP requests waiting at most; more are dropped")
    write_batch_max: int = _f(512, "most writes committed in one transaction (group commit)")
    write_batch_wait_s: float = _f(
        0.0005, "under concurrent writes, how long a commit waits for more writes to join it"
    )
    workers: int = _f(
        0,
        "worker processes sharing the ports and the store (SO_REUSEPORT); "
        "0: one per CPU this process may run on; 1: a single process",
    )
    shutdown_grace_s: float = _f(5.0, "how long in-flight requests may finish on shutdown")
    site_serial: int = _f(1, "serial number of this node's site information")
    log_level: str = _f("INFO", "DEBUG, INFO, WARNING or ERROR")

    @classmethod
    def fields(cls) -> tuple[dataclasses.Field[Any], ...]:
        return dataclasses.fields(cls)

    def merged(self, values: Mapping[str, Any], source: str = "settings") -> Config:
        """A copy with ``values`` (by field name) converted to each field's type and applied;
        ``ConfigError`` naming ``source`` and the setting for one that cannot be."""
        known = {f.name: f for f in self.fields()}
        changes: dict[str, Any] = {}
        for name, raw in values.items():
            if name not in known:
                raise ConfigError(f"{source}: unknown setting {name!r}")
            try:
                changes[name] = _convert(known[name], raw)
            except (TypeError, ValueError):
                kind = known[name].type
                raise ConfigError(f"{source}: {name} must be {kind}, not {raw!r}") from None
        return dataclasses.replace(self, **changes)


class ConfigError(ValueError):
    """A setting that cannot be used: where it came from, which one, and why."""


def _convert(f: dataclasses.Field[Any], raw: Any) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    if kind.startswith("list"):
        if isinstance(raw, str):
            return [p.strip() for p in raw.split(",") if p.strip()]
        return [str(x) for x in raw]
    if kind == "bool":
        if isinstance(raw, str):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        return bool(raw)
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    return str(raw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per field; unset flags stay None so lower sources are kept."""
    parser.add_argument("--config", help="TOML file with settings (same names as the flags)")
    for f in Config.fields():
        flag = "--" + f.name.replace("_", "-")
        doc = f.metadata["doc"]
        kind = f.type if isinstance(f.type, str) else ""
        if kind.startswith("list"):
            parser.add_argument(flag, action="append", default=None, help=doc)
        elif kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=doc)
        else:
            parser.add_argument(flag, default=None, help=f"{doc} (default {f.default!r})")


def load(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Defaults, then the TOML file, then ``IDNODE_*`` variables, then flags."""
    environ = os.environ if environ is None else environ
    config = Config()
    path = getattr(args, "config", None) or environ.get("IDNODE_CONFIG")
    if path:
        try:
            with Path(path).open("rb") as fh:
                settings = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        config = config.merged(settings, f"config file {path}")
    env = {
        f.name: environ[f"IDNODE_{f.name.upper()}"]
        for f in Config.fields()
        if f"IDNODE_{f.name.upper()}" in environ
    }
    config = config.merged(env, "IDNODE_* environment")
    if args is not None:
        flags = {
            f.name: getattr(args, f.name)
            for f in Config.fields()
            if getattr(args, f.name, None) is not None
        }
        config = config.merged(flags, "flags")
    return config


def worker_count(config: Config) -> int:
    """``config.workers``, with 0 resolved to the CPUs this process may run on."""
    if config.workers > 0:
        return config.workers
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def parse(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Config:
    """Parse flags only (for tests and embedding)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return load(parser.parse_args(list(argv)), environ)
