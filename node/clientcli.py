"""``idnode resolve|create|delete|list|home``: the client SDK (``node.client``) from the shell.

Every command talks to a running node over HTTP (``--url``, the default), TCP (``--tcp HOST:PORT``)
or UDP (``--udp HOST:PORT``), prints the answer in the REST JSON shape on stdout, and exits 0 when
the response code is 1 (SUCCESS), else 1 with the reason on stderr. Writes and listings authenticate
as ``--auth INDEX:HANDLE`` (default ``300:<prefix>/ADMIN`` of the handle or prefix named) with
``--secret`` or ``IDNODE_SECRET``; ``home`` acts as the node admin ``300:0.NA/<PREFIX>`` with
``--secret`` or ``IDNODE_ADMIN_SECRET`` (homing is not in the REST API: use ``--tcp`` or ``--udp``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import yarl

from node.client import Client, TCPClient, UDPClient
from node.httpclient import HTTPClient, NotSupportedOverHTTP
from protocol.codes import ResponseCode
from protocol.jsonapi import response_to_json
from protocol.messages import Credential, ErrorResponse, Response
from protocol.records import HandleValue
from protocol.site import parse_address

DEFAULT_URL = "http://127.0.0.1:8000"
COMMANDS = ("resolve", "create", "delete", "list", "home")


class UsageError(Exception):
    """A bad command-line value; reported on stderr with exit code 2."""


def add_commands(subparsers: Any) -> None:
    """Add the client subcommands to ``idnode``'s subparsers."""
    resolve = subparsers.add_parser("resolve", help="resolve a handle")
    resolve.add_argument("handle")
    resolve.add_argument("--index", type=int, action="append", default=[], help="repeatable")
    resolve.add_argument("--type", action="append", default=[], help="repeatable; X. matches X.*")
    resolve.add_argument("--authoritative", action="store_true", help="bypass the node's cache")
    resolve.add_argument(
        "--recursive",
        action="store_true",
        help="have the node follow a referral itself (RECURSIVE) instead of returning it",
    )
    create = subparsers.add_parser("create", help="create a handle")
    create.add_argument("handle")
    create.add_argument(
        "--value",
        action="append",
        default=[],
        required=True,
        metavar="INDEX:TYPE:DATA",
        help="a string value, e.g. 1:URL:https://example.com (repeatable)",
    )
    create.add_argument("--overwrite", action="store_true", help="replace an existing handle")
    delete = subparsers.add_parser("delete", help="delete a handle")
    delete.add_argument("handle")
    listing = subparsers.add_parser("list", help="list the handles under a prefix")
    listing.add_argument("prefix")
    listing.add_argument("--page", type=int, default=0)
    listing.add_argument("--page-size", type=int, default=100)
    home = subparsers.add_parser("home", help="home a prefix on the node (node admin)")
    home.add_argument("prefix")
    for parser in (resolve, create, delete, listing, home):
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--url", default=None, help=f"REST API base URL (default {DEFAULT_URL})")
        where.add_argument("--tcp", metavar="HOST:PORT", help="msgpack over TCP")
        where.add_argument("--udp", metavar="HOST:PORT", help="msgpack over UDP")
        parser.add_argument("--auth", metavar="INDEX:HANDLE", help="identity, e.g. 300:88.1/ADMIN")
        # home reads the node admin's secret, as the node itself does: not IDNODE_SECRET
        secret_env = "IDNODE_ADMIN_SECRET" if parser is home else "IDNODE_SECRET"
        parser.add_argument("--secret", help=f"the identity's secret (or {secret_env})")
        parser.add_argument(
            "--timeout", type=_seconds, default=2.0, help="seconds per attempt (more than 0)"
        )


def _seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text!r}")
    return seconds


def _number(text: str) -> int | None:
    """``text`` as a decimal number, or None (``isdigit`` alone takes ``²`` too)."""
    return int(text) if text.isascii() and text.isdigit() else None


def _host_port(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError:
        raise UsageError(f"expected HOST:PORT with a port of 1-65535, got {text!r}") from None


def _identity(text: str) -> tuple[int, str]:
    index, sep, handle = text.partition(":")
    number = _number(index)
    if not sep or number is None or not handle:
        raise UsageError(f"--auth must be INDEX:HANDLE such as 300:88.1/ADMIN, got {text!r}")
    return number, handle


def _value(text: str) -> HandleValue:
    index, sep, rest = text.partition(":")
    type_, sep2, data = rest.partition(":")
    number = _number(index)
    if not (sep and sep2) or number is None or not type_:
        raise UsageError(f"--value must be INDEX:TYPE:DATA, got {text!r}")
    return HandleValue(number, type_, data.encode("utf-8"))


def _credential(args: argparse.Namespace) -> Credential | None:
    if args.command == "home":
        secret = args.secret or os.environ.get("IDNODE_ADMIN_SECRET")
        if not secret:
            raise UsageError("home needs the node admin secret (--secret or IDNODE_ADMIN_SECRET)")
        index, handle = _identity(args.auth) if args.auth else (300, f"0.NA/{args.prefix.upper()}")
        return Credential(handle, index, secret)
    secret = args.secret or os.environ.get("IDNODE_SECRET")
    if not secret:
        if args.auth:
            raise UsageError("--auth needs a secret (--secret or IDNODE_SECRET)")
        return None
    if args.auth:
        index, handle = _identity(args.auth)
    else:
        target = args.prefix if args.command == "list" else args.handle.partition("/")[0]
        index, handle = 300, f"{target}/ADMIN"
    return Credential(handle, index, secret)


def _client(args: argparse.Namespace, credential: Credential | None) -> Client:
    options: dict[str, Any] = {"credential": credential, "timeout_s": args.timeout}
    if args.tcp:
        return TCPClient(*_host_port(args.tcp), **options)
    if args.udp:
        return UDPClient(*_host_port(args.udp), **options)
    url = args.url or DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        raise UsageError(
            f"--url takes an http:// or https:// base URL, not {url!r}; "
            "for msgpack use --tcp HOST:PORT or --udp HOST:PORT"
        )
    try:
        yarl.URL(url).port  # noqa: B018 - parsing it is the check
    except ValueError as exc:
        raise UsageError(f"--url {url!r}: {exc}") from None
    return HTTPClient(url, **options)


async def _call(args: argparse.Namespace, client: Client) -> Response:
    async with client:
        if args.command == "resolve":
            public_only = False if client.credential is not None else None
            return await client.resolve(
                args.handle,
                indexes=args.index,
                types=args.type,
                public_only=public_only,
                authoritative=args.authoritative,
                recursive=args.recursive,
            )
        if args.command == "create":
            values = [_value(v) for v in args.value]
            return await client.create(args.handle, values, overwrite=args.overwrite)
        if args.command == "delete":
            return await client.delete(args.handle)
        if args.command == "list":
            return await client.list_handles(args.prefix, args.page, args.page_size)
        if args.command == "home":
            return await client.home(args.prefix)
    raise UsageError(f"unknown command {args.command!r}")


def _check_utf8(args: argparse.Namespace) -> None:
    """Arguments are sent as UTF-8: one holding bytes that are not (a shell's ``$'\\xff'``)
    is a usage error here, not a failure half-way through sending it."""
    for name, given in vars(args).items():
        for text in given if isinstance(given, list) else [given]:
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise UsageError(f"{name} is not valid UTF-8: {text!r}") from None


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run one client command; 0 on SUCCESS, 1 on any other answer, 2 on a usage error (said
    as ``parser``, the command's, says its own: the usage, then the reason)."""
    try:
        _check_utf8(args)
        credential = _credential(args)
        response = asyncio.run(_call(args, _client(args, credential)))
    except (UsageError, NotSupportedOverHTTP) as exc:
        reason = str(exc)
        if isinstance(exc, NotSupportedOverHTTP):
            reason = "not in the REST API; use --tcp HOST:PORT or --udp HOST:PORT"
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {reason}", file=sys.stderr)
        return 2
    shape = response_to_json(response)
    handle = getattr(args, "handle", None)
    if handle and "handle" not in shape:
        shape["handle"] = handle  # as the REST API names the handle of a delete
    try:
        print(json.dumps(shape, indent=2, ensure_ascii=False), flush=True)
    except BrokenPipeError:  # ``| head``: the reader went away; don't let Python complain at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    if response.code == ResponseCode.SUCCESS:
        return 0
    reason = response.message if isinstance(response, ErrorResponse) else ""
    name = ResponseCode(response.code).name
    print(
        f"idnode {args.command}: {name} ({int(response.code)}){': ' + reason if reason else ''}",
        file=sys.stderr,
    )
    return 1
