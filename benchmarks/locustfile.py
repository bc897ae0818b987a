"""Locust load on an idnode node through every front door, with a workload model and a seed manifest.

Users (name one or more at the end of the command line to run only those; all run by default, in
equal numbers):

- ``HttpApiUser``: the Handle.net REST API with FastHttpUser: ``GET /api/handles/{h}``,
  ``PUT /api/handles/{h}?overwrite=false`` (create), ``PUT ...?index=1`` (modify), ``DELETE``,
  writes with ``Authorization: Basic`` ``300%3A<prefix>/ADMIN`` and the admin secret.
- ``MsgpackTcpUser`` and ``MsgpackUdpUser``: the msgpack protocol (protocol/SPEC.md) over TCP and
  UDP with a blocking client on ``protocol.wire``; a truncated UDP answer is asked again over TCP
  (``resolve via TCP``).
- ``RecursiveTcpUser``, ``RecursiveUdpUser`` and ``RecursiveHttpUser``: a recursive node
  (``idnode serve --role recursive``), which resolves anything by walking top-level -> secondary:
  they only resolve, keys of every secondary node's manifest (cross-industry), and report
  ``recursive resolve`` and ``recursive resolve (not found)``. They run only when a recursive node
  is configured (``--topology`` or ``--recursive-port``; ``RecursiveHttpUser`` also needs its HTTP
  port); then, without ``--manifest``, they run alone.

Statistics are per operation (``resolve``, ``resolve (not found)``, ``create``, ``modify``,
``delete``), typed by HTTP method or ``TCP``/``UDP``; an unexpected response code is a failure
whose message starts ``response code <code> <NAME>`` (e.g. ``response code 301
SERVER_NOT_RESPONSIBLE`` for a prefix the node does not home). Keys come from the seed manifest
(``idnode seed`` writes ``<data_dir>/manifest.json``); creates mint fresh suffixes under the
manifest's enterprise prefixes, and modifies and deletes touch only what the same user created.

Run (headless, closed loop, 30 users, 60 s)::

    locust -f benchmarks/locustfile.py --headless -u 30 -r 10 -t 60s \\
        --host http://127.0.0.1:8000 --tcp-port 2641 --udp-port 2641 \\
        --manifest data/manifest.json --admin-secret "$IDNODE_ADMIN_SECRET" --csv out/run

The recursive node of a running topology (``idnode topology up --dir topology``)::

    locust -f benchmarks/locustfile.py --headless -u 30 -r 10 -t 60s \\
        --topology topology/topology.json --cross-share 0.5 --csv out/recursive

or of one named by hand (keys of several manifests, comma-separated; name users to pick them)::

    locust -f benchmarks/locustfile.py --headless -u 30 -r 10 -t 60s \\
        --recursive-host 127.0.0.1 --recursive-port 3641 --recursive-http-port 8080 \\
        --recursive-manifest n118/manifest.json,n101/manifest.json \\
        RecursiveTcpUser RecursiveHttpUser

Workload (flags, or the same names with underscores in a TOML ``--workload-file``; flags win)::

    --mix resolve=90,create=8,modify=1,delete=1   operation weights (this is the default)
    --popularity zipf --zipf-s 1.0                 key popularity: uniform | zipf | manifest
    --not-found-share 0.05 --cross-share 0.1       lookups of missing keys / of other prefixes
    --batch-size 1                                 identifiers one create task registers in a row
    --rate-per-user 0                              > 0: open model, requests per second per user
    --request-timeout 2                            msgpack answer timeout, seconds

    # workload.toml
    mix = {resolve = 80, create = 18, modify = 1, delete = 1}
    popularity = "zipf"
    zipf_s = 1.2
    batch_size = 20
    manifest = "../data/manifest.json"             # relative to the TOML file

Open model (``--rate-per-user R``): each user sends at fixed intervals of 1/R s whatever the
answers take, and reports each request twice: from its actual send under the operation name, and
from its scheduled start under ``<op> [scheduled]`` (corrected for coordinated omission: a slow
answer delays the next sends, and the delay is counted). Note that Locust's ``Aggregated`` row then
counts each request twice; read the per-name rows.

Step ladder (users step up every N seconds to a max, then the test stops by itself): add the shape
file with ``-f``::

    locust -f benchmarks/locustfile.py,benchmarks/locust/ladder.py --headless \\
        --ladder-step-users 20 --ladder-step-time 30 --ladder-max-users 200 ...

Every core: one Locust process drives about one core (gevent), and Locust's FastHttpUser tops out
per core, so a generator that measures a fast node needs several processes:

- ``--processes -1``: a master and one worker per core, forked on this machine (``--processes N``
  for N workers); everything else on the command line is the same;
- on several machines: ``locust -f benchmarks/locustfile.py --master --expect-workers N ...`` on
  one, ``locust -f - --worker --master-host MASTER`` on the others (the workers fetch the locustfile
  and receive these flags from the master; the manifest path must exist on every machine).

Each process samples its CPU use; at the end the master prints one ``generator CPU`` line per
process and a ``WARNING generator CPU saturated`` line when a process spent a tenth of its samples
above ``--cpu-warn-percent`` (90): such a run measured the generator, add processes. With ``--csv
PREFIX`` the figures also go to ``PREFIX_generator_cpu.csv``. Say in every figure which generator,
how many processes, and whether the model was open or closed.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import gevent
from locust import User, events
from locust.env import Environment
from locust.runners import WorkerRunner

from benchmarks.locust import cpu, options, recursive
from benchmarks.locust.manifest import ManifestError
from benchmarks.locust.users import (
    HttpApiUser,
    MsgpackTcpUser,
    MsgpackUdpUser,
    RecursiveHttpUser,
    RecursiveMixin,
    RecursiveTcpUser,
    RecursiveUdpUser,
)
from benchmarks.locust.workload import WorkloadError, summary

__all__ = [
    "HttpApiUser",
    "MsgpackTcpUser",
    "MsgpackUdpUser",
    "RecursiveHttpUser",
    "RecursiveTcpUser",
    "RecursiveUdpUser",
]

log = logging.getLogger("idnode.locust")


def _add_flags(parser: Any, **_: Any) -> None:
    options.add_arguments(parser)


def _describe(environment: Environment) -> str:
    ctx = options.context(environment)
    s = ctx.settings
    target = f"msgpack {s.msgpack_host} tcp={s.tcp_port} udp={s.udp_port}, http {environment.host}"
    return summary(ctx.workload, ctx.keys.manifest, [target])


def _describe_recursive(environment: Environment) -> str:
    ctx = options.recursive_context(environment)
    where = ctx.target.describe() if ctx.target is not None else "recursive"
    return summary(ctx.workload, ctx.keys.manifest, [where])


def _is_recursive(user_class: type[User]) -> bool:
    return issubclass(user_class, RecursiveMixin)


def _wanted(user_class: type[User], parsed: Any) -> bool:
    """Whether a user class runs when not named on the command line: the recursive users when a
    recursive node is configured, the node users unless only a recursive node is."""
    if _is_recursive(user_class):
        if user_class is RecursiveHttpUser:
            return recursive.http_configured(parsed)
        return recursive.configured(parsed)
    return options.configured(parsed) or not recursive.configured(parsed)


def _select(environment: Environment) -> None:
    """Leave out the user classes whose target is not configured (those named on the command
    line stay, and fail their check if need be): without a recursive node, the users are what
    they always were."""
    parsed = environment.parsed_options
    named = set(getattr(parsed, "user_classes", None) or ())
    chosen = [u for u in environment.user_classes if u.__name__ in named or _wanted(u, parsed)]
    left_out = [u.__name__ for u in environment.user_classes if u not in chosen]
    if chosen and left_out:
        environment.user_classes[:] = chosen  # the runner reads this very list
        log.debug(f"user classes not configured, left out: {', '.join(left_out)}")


def _check(environment: Environment, user_classes: list[type[User]]) -> list[str]:
    """Build the contexts the user classes need; one line each, the workload and the target."""
    lines = []
    if HttpApiUser in user_classes and not environment.host:
        # else Locust's traceback for each user, and a run of no requests that exits 0
        raise WorkloadError(
            "HttpApiUser needs the node's HTTP address: --host http://HOST:PORT"
            " (or name only MsgpackTcpUser MsgpackUdpUser)"
        )
    if any(not _is_recursive(u) for u in user_classes):
        lines.append(_describe(environment))
    if any(_is_recursive(u) for u in user_classes):
        lines.append(_describe_recursive(environment))
    return lines


def _end_with_parent(parent: int) -> None:
    """A worker that ``--processes`` forked: end with its master (one that refused to start
    exits before its workers connect, and they would wait a minute for its heartbeat)."""
    while os.getppid() == parent:
        gevent.sleep(0.5)
    log.error("the master process is gone: stopping")
    os._exit(1)


def _on_init(environment: Environment, **_: Any) -> None:
    parsed = environment.parsed_options
    threshold = float(getattr(parsed, "cpu_warn_percent", 90.0))
    cpu.install(environment, threshold)
    if isinstance(environment.runner, WorkerRunner):
        gevent.spawn(_end_with_parent, os.getppid())
        return  # a worker gets its flags from the master when a test starts
    if parsed is None:
        return
    _select(environment)
    try:
        for line in _check(environment, environment.user_classes):
            log.info(line)
    except (ManifestError, WorkloadError) as exc:
        if getattr(parsed, "headless", False):
            log.error(f"cannot start: {exc}")
            sys.exit(1)
        log.warning(f"{exc} (set it before starting a test)")


def _on_test_start(environment: Environment, **_: Any) -> None:
    options.reset(environment)  # the web UI may have changed the flags since the last test
    parsed = environment.parsed_options
    # a worker runs what its master dispatches: check what the flags configure
    wanted = [u for u in environment.user_classes if _wanted(u, parsed)]
    try:
        _check(environment, wanted)
    except (ManifestError, WorkloadError) as exc:
        log.error(f"cannot run the idnode users: {exc}")


_events: Any = events  # locust's EventHook is untyped: register without decorators
_events.init_command_line_parser.add_listener(_add_flags)
_events.init.add_listener(_on_init)
_events.test_start.add_listener(_on_test_start)
