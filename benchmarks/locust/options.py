"""Command-line flags of the idnode locustfile and the run context built from them.

Flags are Locust custom arguments (``events.init_command_line_parser``), so they also come from
Locust config files (``--config``) and the web UI, and a master passes them to its workers; of the
environment, only ``IDNODE_MANIFEST``, ``IDNODE_WORKLOAD_FILE`` and ``IDNODE_ADMIN_SECRET`` are
read (Locust reads no ``LOCUST_*`` variable for a custom argument that does not name one).
Workload flags default to ``None`` so that ``--workload-file`` (TOML) values apply unless a flag
overrides them. ``context(environment)`` loads the manifest once per process, when the first user
(or the validation at start) asks for it; ``recursive_context(environment)`` is the same for the
recursive users (``benchmarks.locust.recursive``: the recursive node and the keys of several
manifests).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import urlsplit

from locust.env import Environment

from benchmarks.locust import manifest as manifest_mod
from benchmarks.locust import recursive
from benchmarks.locust.workload import (
    FLAG_NAMES,
    POPULARITY,
    KeySpace,
    Workload,
    WorkloadError,
    load_toml,
)

DEFAULT_PORT = 2641  #: the node's msgpack port (TCP and UDP) when none is given


def _positive(kind: type[int] | type[float]) -> Any:
    """An argparse ``type`` taking a finite number above 0 (the ladder would otherwise run a step
    of another size than asked, without a word)."""

    def parse(text: str) -> int | float:
        try:
            number = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not 0 < number < math.inf:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text!r}")
        return number

    return parse


def add_arguments(parser: Any) -> None:
    """Register the flags on Locust's parser (a ``LocustArgumentParser``)."""
    # where the keys and the secrets come from
    parser.add_argument(
        "--manifest",
        env_var="IDNODE_MANIFEST",
        default=None,
        help="seed manifest JSON written by `idnode seed` (<data_dir>/manifest.json)",
    )
    parser.add_argument(
        "--workload-file",
        env_var="IDNODE_WORKLOAD_FILE",
        default=None,
        help="TOML file of workload settings (keys as the flags, with underscores); flags win",
    )
    parser.add_argument(
        "--admin-secret",
        env_var="IDNODE_ADMIN_SECRET",
        default="",
        is_secret=True,
        help="secret of the 300:<prefix>/ADMIN identities, for creates, modifies and deletes",
    )
    # where the msgpack front doors are (HTTP uses --host)
    parser.add_argument(
        "--msgpack-host",
        default=None,
        help="host of the msgpack TCP/UDP port (default: the host of --host, else 127.0.0.1)",
    )
    parser.add_argument("--tcp-port", type=int, default=DEFAULT_PORT, help="msgpack TCP port")
    parser.add_argument("--udp-port", type=int, default=DEFAULT_PORT, help="msgpack UDP port")
    # the workload model
    parser.add_argument(
        "--mix",
        default=None,
        help="operation weights, e.g. resolve=90,create=8,modify=1,delete=1 (the default)",
    )
    parser.add_argument(
        "--popularity",
        choices=POPULARITY,
        default=None,
        help="key popularity: uniform, zipf (default; ranks by manifest popularity), manifest",
    )
    parser.add_argument("--zipf-s", type=float, default=None, help="Zipf exponent s (default 1.0)")
    parser.add_argument(
        "--not-found-share",
        type=float,
        default=None,
        help="share of lookups of keys that do not exist, 0..1 (default 0.05)",
    )
    parser.add_argument(
        "--cross-share",
        type=float,
        default=None,
        help="share of lookups of other prefixes than the user's home prefix, 0..1 (default 0.1)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="identifiers one create task registers in a row (default 1)",
    )
    parser.add_argument(
        "--rate-per-user",
        type=float,
        default=None,
        help="open model: requests per second per user at fixed intervals, latency also from "
        "the scheduled start (reported as '<op> [scheduled]'); 0 (default): closed loop",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=None,
        help="msgpack clients: seconds to wait for an answer (default 2)",
    )
    # the step ladder (benchmarks/locust/ladder.py, only when that file is given with -f)
    parser.add_argument(
        "--ladder-step-users", type=_positive(int), default=10, help="users added per step"
    )
    parser.add_argument(
        "--ladder-step-time", type=_positive(float), default=30.0, help="seconds between steps"
    )
    parser.add_argument(
        "--ladder-max-users",
        type=_positive(int),
        default=100,
        help="the last step; held one step, then stop",
    )
    # generator saturation
    parser.add_argument(
        "--cpu-warn-percent",
        type=float,
        default=90.0,
        help="flag a generator process whose CPU use (one core = 100) goes above this",
    )
    # the recursive node (the Recursive* users)
    recursive.add_arguments(parser)


#: parsed option (the flag with underscores) -> workload field
_WORKLOAD_FLAGS = {FLAG_NAMES.get(f.name, f.name): f.name for f in fields(Workload)}


@dataclass(frozen=True)
class Settings:
    """Everything a run needs besides Locust's own options."""

    workload: Workload
    manifest_path: str
    admin_secret: str
    msgpack_host: str
    tcp_port: int
    udp_port: int


def workload_of(options: Any) -> tuple[Workload, dict[str, Any]]:
    """The workload of parsed options (TOML first, flags over it) and the TOML's other keys."""
    workload, extra = Workload(), dict[str, Any]()
    if getattr(options, "workload_file", None):
        workload, extra = load_toml(options.workload_file)
    overrides = {field: getattr(options, flag, None) for flag, field in _WORKLOAD_FLAGS.items()}
    return workload.with_overrides(overrides), extra


def configured(options: Any) -> bool:
    """Whether the node users have a manifest (flag or TOML); a broken TOML counts as one, so
    that checking it reports the problem."""
    if options is None:
        return False
    if getattr(options, "manifest", None):
        return True
    try:
        return bool(workload_of(options)[1].get("manifest"))
    except WorkloadError:
        return True


def settings(options: Any, host: str | None) -> Settings:
    """Settings from parsed options (TOML first, flags over it); raises ``WorkloadError``."""
    workload, extra = workload_of(options)
    manifest_path = getattr(options, "manifest", None) or extra.get("manifest")
    if not manifest_path:
        raise WorkloadError("no seed manifest: give --manifest PATH (or manifest = in the TOML)")
    msgpack_host = getattr(options, "msgpack_host", None) or (
        urlsplit(host).hostname if host else None
    )
    return Settings(
        workload=workload,
        manifest_path=str(manifest_path),
        admin_secret=getattr(options, "admin_secret", "") or "",
        msgpack_host=msgpack_host or "127.0.0.1",
        tcp_port=int(getattr(options, "tcp_port", DEFAULT_PORT)),
        udp_port=int(getattr(options, "udp_port", DEFAULT_PORT)),
    )


@dataclass(frozen=True)
class Context:
    """Settings plus the loaded manifest and its key space (one per process)."""

    settings: Settings
    keys: KeySpace

    @property
    def workload(self) -> Workload:
        return self.settings.workload


_contexts: dict[int, Context] = {}


def context(environment: Environment) -> Context:
    """The run context of ``environment``, built on first use; raises ``WorkloadError``/``ManifestError``."""
    key = id(environment)
    found = _contexts.get(key)
    if found is None:  # built without a cooperative switch: no two greenlets build it
        found = _contexts[key] = build(environment)
    return found


def build(environment: Environment) -> Context:
    chosen = settings(environment.parsed_options, environment.host)
    if chosen.workload.writes and not chosen.admin_secret:
        raise WorkloadError(
            "the mix writes but no admin secret was given: --admin-secret or IDNODE_ADMIN_SECRET"
            " (or a mix without create/modify/delete)"
        )
    loaded = manifest_mod.load(chosen.manifest_path)
    return Context(chosen, KeySpace(loaded, chosen.workload))


@dataclass(frozen=True)
class RecursiveContext(Context):
    """The recursive users' context: ``settings`` point at the recursive node (``msgpack_host``,
    ``tcp_port``, ``udp_port``), ``keys`` are those of every manifest, the mix only resolves."""

    target: recursive.Target | None = None

    @property
    def http_url(self) -> str | None:
        return self.target.http_url if self.target is not None else None


_recursive_contexts: dict[int, RecursiveContext] = {}


def recursive_context(environment: Environment) -> RecursiveContext:
    """The recursive users' run context, built on first use; raises ``WorkloadError`` (no
    recursive node configured, a bad topology) or ``ManifestError``."""
    key = id(environment)
    found = _recursive_contexts.get(key)
    if found is None:
        found = _recursive_contexts[key] = build_recursive(environment)
    return found


def build_recursive(environment: Environment) -> RecursiveContext:
    parsed = environment.parsed_options
    where = recursive.target(parsed)
    workload, _ = workload_of(parsed)
    workload = replace(workload, mix={"resolve": 1.0})  # a recursive node holds nothing to write
    loaded = recursive.merge([manifest_mod.load(p) for p in where.manifests])
    chosen = Settings(
        workload=workload,
        manifest_path=",".join(where.manifests),
        admin_secret="",
        msgpack_host=where.host,
        tcp_port=where.tcp_port,
        udp_port=where.udp_port,
    )
    return RecursiveContext(chosen, KeySpace(loaded, workload), where)


def reset(environment: Environment) -> None:
    """Forget the contexts (a new test in the web UI may come with new options)."""
    _contexts.pop(id(environment), None)
    _recursive_contexts.pop(id(environment), None)


def worker_offset(environment: Environment) -> int:
    """This process's index among workers (0 when alone), to spread homes across workers."""
    index = getattr(environment.runner, "worker_index", 0)
    return index if isinstance(index, int) and index > 0 else 0
