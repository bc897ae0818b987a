"""protocol/ stays sans-I/O: no sockets, event loops, clocks, processes, threads or files.

Every module under protocol/ is parsed with ``ast`` (nothing is imported or run) and checked for
imports of I/O modules, of the node or benchmarks packages, and for calls that open files or read
the clock.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROTOCOL_DIR = Path(__file__).resolve().parents[2] / "protocol"

#: modules whose mere import means I/O, a clock, processes or threads
FORBIDDEN_MODULES = frozenset(
    {
        "asyncio",
        "socket",
        "aiohttp",
        "time",
        "os",
        "subprocess",
        "threading",
        "selectors",
        "multiprocessing",
        "concurrent",
        "signal",
        "ssl",
        "select",
        "shutil",
        "tempfile",
        "pathlib",
        "glob",
        "mmap",
        "urllib.request",
        "http",
        "uvloop",
        "importlib",
    }
)
#: the packages built on top of protocol/: it must never depend on them
FORBIDDEN_PACKAGES = frozenset({"node", "benchmarks"})
#: io's file functions (io.BytesIO / io.StringIO are in-memory and allowed)
IO_FILE_FUNCTIONS = frozenset({"open", "open_code", "FileIO"})
#: builtins that reach files or stdin, or import modules by name (hiding them from this check)
FORBIDDEN_BUILTINS = frozenset({"open", "__import__", "input"})
#: methods that read the wall clock, or files through pathlib objects
FORBIDDEN_METHODS = frozenset(
    {
        "now",
        "utcnow",
        "today",
        "import_module",
        "read_text",
        "write_text",
        "read_bytes",
        "write_bytes",
    }
)


def _forbidden_module(name: str) -> str | None:
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        candidate = ".".join(parts[:depth])
        if candidate in FORBIDDEN_MODULES or candidate in FORBIDDEN_PACKAGES:
            return candidate
    return None


def violations(source: str, filename: str = "<source>") -> list[str]:
    """Every purity violation in ``source``, as ``file:line: what``."""
    tree = ast.parse(source, filename)
    found: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                bad = _forbidden_module(alias.name)
                if bad:
                    report(node, f"imports {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if node.level > 1:
                report(node, "relative import reaching outside protocol/")
            module = node.module or ""
            if node.level == 0:
                bad = _forbidden_module(module)
                if bad:
                    report(node, f"imports from {module}")
                if module == "io":
                    for alias in node.names:
                        if alias.name in IO_FILE_FUNCTIONS or alias.name == "*":
                            report(node, f"imports io.{alias.name}")
                for alias in node.names:
                    if _forbidden_module(f"{module}.{alias.name}") and not bad:
                        report(node, f"imports {module}.{alias.name}")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_BUILTINS:
                report(node, f"calls {func.id}()")
            elif isinstance(func, ast.Attribute):
                if func.attr in FORBIDDEN_METHODS:
                    report(node, f"calls .{func.attr}()")
                if (
                    isinstance(func.value, ast.Name)
                    and func.value.id == "io"
                    and func.attr in IO_FILE_FUNCTIONS
                ):
                    report(node, f"calls io.{func.attr}()")
                if func.attr == "open" and not (
                    isinstance(func.value, ast.Name) and func.value.id == "io"
                ):
                    report(node, "calls .open()")
    return found


def protocol_modules() -> list[Path]:
    return sorted(PROTOCOL_DIR.rglob("*.py"))


def test_the_package_is_found() -> None:
    names = {path.name for path in protocol_modules()}
    assert {
        "__init__.py",
        "codes.py",
        "errors.py",
        "identifiers.py",
        "records.py",
        "messages.py",
        "wire.py",
        "jsonapi.py",
    } <= names


@pytest.mark.parametrize("path", protocol_modules(), ids=lambda p: p.name)
def test_module_is_pure(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert violations(source, str(path.relative_to(PROTOCOL_DIR.parent))) == []


# The checker itself must catch what it is meant to catch.


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import socket",
        "import aiohttp",
        "import time",
        "import os",
        "import os.path",
        "import subprocess",
        "import threading",
        "import selectors",
        "from asyncio import sleep",
        "from time import monotonic",
        "from os import path as p",
        "from concurrent.futures import ThreadPoolExecutor",
        "import node",
        "import node.server",
        "from node import store",
        "from node.store import Store",
        "from benchmarks.loadgen import run",
        "import benchmarks",
        "from .. import node",
        "from urllib import request",
        "from io import open",
        "from io import FileIO",
        "open('x')",
        "with open('x', 'rb') as f: pass",
        "io.open('x')",
        "io.FileIO('x')",
        "Path('x').read_text()",
        "p.open()",
        "datetime.now()",
        "datetime.datetime.utcnow()",
        "__import__('os')",
        "importlib.import_module('os')",
        "import importlib",
    ],
)
def test_checker_catches(source: str) -> None:
    assert violations(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "import struct",
        "import msgpack",
        "from urllib.parse import quote, unquote, urlsplit",
        "from datetime import UTC, datetime",
        "datetime.fromtimestamp(0, UTC)",
        "from io import BytesIO",
        "io.BytesIO(b'')",
        "from protocol.codes import OpCode",
        "from . import codes",
        "import nodes_of_a_graph",
        "x.opened()",
    ],
)
def test_checker_allows(source: str) -> None:
    assert violations(source) == []
