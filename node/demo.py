"""``idnode demo``: a node with a few enterprises and their product identifiers, ready to query.

``prepare`` picks a demo data directory and secret, homes a handful of enterprise prefixes from
several industries (through ``Service.home_prefix``, so each gets its ``<prefix>/ADMIN``) and seeds
about ``identifiers`` product identifiers once, straight into the store with ``bulk_load``; a later
start finds them and seeds nothing. The data is deterministic (``random.Random(SEED)``): the same
suffixes and values every time, so ``banner`` can name an identifier that exists.
"""

from __future__ import annotations

import asyncio
import os
import random
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from node.config import Config
from node.server import Node
from node.service import Service
from node.store import Record
from node.store.sqlite import SQLiteStore
from protocol.identifiers import Handle, gtin_check_digit
from protocol.records import HandleValue

SEED = 2026
DEFAULT_DATA_DIR = "./data"
DEMO_DATA_DIR = "./data/demo"
DEMO_SECRET = "demo-secret"
_CHUNK = 20000  #: identifiers generated and loaded per store transaction


@dataclass(frozen=True)
class Product:
    code: str  #: product class in the suffix, e.g. BRK
    name: str  #: product name (value 2)
    models: tuple[str, ...]  #: model numbers (value 3)


@dataclass(frozen=True)
class Enterprise:
    prefix: str  #: enterprise prefix, ``88.<industry>.<enterprise>``
    industry: str  #: shown in the banner
    name: str  #: manufacturer (value 6)
    domain: str  #: host of the traceability URLs (value 1)
    gs1_company: str  #: 7-digit GS1 company prefix of the GTINs (value 7)
    products: tuple[Product, ...]


ENTERPRISES = (
    Enterprise(
        "88.118.8",
        "automobiles",
        "Huaxia Auto Brake Systems Co., Ltd.",
        "trace.huaxia-brake.example.cn",
        "6901180",
        (
            Product("BRK", "Disc brake caliper", ("HX-BC200", "HX-BC260", "HX-BC310")),
            Product("ECU", "Brake control unit", ("HX-EBS9", "HX-EBS11")),
            Product("PAD", "Ceramic brake pad set", ("HX-P45", "HX-P52", "HX-P60")),
        ),
    ),
    Enterprise(
        "88.101.1021",
        "steel",
        "Northern Special Steel Group Co., Ltd.",
        "id.nss-steel.example.cn",
        "6921021",
        (
            Product("COIL", "Hot-rolled steel coil", ("Q235B-4.0", "Q345B-6.0", "SPHC-2.5")),
            Product("PLT", "Shipbuilding steel plate", ("AH36-20", "DH36-32")),
            Product("RBR", "Ribbed rebar bundle", ("HRB400E-16", "HRB500E-25")),
        ),
    ),
    Enterprise(
        "88.106.3",
        "electric power",
        "Eastern Grid Equipment Co., Ltd.",
        "trace.egrid-equip.example.cn",
        "6931063",
        (
            Product("XFMR", "Distribution transformer", ("S13-M-400", "SCB12-1000")),
            Product("MTR", "Smart electricity meter", ("DDZY-102", "DTZY-341")),
            Product("SWG", "Ring main unit switchgear", ("XGN15-12", "HXGN-24")),
        ),
    ),
    Enterprise(
        "88.112.27",
        "food and beverage",
        "Green Valley Dairy Co., Ltd.",
        "trace.greenvalley-dairy.example.cn",
        "6941127",
        (
            Product("UHT", "UHT whole milk 250 ml x 24", ("GV-UHT250", "GV-UHT250L")),
            Product("YOG", "Set yogurt 100 g x 12", ("GV-Y100", "GV-Y100S")),
        ),
    ),
)


def _identifiers(count: int, now: int) -> Iterator[tuple[str, tuple[HandleValue, ...]]]:
    """``count`` deterministic (handle, values), spread round-robin over the enterprises."""
    rng = random.Random(SEED)
    first_day = date(2025, 1, 1)
    days = (date(2026, 11, 30) - first_day).days
    for i in range(count):
        ent = ENTERPRISES[i % len(ENTERPRISES)]
        serial = i // len(ENTERPRISES) + 1
        product = rng.choice(ent.products)
        model_no = rng.randrange(len(product.models))
        made = first_day + timedelta(days=rng.randrange(days))
        suffix = f"PRD-{product.code}-{made.year}-{made.month:02d}-{serial:06d}"
        item = sum(ord(c) for c in product.code) * 10 + model_no  # stable item reference
        body = f"0{ent.gs1_company}{item % 100000:05d}"
        gtin = body + str(gtin_check_digit(body))
        batch = f"B{made:%Y%m%d}-L{rng.randrange(1, 9):02d}"
        strings = (
            (1, "URL", f"https://{ent.domain}/p/{suffix}"),
            (2, "PRODUCT_NAME", product.name),
            (3, "MODEL", product.models[model_no]),
            (4, "BATCH", batch),
            (5, "PRODUCTION_DATE", made.isoformat()),
            (6, "MANUFACTURER", ent.name),
            (7, "GTIN", gtin),
        )
        values = tuple(HandleValue(n, t, d.encode(), timestamp=now) for n, t, d in strings)
        yield f"{ent.prefix}/{suffix}", values


def sample_handle() -> str:
    """The first seeded identifier (it exists whenever anything was seeded)."""
    return next(_identifiers(1, 0))[0]


async def seed(config: Config, identifiers: int) -> int:
    """Home the demo prefixes and seed ``identifiers`` identifiers unless already there.

    Returns how many identifiers were loaded (0 when the store already held them).
    """
    store = SQLiteStore(config.data_dir, max_batch=config.write_batch_max)
    await store.open()
    try:
        service = Service(config, store)
        homed = {p.upper() for p in await store.homed_prefixes()}
        for ent in ENTERPRISES:
            if ent.prefix.upper() not in homed:
                await service.home_prefix(ent.prefix, config.admin_secret)
        if await store.count() >= identifiers + len(ENTERPRISES):
            return 0
        now = int(time.time())
        loaded = 0
        chunk: list[tuple[str, Record]] = []
        for text, values in _identifiers(identifiers, now):
            prefix, _, suffix = text.partition("/")
            key = Handle(prefix, suffix).key(case_sensitive_suffix=config.case_sensitive_suffix)
            chunk.append((key, Record(text, values)))
            if len(chunk) >= _CHUNK:
                loaded += await store.bulk_load(chunk)
                chunk = []
        if chunk:
            loaded += await store.bulk_load(chunk)
        return loaded
    finally:
        await store.close()


def prepare(config: Config, identifiers: int = 10000) -> Config:
    """The demo's config (``./data/demo``, secret ``demo-secret`` unless given), seeded once."""
    changes: dict[str, str] = {}
    if os.path.normpath(config.data_dir) == os.path.normpath(DEFAULT_DATA_DIR):
        changes["data_dir"] = DEMO_DATA_DIR
    if not config.admin_secret:
        changes["admin_secret"] = DEMO_SECRET
    config = config.merged(changes)
    started = time.perf_counter()
    loaded = asyncio.run(seed(config, identifiers))
    if loaded:
        took = time.perf_counter() - started
        print(f"demo: seeded {loaded} identifiers in {config.data_dir} ({took:.1f} s)", flush=True)
    else:
        print(f"demo: identifiers already seeded in {config.data_dir}", flush=True)
    return config


def _idnode_command() -> str:
    """How to run ``idnode`` from here: on PATH, next to this Python, or ``python -m node``."""
    if shutil.which("idnode"):
        return "idnode"
    script = Path(sys.executable).parent / "idnode"
    if script.exists():
        try:
            return str(script.relative_to(Path.cwd()))
        except ValueError:
            return str(script)
    return f"{sys.executable} -m node"


def banner(node: Node) -> str:
    """Ports, the demo prefixes and commands that work against this node as started."""
    config = node.config
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    http = f"http://{host}:{node.ports['http']}"
    handle = sample_handle()
    prefix = handle.partition("/")[0]
    secret = config.admin_secret if config.admin_secret == DEMO_SECRET else "<admin secret>"
    prefixes = ", ".join(f"{e.prefix} ({e.industry})" for e in ENTERPRISES)
    user = f"300%3A{prefix}/ADMIN:{secret}"
    lines = [
        "",
        f"idnode demo: enterprises {prefixes}",
        f"  HTTP  {http}  (Handle.net REST API)",
        f"  TCP   {host}:{node.ports['tcp']}  (msgpack, pipelined)",
        f"  UDP   {host}:{node.ports['udp']}  (msgpack)",
        "Try:",
        f"  curl -s {http}/api/handles/{handle}",
        f"  {_idnode_command()} resolve {handle} --url {http}",
        f"  curl -s -u {shlex.quote(user)} '{http}/api/handles?prefix={prefix}&pageSize=5'",
        "",
    ]
    return "\n".join(lines)
