"""The node's one configuration object, loaded from TOML, ``IDNODE_*`` environment and CLI flags.

Later sources win: defaults < ``--config`` TOML file < environment < command-line flags. Every field
is documented by the ``doc`` in its metadata (shown by ``idnode serve --help``) and carries its unit
in its name. Port 0 means "pick a free port"; the chosen ports are logged at start.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.errors import ProtocolError
from protocol.identifiers import PROFILES, check_homeable
from protocol.messages import SiteInfo
from protocol.site import parse_address, site_of_servers


def _f(
    default: Any,
    doc: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
) -> Any:
    """A field: its one-line ``doc``, and the values it takes (``low``-``high`` inclusive for a
    number, one of ``choices`` for a text, compared case-insensitively)."""
    meta = {"doc": doc, "low": low, "high": high, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


log = logging.getLogger("idnode.config")
_PORT_LOW, _PORT_HIGH = 0, 65535


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
    http_port: int = _f(
        8000,
        "HTTP port (Handle REST API, health, metrics); 0 picks one",
        low=_PORT_LOW,
        high=_PORT_HIGH,
    )
    port: int = _f(
        2641,
        "Handle protocol port for msgpack over TCP and UDP; 0 picks one",
        low=_PORT_LOW,
        high=_PORT_HIGH,
    )
    metrics_port: int = _f(
        0,
        "second port serving only GET /metrics, for scrapers kept off the API port; "
        "0: none (GET /metrics is always on the HTTP port too)",
        low=_PORT_LOW,
        high=_PORT_HIGH,
    )
    home: list[str] = _f([], "prefix to home at start (repeatable)")
    admin_secret: str = _f("", "secret of the node admin and of homed prefixes' ADMIN handles")
    role: str = _f(
        "secondary",
        "secondary (serves its homed prefixes), toplevel (holds the 0.NA/ prefix records and "
        "refers), or recursive (holds no data; resolves anything through the hierarchy)",
        choices=("secondary", "toplevel", "recursive"),
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
        low=0.1,
    )
    heartbeat_stale_s: float = _f(
        30.0,
        "top-level: a node silent this long is reported stale (never dropped); a secondary or "
        "recursive node that did not get through to the top-level this long is not ready",
        low=0.1,
    )
    recursion_limit: int = _f(
        8, "referrals followed for one request; more: RECURSION_LIMIT (6)", low=1, high=64
    )
    hop_timeout_s: float = _f(
        1.0,
        "how long one hop of a recursive resolution may take (under the clients' 2 s, so that"
        " they hear SERVER_BUSY naming the hop rather than time out themselves)",
        low=0.001,
        high=60,
    )
    site: list[str] = _f(
        [],
        "HOST:PORT:HTTP_PORT of every server of this node's site, in order (repeatable); "
        "empty: a site of this node alone",
    )
    site_server_id: int = _f(1, "this node's position (from 1) in --site", low=1)
    case_sensitive_suffix: bool = _f(False, "compare suffixes case-sensitively")
    profile: str = _f(
        "protocol",
        "identifier limits: protocol (2048) or snms (255/64)",
        choices=("protocol", "snms"),
    )
    cache_max_bytes: int = _f(
        96 * 1024 * 1024, "bound of the resolution cache (of each worker process)", low=0
    )
    negative_cache_ttl_s: float = _f(60.0, "how long a not-found answer is cached", low=0)
    max_frame_bytes: int = _f(
        65536, "largest msgpack message accepted over TCP or UDP", low=1024, high=2**31 - 1
    )
    max_http_body_bytes: int = _f(
        1024 * 1024, "largest HTTP request body (413 above)", low=1024, high=2**31 - 1
    )
    tcp_idle_timeout_s: float = _f(
        60.0, "close a TCP connection idle, or sending one message, this long", low=0.001
    )
    http_idle_timeout_s: float = _f(
        60.0,
        "close an HTTP connection idle, or sending a request head or body, this long",
        low=0.001,
    )
    udp_queue_len: int = _f(1024, "UDP requests waiting at most; more are dropped", low=1)
    write_batch_max: int = _f(512, "most writes committed in one transaction (group commit)", low=1)
    write_batch_wait_s: float = _f(
        0.0005,
        "under concurrent writes, how long a commit waits for more writes to join it",
        low=0,
        high=1,
    )
    workers: int = _f(
        0,
        "worker processes sharing the ports and the store (SO_REUSEPORT); "
        "0: one per CPU this process may run on; 1: a single process",
        low=0,
        high=256,
    )
    shutdown_grace_s: float = _f(
        5.0, "how long in-flight requests may finish on shutdown", low=0, high=3600
    )
    site_serial: int = _f(1, "serial number of this node's site information", low=0, high=65535)
    log_level: str = _f(
        "INFO",
        "DEBUG, INFO, WARNING or ERROR",
        choices=("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"),
    )

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
                kind = _kind(known[name])
                raise ConfigError(f"{source}: {name} must be {kind}, not {raw!r}") from None
            try:
                changes[name] = _checked(known[name], changes[name])
            except ValueError:
                raise ConfigError(
                    f"{source}: {name} must be {_takes(known[name])}, not {raw!r}"
                ) from None
        return dataclasses.replace(self, **changes)

    def check(self) -> None:
        """The checks across settings (each value's own range is ``merged``'s), which a node
        would otherwise fail at its start or at its first request: ``ConfigError``."""
        if self.role == "recursive" and not self.toplevel:
            raise ConfigError("a recursive node needs the top-level node's address (--toplevel)")
        where = ""
        try:
            for prefix in self.home:
                where = f"home {prefix!r}"
                check_homeable(prefix, PROFILES[self.profile])
            where = "toplevel"
            if self.toplevel:
                parse_address(self.toplevel)
            where = "site"
            self.site_info()
        except (ValueError, ProtocolError) as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def site_info(self) -> SiteInfo | None:
        """The site of ``site`` (servers ``HOST:PORT:HTTP_PORT``), None without one;
        ValueError when malformed or ``site_server_id`` is not one of them."""
        site = site_of_servers(self.site, self.site_serial)
        if site is not None and not 1 <= self.site_server_id <= len(site.servers):
            raise ValueError(f"site_server_id must be 1-{len(site.servers)}")
        return site


class ConfigError(ValueError):
    """A setting that cannot be used: where it came from, which one, and why."""


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _kind(f: dataclasses.Field[Any]) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")


def _convert(f: dataclasses.Field[Any], raw: Any) -> Any:
    """``raw`` as the field's type: text (environment, flags) is parsed; a TOML value must
    already be of the type (``true`` is no port, ``1.9`` no count); TypeError or ValueError."""
    kind = _kind(f)
    if kind.startswith("list"):
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise TypeError(raw)
        # comma-separated in every source: IDNODE_HOME=a,b, --home a,b and home = ["a,b"] agree
        return [p.strip() for item in items for p in item.split(",") if p.strip()]
    if isinstance(raw, str):
        text = raw.strip()
        if kind == "bool":
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError(raw)
            return text.lower() in _TRUE
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        return raw
    wanted = {"bool": (bool,), "int": (int,), "float": (int, float)}.get(kind, (str,))
    if not isinstance(raw, wanted) or (isinstance(raw, bool) and kind != "bool"):
        raise TypeError(raw)
    return float(raw) if kind == "float" else raw  # type: ignore[arg-type]


def _checked(f: dataclasses.Field[Any], value: Any) -> Any:
    """``value`` within its field's range, or one of its choices as the list writes it
    (``SNMS``: ``snms``); ValueError when it is neither."""
    meta = f.metadata
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = meta.get("low"), meta.get("high")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(value)
        return value
    choices = meta.get("choices")
    if choices and isinstance(value, str):
        for choice in choices:
            if choice.upper() == value.upper():
                return choice
        raise ValueError(value)
    return value


def _takes(f: dataclasses.Field[Any]) -> str:
    """What ``f`` takes, for an error message."""
    meta = f.metadata
    if meta.get("choices"):
        return "one of " + ", ".join(meta["choices"])
    low, high = meta.get("low"), meta.get("high")
    kind = "an integer" if _kind(f) == "int" else "a finite number"
    if low is not None and high is not None:
        return f"{kind} from {low:,} to {high:,}"
    if low is not None:
        return f"{kind} of at least {low:,}"
    return kind


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per field; unset flags stay None so lower sources are kept."""
    parser.add_argument("--config", help="TOML file with settings (same names as the flags)")
    for f in Config.fields():
        flag = "--" + f.name.replace("_", "-")
        doc = f.metadata["doc"]
        kind = _kind(f)
        if kind.startswith("list"):
            parser.add_argument(flag, action="append", default=None, help=doc)
        elif kind == "bool":
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{doc} (default {'yes' if f.default else 'no'})",
            )
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
    names = {f"IDNODE_{f.name.upper()}": f.name for f in Config.fields()}
    env = {names[var]: value for var, value in environ.items() if var in names}
    for var in sorted(environ):  # other tools read IDNODE_* too: only a likely misspelling
        if var.startswith("IDNODE_") and var not in names:
            near = difflib.get_close_matches(var, names, n=1, cutoff=0.85)
            if near:
                log.warning("ignoring %s: no setting has that name; %s?", var, near[0])
    config = config.merged(env, "IDNODE_* environment")
    if args is not None:
        flags = {
            f.name: getattr(args, f.name)
            for f in Config.fields()
            if getattr(args, f.name, None) is not None
        }
        config = config.merged(flags, "flags")
    config.check()
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
