"""Seed benchmark: how fast ``idnode seed`` fills the embedded store, and how big the store gets.

Seeds ``identifiers`` (1,000,000 by default) into a fresh temporary data dir exactly as the CLI
does (every industry, 8 enterprises each, a second process generating from 200,000 on) and reports
identifiers per second (of the whole seed, and of its loading alone: homing the prefixes, with a
deliberately slow PBKDF2 per ADMIN handle, and the manifest come on top), wall time and bytes on
disk. Beside it, as the floor measured in the same run, it loads the first ``floor_identifiers`` of
the same data, generated beforehand, into a second fresh store: what SQLite alone allows on this
machine, which the seed can approach but not pass.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any

from node.config import Config
from node.seed import CHUNK, SeedSpec, chunks, make_plan, seed
from node.store.sqlite import SQLiteStore

SECRET = "bench-secret"


def _bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.iterdir() if f.is_file())


async def _floor(data_dir: Path, spec: SeedSpec, identifiers: int) -> float:
    """Identifiers per second of ``bulk_load_prepared`` alone, on data generated beforehand."""
    batches = list(islice(chunks(make_plan(spec)), max(1, identifiers // CHUNK)))
    store = SQLiteStore(data_dir)
    await store.open()
    try:
        started = time.perf_counter()
        loaded = 0
        for batch in batches:
            loaded += await store.bulk_load_prepared(batch)
        return loaded / (time.perf_counter() - started)
    finally:
        await store.close()


def run(identifiers: int = 1_000_000, floor_identifiers: int = 1_000_000) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="idnode-seed-bench-"))
    try:
        spec = SeedSpec(seed=1, identifiers=identifiers)
        result = asyncio.run(seed(Config(data_dir=str(root / "seed"), admin_secret=SECRET), spec))
        on_disk = _bytes(root / "seed")
        shutil.rmtree(root / "seed")  # room for the floor's store
        floor = asyncio.run(_floor(root / "floor", spec, min(floor_identifiers, identifiers)))
        rate = result.loaded / result.load_seconds
        return {
            "identifiers": identifiers,
            "enterprises": len(result.manifest["enterprises"]),
            "wall_s": round(result.seconds, 2),
            "ids_per_s": round(result.loaded / result.seconds),
            "load_s": round(result.load_seconds, 2),
            "load_ids_per_s": round(rate),
            "bytes_on_disk": on_disk,
            "bytes_per_identifier": round(on_disk / max(identifiers, 1)),
            "floor_identifiers": min(floor_identifiers, identifiers),
            "sqlite_floor_ids_per_s": round(floor),
            "load_vs_floor": round(rate / floor, 2),
            "goal": "load_ids_per_s >= 50,000",
            "chunk": CHUNK,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    import json

    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000), indent=2))
