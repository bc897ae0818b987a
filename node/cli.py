"""``idnode`` command line: ``serve`` runs a node, ``demo`` seeds and runs one, the rest are clients.

``idnode serve --data-dir D --http-port 8000 --port 2641 --home 88.118.8 --admin-secret S`` runs a
node (every flag also from TOML ``--config`` or ``IDNODE_*``); ``resolve``, ``create``, ``delete``,
``list`` and ``home`` talk to a running node over HTTP, TCP or UDP through ``node.client``;
``topology up|status|down`` runs an emulated national topology on this machine (``node.topocli``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from node import config as config_mod
from node import logs


def _run(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="idnode", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sources = (
        "Every setting is also read from IDNODE_<SETTING> environment variables (IDNODE_ADMIN_SECRET,"
        " IDNODE_HTTP_PORT...) and from a TOML file (--config or IDNODE_CONFIG, the same names"
        " with underscores); flags win over the environment, which wins over the file."
    )
    serve_p = sub.add_parser("serve", help="run a node", epilog=sources)
    config_mod.add_arguments(serve_p)
    demo_p = sub.add_parser(
        "demo", help="seed demo data (once) and run a node on it", epilog=sources
    )
    config_mod.add_arguments(demo_p)
    demo_p.add_argument("--identifiers", type=int, default=10000, help="demo identifiers to seed")
    from node import seed

    seed_p = sub.add_parser("seed", help="generate enterprises and identifiers into a data dir")
    seed.add_arguments(seed_p)
    from node import clientcli

    clientcli.add_commands(sub)
    from node import topocli

    topocli.add_commands(sub)
    args = parser.parse_args(argv)
    if args.command == "seed":
        return seed.main(args, sub.choices["seed"])
    if args.command == "topology":
        return topocli.main(args)
    if args.command in ("serve", "demo"):
        try:
            config = config_mod.load(args)
        except config_mod.ConfigError as exc:
            sub.choices[args.command].error(str(exc))  # usage, the reason, exit status 2
        logs.setup(config.log_level)
        from node.server import CannotServe

        try:
            return _serve(args, config, sub.choices[args.command])
        except config_mod.ConfigError as exc:  # a setting this data dir cannot take
            print(f"idnode {args.command}: error: {exc}", file=sys.stderr)
            return 2
        except CannotServe as exc:  # say what, not a traceback
            print(f"idnode {args.command}: {exc}", file=sys.stderr)
            return 1
    return clientcli.run(args, sub.choices[args.command])


def _serve(
    args: argparse.Namespace, config: config_mod.Config, parser: argparse.ArgumentParser
) -> int:
    """``idnode serve`` or ``idnode demo`` with ``config``, until SIGTERM or SIGINT."""
    from node.server import serve

    if args.command == "demo":
        from node.demo import banner, prepare

        if config.workers > 1:  # the demo prints its banner from the one node it runs
            parser.error(
                "the demo runs one process; serve its data dir with idnode serve --workers N"
            )
        try:
            config = prepare(config, args.identifiers)
        except config_mod.ConfigError:
            raise
        except ValueError as exc:  # --identifiers out of range
            parser.error(str(exc))
        _run(serve(config, on_started=lambda node: print(banner(node), flush=True)))
        return 0
    workers = config_mod.worker_count(config)
    if workers > 1:
        from node.workers import serve_workers

        return serve_workers(config, workers)
    _run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
