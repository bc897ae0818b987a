"""``idnode seed``: realistic enterprises and product identifiers per industry, loaded fast.

``make_plan`` picks enterprises for each chosen industry of ``node.industries`` (real ones and
synthetic ones from code 201) and shares the identifiers among them; ``chunks`` generates every
identifier as a factory registers it: suffix ``PRD-<class>-<yyyymm>-<serial>``, values 1 URL,
2 product name, 3 model, 4 batch, 5 production date, 6 manufacturer, 7 GTIN-14 (where goods carry
one) and the industry's template attributes from index 2000. Every choice comes from
``random.Random`` seeded with the seed, and values are stamped with the time their batch was made,
so the same seed gives the same records, byte for byte.

Speed decides the shape of the code. SQLite needs about 18 us of a core per identifier (ten value
rows); the rest must stay small. So identifiers are generated in store key order straight into the
rows ``SQLiteStore.bulk_load_prepared`` inserts (``generate`` turns them into records for anyone
else), values shared by a batch are encoded once, and large loads generate in a second process
(``produce_main``) that sends those rows over a pipe. ``seed`` loads in chunks of ``CHUNK``, one
commit each, then homes every enterprise prefix through ``Service.home_prefix`` and writes
``<data_dir>/manifest.json`` for load tests: the plan and a few thousand sampled handles with Zipf
popularity weights (1/rank).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import marshal
import os
import queue
import random
import shutil
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from node.config import Config
from node.industries import (
    FIRST_MONTH,
    INDUSTRIES,
    MONTHS,
    Enterprise,
    Industry,
    Product,
    Unit,
    industry_by_code,
    make_enterprises,
    select_industries,
)
from node.store import Record
from node.store.sqlite import BulkRows, Shape, SQLiteStore, bulk_records, bulk_shape
from protocol.identifiers import Handle, ascii_upper, gtin_check_digit
from protocol.records import HandleValue

MANIFEST = "manifest.json"
CHUNK = 20_000  #: identifiers per ``bulk_load`` call, each one commit
SAMPLE = 5_000  #: handles in the manifest's sample (all of them when fewer were seeded)
WORKER_FROM = 200_000  #: from this many identifiers on, a second process generates them
#: disk an identifier takes in the store, with room to spare (about 1,300 bytes measured)
BYTES_PER_IDENTIFIER = 1_500
MAX_ENTERPRISES = 5_000  #: per industry (enterprise segments have at most four digits)
_FRAME = struct.Struct(">cQ")  #: a frame from the generating process: tag, payload length
Row = tuple[Any, ...]


# -- the plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedSpec:
    """What to generate; the same spec gives the same data."""

    seed: int = 1  #: seed of every random choice
    identifiers: int = 10_000  #: product identifiers in all
    industries: tuple[str, ...] = ()  #: industry codes; empty: all of them
    enterprises_per_industry: int = 8
    case_sensitive_suffix: bool = False  #: the node's suffix rule, which store keys follow

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> SeedSpec:
        """The spec of ``asdict(spec)`` once through JSON (which made ``industries`` a list)."""
        return cls(**{**fields, "industries": tuple(fields["industries"])})


@dataclass(frozen=True)
class Plan:
    spec: SeedSpec
    industries: tuple[Industry, ...]
    enterprises: tuple[Enterprise, ...]  #: in store key order, the order identifiers come in
    counts: tuple[int, ...]  #: identifiers of each enterprise


def _shares(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainder: exact, deterministic)."""
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def make_plan(spec: SeedSpec) -> Plan:
    """The enterprises of the chosen industries and how many identifiers each registers."""
    if spec.identifiers < 0 or not 1 <= spec.enterprises_per_industry <= MAX_ENTERPRISES:
        raise ValueError(
            f"needs identifiers >= 0 and 1 to {MAX_ENTERPRISES} enterprises per industry"
        )
    codes = spec.industries or tuple(i.code for i in INDUSTRIES)
    industries = tuple(industry_by_code(c) for c in codes)
    rng = random.Random(spec.seed)
    enterprises: list[Enterprise] = []
    weights: list[float] = []
    names: set[str] = set()
    gs1: set[str] = set()
    for industry in industries:
        for ent in make_enterprises(industry, rng, spec.enterprises_per_industry, names, gs1):
            enterprises.append(ent)
            weights.append(industry.weight * rng.lognormvariate(0.0, 1.0))
    counts = _shares(spec.identifiers, weights)
    order = sorted(range(len(enterprises)), key=lambda n: ascii_upper(enterprises[n].prefix) + "/")
    return Plan(
        spec, industries, tuple(enterprises[n] for n in order), tuple(counts[n] for n in order)
    )


# -- the identifiers -----------------------------------------------------------------------------


def _months() -> list[date]:
    first = FIRST_MONTH.year * 12 + FIRST_MONTH.month - 1
    return [date((first + n) // 12, (first + n) % 12 + 1, 1) for n in range(MONTHS)]


def _days_in(month: date) -> int:
    return ((month + timedelta(days=32)).replace(day=1) - month).days


def _month_weight(n: int, month: date) -> float:
    """Output grows over the window and dips in February (Spring Festival)."""
    return (1.0 + 0.8 * n / (MONTHS - 1)) * (0.6 if month.month == 2 else 1.0)


def _gtin(ent: Enterprise, product: Product, model: int) -> str:
    item = ent.industry.products.index(product) * 100 + model  # a stable GS1 item reference
    body = f"0{ent.gs1_company}{item:05d}"
    return body + str(gtin_check_digit(body))


def _enterprise_rows(
    spec: SeedSpec, ent: Enterprise, count: int
) -> Iterator[tuple[Shape, list[Row]]]:
    """``count`` identifiers of ``ent`` in key order (product class, month, serial), a batch at a
    time: the shape its records share and their ``BulkRows`` rows (key, handle, stamp, data...)."""
    rng = random.Random(f"{spec.seed}:{ent.prefix}")
    industry = ent.industry
    months = _months()
    product_weights = [rng.uniform(0.5, 2.0) for _ in ent.products]
    cells = [(p, m) for p in range(len(ent.products)) for m in range(MONTHS)]
    weights = [product_weights[p] * _month_weight(m, months[m]) for p, m in cells]
    sizes = dict(zip(cells, _shares(count, weights), strict=True))
    width = max(ent.serial_width, len(str(max(sizes.values()))))
    heads = {(p, m): f"PRD-{ent.products[p].code}-{months[m]:%Y%m}-" for p, m in cells}
    unit = Unit(ent)
    # heads are upper-case ASCII, so their text order is the store's key order
    for cell in sorted(cells, key=heads.__getitem__):
        size = sizes[cell]
        if not size:
            continue
        month = months[cell[1]]
        product = unit.product = ent.products[cell[0]]
        head = heads[cell]
        key_head = Handle(ent.prefix, head).key(case_sensitive_suffix=spec.case_sensitive_suffix)
        handle_head = f"{ent.prefix}/{head}"
        url_head = ent.url.format(h=handle_head, s=head)  # every URL pattern ends with h or s
        batches = []
        while size:
            n = min(size, max(1, round(industry.batch * rng.uniform(0.5, 1.5))))
            batches.append(n)
            size -= n
        days = sorted(rng.randrange(_days_in(month)) for _ in batches)
        per_day: dict[int, int] = {}
        serial = 0
        for n, day in zip(batches, days, strict=True):
            per_day[day] = per_day.get(day, 0) + 1
            made = unit.made = month + timedelta(days=day)
            stamp = int(datetime(made.year, made.month, made.day, tzinfo=UTC).timestamp())
            stamp += rng.randrange(43200)  # registered during the (Beijing) working day
            model = rng.randrange(len(product.models))
            unit.model = product.models[model]
            unit.batch = f"{product.code}{made:%y%m%d}{per_day[day]:02d}"
            unit.memo = {}
            unit.serial = serial + 1
            values = [
                (1, "URL", url_head),
                (2, "PRODUCT_NAME", product.name),
                (3, "MODEL", unit.model),
                (4, "BATCH", unit.batch),
                (5, "PRODUCTION_DATE", made.isoformat()),
                (6, "MANUFACTURER", ent.name),
            ]
            if industry.gtin:
                unit.gtin = _gtin(ent, product, model)
                values.append((7, "GTIN", unit.gtin))
            per_item = []
            for attr in industry.template:
                if attr.per_item:
                    per_item.append((len(values) + 3, attr))  # its place in a row
                values.append((attr.index, attr.type, attr.make(rng, unit)))
            shape = bulk_shape(tuple(HandleValue(i, t, b"", timestamp=stamp) for i, t, _ in values))
            assert shape is not None
            data = [d.encode() for _, _, d in values[1:]]
            rows: list[Row] = []
            first = serial + 1
            for serial in range(first, first + n):
                digits = str(serial).zfill(width)
                row = (
                    key_head + digits,
                    handle_head + digits,
                    stamp,
                    (url_head + digits).encode(),
                    *data,
                )
                if per_item:
                    unit.serial = serial
                    items = list(row)
                    for at, attr in per_item:
                        items[at] = attr.make(rng, unit).encode()
                    row = tuple(items)
                rows.append(row)
            yield shape, rows


def sample_positions(spec: SeedSpec) -> list[int]:
    """Where (in key order) the handles of the manifest's sample are, ascending."""
    rng = random.Random(f"{spec.seed}:sample")
    return sorted(rng.sample(range(spec.identifiers), min(SAMPLE, spec.identifiers)))


def chunks(plan: Plan, sample: list[str] | None = None) -> Iterator[BulkRows]:
    """Every identifier of ``plan``, in key order, as ``BulkRows`` of ``CHUNK`` identifiers
    (``SQLiteStore.bulk_load_prepared`` loads them); the sampled handles go to ``sample``."""
    found = sample if sample is not None else []
    wanted = sample_positions(plan.spec) if sample is not None else []
    wanted.reverse()  # popped from the end, smallest first
    keys: list[str] = []
    groups: dict[Shape, list[Row]] = {}
    position = 0
    for ent, count in zip(plan.enterprises, plan.counts, strict=True):
        if not count:
            continue
        for shape, rows in _enterprise_rows(plan.spec, ent, count):
            while rows:
                part, rows = rows[: CHUNK - len(keys)], rows[CHUNK - len(keys) :]
                while wanted and wanted[-1] < position + len(part):
                    found.append(part[wanted.pop() - position][1])
                position += len(part)
                keys.extend([row[0] for row in part])
                groups.setdefault(shape, []).extend(part)
                if len(keys) == CHUNK:
                    yield keys, list(groups.items())
                    keys, groups = [], {}
    if keys:
        yield keys, list(groups.items())


def generate(plan: Plan) -> Iterator[tuple[str, Record]]:
    """Every identifier of ``plan`` as (store key, record), in key order."""
    for batch in chunks(plan):
        yield from bulk_records(batch)


# -- loading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedResult:
    loaded: int  #: identifiers loaded by this call (0: the data dir held them already)
    seconds: float  #: wall time of the whole call
    load_seconds: float  #: of which loading identifiers (not homing, not the manifest)
    manifest: dict[str, Any]
    path: Path  #: of the manifest


class Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled and total > 0
        self.started = self.shown = time.perf_counter()

    def update(self, done: int, *, last: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self.shown < 0.1 and not last):
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-9)
        eta = (self.total - done) / rate if rate else 0.0
        filled = 30 * done // self.total
        sys.stderr.write(
            f"\rseed [{'#' * filled}{'-' * (30 - filled)}] {100 * done // self.total:3d}%"
            f" {done:,}/{self.total:,}  {rate:,.0f} ids/s  ETA {eta:,.0f} s "
            + ("\n" if last else "")
        )
        sys.stderr.flush()


def _read_frames(stream: Any, out: queue.Queue[tuple[bytes, Any]]) -> None:
    """The reader thread: frames of the generating process, unmarshalled, into ``out``."""
    try:
        while True:
            head = stream.read(_FRAME.size)
            if len(head) < _FRAME.size:
                out.put((b"X", "the generating process ended before it finished"))
                return
            tag, size = _FRAME.unpack(head)
            out.put((tag, marshal.loads(stream.read(size))))
            if tag != b"R":
                return
    except Exception as exc:  # reported to the loader, which stops
        out.put((b"X", f"reading from the generating process failed: {exc!r}"))


def produce_main(argv: Sequence[str]) -> int:
    """The generating process: ``SeedSpec`` as JSON in ``argv[0]``; frames on stdout, each a tag,
    a length and a ``marshal``-ed payload: R ``BulkRows``, then E the sampled handles."""
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may reach the frame stream
    spec = SeedSpec.from_json(json.loads(argv[0]))
    sample: list[str] = []
    try:
        for batch in chunks(make_plan(spec), sample):
            payload = marshal.dumps(batch)
            out.write(_FRAME.pack(b"R", len(payload)) + payload)
        payload = marshal.dumps(sample)
        out.write(_FRAME.pack(b"E", len(payload)) + payload)
        out.flush()
    except BrokenPipeError:  # the loader stopped
        return 1
    return 0


async def _load_from_worker(
    store: SQLiteStore, spec: SeedSpec, sample: list[str], loaded_one: Callable[[BulkRows], None]
) -> int:
    """Load what ``produce_main`` generates in a second process: SQLite's work and the
    generation's run on two cores, and ``marshal`` carries rows at a microsecond each."""
    code = "import sys; from node.seed import produce_main; sys.exit(produce_main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(asdict(spec))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],  # importable even from an uninstalled checkout
    )
    frames: queue.Queue[tuple[bytes, Any]] = queue.Queue(maxsize=2)  # read ahead, boundedly
    reader = threading.Thread(target=_read_frames, args=(proc.stdout, frames), daemon=True)
    reader.start()
    loop = asyncio.get_running_loop()
    loaded = 0
    try:
        while True:
            tag, payload = await loop.run_in_executor(None, frames.get)
            if tag == b"E":
                sample.extend(payload)
                return loaded
            if tag != b"R":
                raise RuntimeError(str(payload))
            loaded += await store.bulk_load_prepared(payload)
            loaded_one(payload)
    finally:
        if reader.is_alive():
            proc.kill()  # stopped early: the process we started goes too

        def drain() -> None:  # the reader may wait to put a frame nobody takes any more
            while reader.is_alive():
                try:
                    frames.get(timeout=0.1)
                except queue.Empty:
                    pass

        await loop.run_in_executor(None, drain)
        # cancelled while a ``frames.get`` waited in the executor: wake it, or its thread would
        # never end and the interpreter would wait for it at exit
        with contextlib.suppress(queue.Full):
            frames.put_nowait((b"X", "stopped"))
        await loop.run_in_executor(None, proc.wait)
        assert proc.stdout is not None
        proc.stdout.close()


def manifest_for(plan: Plan, sample: list[str]) -> dict[str, Any]:
    """The manifest of a seeded plan; ``sample`` in key order."""
    spec = plan.spec
    ranked = sample[:]
    random.Random(f"{spec.seed}:popularity").shuffle(ranked)
    return {
        "version": 1,
        "seed": spec.seed,
        "identifiers": spec.identifiers,
        "enterprises_per_industry": spec.enterprises_per_industry,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "admin_secret_hint": "the --admin-secret (or IDNODE_ADMIN_SECRET) given to idnode seed",
        "industries": [
            {
                "code": i.code,
                "name": i.name,
                "prefix": i.prefix,
                "class": dict(
                    zip(("category", "division", "group", "class"), i.gbt4754, strict=True)
                ),
                "template": [
                    {"index": a.index, "type": a.type, "format": a.format} for a in i.template
                ],
            }
            for i in plan.industries
        ],  # fmt: skip
        "enterprises": [
            {"prefix": e.prefix, "industry": e.industry.code, "name": e.name, "identifiers": n}
            for e, n in zip(plan.enterprises, plan.counts, strict=True)
        ],
        # Zipf (s = 1) over the sample in a random order: load tests draw keys by these weights
        "sample": [
            {"handle": h, "popularity": float(f"{1 / rank:.6g}")}
            for rank, h in enumerate(ranked, start=1)
        ],
    }


def describes(manifest: Any, plan: Plan) -> bool:
    """Whether ``manifest`` (a manifest file's JSON) was written for the data of ``plan``."""
    try:
        return bool(
            manifest["version"] == 1
            and (manifest["seed"], manifest["identifiers"])
            == (plan.spec.seed, plan.spec.identifiers)
            and [e["prefix"] for e in manifest["enterprises"]]
            == [e.prefix for e in plan.enterprises]
        )
    except (KeyError, TypeError):
        return False


async def _seeded(store: SQLiteStore, path: Path, plan: Plan) -> dict[str, Any] | None:
    """The manifest at ``path`` when it describes ``plan`` and the store holds its sample's ends."""
    try:
        old: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        handles = sorted(s["handle"] for s in old["sample"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not describes(old, plan):
        return None
    for handle in handles[:1] + handles[-1:]:
        prefix, _, suffix = handle.partition("/")
        key = Handle(prefix, suffix).key(case_sensitive_suffix=plan.spec.case_sensitive_suffix)
        if await store.get(key) is None:
            return None
    return old


class _Homing:
    """Homes the enterprise prefixes through ``Service.home_prefix`` (its ``<prefix>/ADMIN``).

    Each is homed once the load has passed all of its keys (``passed``): an ADMIN handle written
    earlier would sit in the key range the load appends to, and SQLite inserts in front of an
    existing key much more slowly than at the end. The homings run while the writer loads (their
    PBKDF2 on this thread, SQLite's work on the writer's) and share its commits.
    """

    def __init__(self, store: SQLiteStore, config: Config, plan: Plan, homed: list[str]) -> None:
        from node.service import Service  # brings the cache and auth along: only when seeding

        self.service = Service(config, store)
        self.secret = config.admin_secret
        taken = {ascii_upper(p) for p in homed}
        self.waiting = deque(
            e.prefix for e in plan.enterprises if ascii_upper(e.prefix) not in taken
        )
        self.started: list[asyncio.Future[None]] = []

    def passed(self, key: str | None) -> None:
        """The load has passed ``key`` (None: everything)."""
        while self.waiting and (key is None or ascii_upper(self.waiting[0]) + "0" <= key):
            prefix = self.waiting.popleft()  # '0' follows '/': all of its keys come before key
            self.started.append(
                asyncio.ensure_future(self.service.home_prefix(prefix, self.secret))
            )

    async def finish(self) -> None:
        self.passed(None)
        await asyncio.gather(*self.started)

    async def cancel(self) -> None:
        for task in self.started:
            task.cancel()
        await asyncio.gather(*self.started, return_exceptions=True)


async def seed(
    config: Config, spec: SeedSpec, *, progress: bool = False, worker: bool | None = None
) -> SeedResult:
    """Load the identifiers of ``spec`` into ``config.data_dir`` and home every enterprise prefix.

    Once is enough: when the manifest there describes this spec and the store holds its sample,
    nothing is loaded; otherwise every record is (re)written under its key, never duplicated.
    ``worker`` None: a second process generates from ``WORKER_FROM`` identifiers on.
    """
    from node.server import hold_data_dir, opening_store

    if not config.admin_secret:
        raise ValueError("seeding homes prefixes, which needs an admin secret (--admin-secret)")
    lock = hold_data_dir(config.data_dir)  # a node serving it would answer stale what we write
    try:
        store = SQLiteStore(config.data_dir, max_batch=config.write_batch_max)
        with opening_store(config.data_dir):
            await store.open()
        return await _seed(store, config, spec, progress, worker)
    finally:
        lock.close()


def _check_room(data_dir: Path, identifiers: int) -> None:
    """Refuse a seed the disk cannot hold before writing any of it (not hours later, the disk
    full and a partial data set left behind); ``StoreUnavailable`` (said in one line)."""
    from node.server import StoreUnavailable

    needed = identifiers * BYTES_PER_IDENTIFIER
    free = shutil.disk_usage(data_dir).free
    if needed > free:
        raise StoreUnavailable(
            f"seeding {identifiers:,} identifiers needs about {_size(needed)} in"
            f" {data_dir}, which has {_size(free)} free"
        )


def _size(n: int) -> str:
    """Bytes for a person, in GB from 1 GB on, else MB: a small disk is not "0.0 GB"."""
    return f"{n / 1e9:,.1f} GB" if n >= 1e9 else f"{n / 1e6:,.1f} MB"


async def _seed(
    store: SQLiteStore, config: Config, spec: SeedSpec, progress: bool, worker: bool | None
) -> SeedResult:
    started = time.perf_counter()
    plan = make_plan(spec)
    path = Path(config.data_dir) / MANIFEST
    homing = _Homing(store, config, plan, await store.homed_prefixes())
    try:
        manifest = await _seeded(store, path, plan)
        if manifest is not None:
            await homing.finish()
            return SeedResult(0, time.perf_counter() - started, 0.0, manifest, path)
        _check_room(Path(config.data_dir), spec.identifiers)
        path.unlink(missing_ok=True)  # no manifest while the data may not match it
        bar = Progress(spec.identifiers, progress)
        sample: list[str] = []
        loaded = 0

        def loaded_one(batch: BulkRows) -> None:
            nonlocal loaded
            loaded += len(batch[0])
            bar.update(loaded)
            homing.passed(batch[0][-1])

        loading = time.perf_counter()
        if worker if worker is not None else spec.identifiers >= WORKER_FROM:
            await _load_from_worker(store, spec, sample, loaded_one)
        else:
            for batch in chunks(plan, sample):
                await store.bulk_load_prepared(batch)
                loaded_one(batch)
        load_seconds = time.perf_counter() - loading
        bar.update(loaded, last=True)
        await homing.finish()
    finally:
        await homing.cancel()  # nothing left to cancel unless the load failed
        await store.close()  # its checkpoint leaves everything in the database file
    manifest = manifest_for(plan, sample)
    partial = path.with_name(MANIFEST + ".part")
    partial.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", "utf-8")
    os.replace(partial, path)
    return SeedResult(loaded, time.perf_counter() - started, load_seconds, manifest, path)


# -- command line --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``idnode seed``'s flags (data dir, secret and suffix rule also from TOML or IDNODE_*)."""
    parser.add_argument("--config", help="TOML file of node settings (data_dir, admin_secret)")
    parser.add_argument("--data-dir", help="directory of the embedded store (default ./data)")
    parser.add_argument("--admin-secret", help="secret of each homed prefix's ADMIN handle")
    parser.add_argument(
        "--case-sensitive-suffix",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="as the node will run: store keys follow the suffix case rule",
    )
    parser.add_argument("--identifiers", type=int, default=10_000, help="in all (default 10000)")
    parser.add_argument(
        "--industries", default="all", help="all (default), K: the first K, or names/codes, commas"
    )
    parser.add_argument("--enterprises-per-industry", type=int, default=8, help="(default 8)")
    parser.add_argument("--seed", type=int, default=1, help="same seed, same data (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    parser.add_argument(
        "--worker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"generate in a second process (default: from {WORKER_FROM:,} identifiers on)",
    )


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``idnode seed``: 0 when seeded (or already), 2 on a bad argument (said as ``parser``
    says its own), 1 when the data directory cannot be used (or is being served)."""
    from node import config as config_mod
    from node.server import StoreUnavailable

    try:
        config = config_mod.load(args)
        spec = SeedSpec(
            seed=args.seed,
            identifiers=args.identifiers,
            industries=select_industries(args.industries),
            enterprises_per_industry=args.enterprises_per_industry,
            case_sensitive_suffix=config.case_sensitive_suffix,
        )
        progress = not args.quiet and sys.stderr.isatty()
        result = asyncio.run(seed(config, spec, progress=progress, worker=args.worker))
    except ValueError as exc:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"idnode seed: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        m = result.manifest
        if result.loaded:
            rate = result.loaded / result.load_seconds
            print(
                f"seeded {result.loaded:,} identifiers of {len(m['enterprises'])} enterprises in"
                f" {result.seconds:.1f} s (loading {rate:,.0f} ids/s); manifest {result.path}"
            )
        else:
            print(f"already seeded ({m['identifiers']:,} identifiers); manifest {result.path}")
    return 0
