"""``idnode seed``: deterministic, realistic data; loaded once, homed, answered over HTTP.

Small data sets (a few thousand identifiers) keep these fast; the generating process, used for
large loads, is checked to load exactly what the node would generate itself.
"""

from __future__ import annotations

import asyncio
import json
import marshal
import re
import shutil
import sqlite3
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from node import demo, seed
from node.cli import main as cli_main
from node.config import Config
from node.industries import INDUSTRIES, select_industries, vin_check_digit
from node.seed import SeedSpec, chunks, generate, make_plan
from node.store import Record
from node.store.sqlite import SQLiteStore, bulk_records, prepare_bulk
from protocol.identifiers import gtin_check_digit, parse_gtin
from protocol.records import HS_ADMIN, HS_SECKEY, HandleValue, Reference
from tests.node.conftest import SECRET, basic, http, make_config, resolve, running_node

SMALL = SeedSpec(seed=7, identifiers=3000, enterprises_per_industry=2)
SUFFIX = re.compile(r"^PRD-([A-Z]+)-(\d{4})(\d{2})-(\d{5,})$")


def rows(data_dir: Path) -> list[tuple[Any, ...]]:
    """Every stored value row except those of the ADMIN handles (whose salt is random)."""
    with sqlite3.connect(data_dir / "idnode.sqlite3") as conn:
        return conn.execute(
            "SELECT * FROM handles WHERE hkey NOT LIKE '%/ADMIN' ORDER BY hkey, idx"
        ).fetchall()


def run_seed(data_dir: Path, spec: SeedSpec = SMALL, **kw: Any) -> seed.SeedResult:
    config = Config(data_dir=str(data_dir), admin_secret=SECRET)
    return asyncio.run(seed.seed(config, spec, **kw))


# ------------------------------------------------------------------------------------------------
# the data


def test_same_seed_same_data_byte_for_byte() -> None:
    first: list[str] = []
    second: list[str] = []
    a = [marshal.dumps(batch) for batch in chunks(make_plan(SMALL), first)]
    b = [marshal.dumps(batch) for batch in chunks(make_plan(SMALL), second)]
    assert a == b
    assert first == second and len(first) == SMALL.identifiers  # fewer than SAMPLE: all of them
    manifest_a = seed.manifest_for(make_plan(SMALL), first)
    manifest_b = seed.manifest_for(make_plan(SMALL), second)
    assert manifest_a["sample"] == manifest_b["sample"]
    assert manifest_a["enterprises"] == manifest_b["enterprises"]


def test_different_seeds_differ() -> None:
    other = SeedSpec(seed=8, identifiers=3000, enterprises_per_industry=2)
    plan_a, plan_b = make_plan(SMALL), make_plan(other)
    assert [e.prefix for e in plan_a.enterprises] != [e.prefix for e in plan_b.enterprises]
    assert [r for _, r in generate(plan_a)] != [r for _, r in generate(plan_b)]


def test_count_keys_and_order() -> None:
    spec = SeedSpec(seed=3, identifiers=5000, enterprises_per_industry=3)
    plan = make_plan(spec)
    pairs = list(generate(plan))
    assert len(pairs) == 5000 == sum(plan.counts)
    keys = [k for k, _ in pairs]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)  # key order, no duplicates
    for key, record in pairs:
        assert key == record.handle.upper()


def test_values_are_what_a_factory_stores() -> None:
    plan = make_plan(SeedSpec(seed=5, identifiers=4000, enterprises_per_industry=2))
    by_prefix = {e.prefix: e for e in plan.enterprises}
    gtins = vins = 0
    for _, record in generate(plan):
        prefix, _, suffix = record.handle.partition("/")
        ent = by_prefix[prefix]
        values = {v.index: v for v in record.values}
        text = {i: v.data.decode() for i, v in values.items()}
        assert [v.index for v in record.values] == sorted(values)
        assert {1, 2, 3, 4, 5, 6} <= set(values)
        code, year, month, serial = SUFFIX.match(suffix).groups()  # type: ignore[union-attr]
        product = next(p for p in ent.products if p.code == code)
        assert text[1].startswith("https://") and text[1].endswith(suffix)
        assert text[2] == product.name and text[3] in product.models
        made = date.fromisoformat(text[5])
        assert (made.year, made.month) == (int(year), int(month))
        assert text[4].startswith(f"{code}{made:%y%m%d}")
        assert text[6] == ent.name
        assert len({v.timestamp for v in record.values}) == 1  # registered at once
        assert datetime.fromtimestamp(record.values[0].timestamp).year == made.year
        template = [v for v in record.values if v.index >= 2000]
        assert [(v.index, v.type) for v in template] == [
            (a.index, a.type) for a in ent.industry.template
        ]
        assert set(values) - {1, 2, 3, 4, 5, 6, 7} == {a.index for a in ent.industry.template}
        if ent.industry.gtin:
            gtin = text[7]
            assert len(gtin) == 14 and parse_gtin(gtin) == gtin
            assert int(gtin[-1]) == gtin_check_digit(gtin[:-1])
            assert gtin[1:8] == ent.gs1_company
            gtins += 1
        else:
            assert 7 not in values
        if "partNumber" in {v.type for v in template}:
            part = next(v.data.decode() for v in template if v.type == "partNumber")
            assert len(part) == 17 and part[8] == vin_check_digit(part)
            assert not set(part) & set("IOQ")
            vins += 1
        if "expiryDate" in {v.type for v in template}:
            expiry = next(v.data.decode() for v in template if v.type == "expiryDate")
            assert date.fromisoformat(expiry) > made
    assert gtins and vins


def test_prefixes_and_suffixes_are_shaped_like_real_ones() -> None:
    plan = make_plan(SeedSpec(seed=11, identifiers=2000, enterprises_per_industry=8))
    codes = {i.code for i in INDUSTRIES}
    widths = set()
    for ent in plan.enterprises:
        country, industry, enterprise = ent.prefix.split(".")
        assert country == "88" and industry == ent.industry.code and industry in codes
        assert enterprise.isdigit()
        widths.add(len(enterprise))
    assert len(widths) >= 3  # widths vary (1 to 4 digits, zero-padded ones too)
    assert len({e.name for e in plan.enterprises}) == len(plan.enterprises)
    assert len({e.gs1_company for e in plan.enterprises}) == len(plan.enterprises)
    with pytest.raises(ValueError):
        make_plan(SeedSpec(enterprises_per_industry=0))
    for _, record in generate(plan):
        assert SUFFIX.match(record.handle.partition("/")[2])


def test_industry_table_is_stable() -> None:
    names = {i.name: i.code for i in INDUSTRIES}
    # the codes the demo always had
    assert names["automobiles"] == "118" and names["steel"] == "101"
    assert names["electric power"] == "106" and names["food and beverage"] == "112"
    assert len(names) == len(INDUSTRIES) == len({i.code for i in INDUSTRIES})
    assert {
        "mining", "steel", "electric power", "petrochemical", "chemical", "electronic information",
        "high-end equipment", "automobiles", "new materials", "machine tools", "shipbuilding",
        "medical equipment", "agricultural machinery", "home appliances", "building materials",
    } <= set(names)  # fmt: skip
    for industry in INDUSTRIES:
        category, division, group, klass = industry.gbt4754
        assert category.isalpha() and len(category) == 1
        assert group.startswith(division) and klass.startswith(division) and len(klass) == 4
        assert industry.template and all(a.index >= 2000 for a in industry.template)
        assert all(a.format in ("string", "number", "date") for a in industry.template)


def test_select_industries() -> None:
    every = tuple(i.code for i in INDUSTRIES)
    assert select_industries("all") == select_industries(None) == every
    assert select_industries("3") == every[:3]
    assert select_industries("automobiles, 101,food") == ("118", "101", "112")
    with pytest.raises(ValueError, match="unknown"):
        select_industries("textiles")
    with pytest.raises(ValueError):
        select_industries("99")


# ------------------------------------------------------------------------------------------------
# loading and the manifest


def test_manifest(tmp_path: Path) -> None:
    result = run_seed(tmp_path / "data")
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest == result.manifest
    assert manifest["version"] == 1 and manifest["seed"] == 7
    assert manifest["identifiers"] == result.loaded == 3000
    assert datetime.fromisoformat(manifest["generated_at"])
    assert SECRET not in json.dumps(manifest)  # a hint, never the secret
    assert "admin-secret" in manifest["admin_secret_hint"]
    industries = manifest["industries"]
    assert [i["code"] for i in industries] == [i.code for i in INDUSTRIES]
    for item in industries:
        assert item["prefix"] == f"88.{item['code']}"
        assert set(item["class"]) == {"category", "division", "group", "class"}
    enterprises = manifest["enterprises"]
    assert len(enterprises) == 2 * len(INDUSTRIES)
    assert sum(e["identifiers"] for e in enterprises) == 3000
    assert {e["industry"] for e in enterprises} == {i.code for i in INDUSTRIES}
    sample = manifest["sample"]
    assert len(sample) == 3000 and len({s["handle"] for s in sample}) == 3000
    weights = [s["popularity"] for s in sample]
    assert weights[0] == 1.0 and weights[1] == 0.5 and weights == sorted(weights, reverse=True)
    assert weights[99] == pytest.approx(1 / 100)


def test_sample_is_a_few_thousand_of_many(tmp_path: Path) -> None:
    spec = SeedSpec(seed=1, identifiers=12_000, industries=("118", "112"))
    sample: list[str] = []
    for _ in chunks(make_plan(spec), sample):
        pass
    assert len(sample) == seed.SAMPLE == len(set(sample))
    handles = {r.handle for _, r in generate(make_plan(spec))}
    assert set(sample) <= handles


def test_seeded_node_answers_a_sampled_handle_over_http(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    result = run_seed(tmp_path / "data")
    expected = dict(generate(make_plan(SMALL)))
    with running_node(config) as node:
        for item in result.manifest["sample"][:20]:
            handle = item["handle"]
            reply = resolve(node, handle)
            assert reply.status == 200, reply.body
            assert reply.json["handle"] == handle
            record = expected[handle.upper()]
            got = [(v["index"], v["type"], v["data"]["value"]) for v in reply.json["values"]]
            assert got == [(v.index, v.type, v.data.decode()) for v in record.values]


def test_prefixes_homed_with_admin_handles(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    result = run_seed(tmp_path / "data")
    prefixes = [e["prefix"] for e in result.manifest["enterprises"]]
    with running_node(config) as node:
        homed = node.on_node(node.node.store.homed_prefixes)
        assert set(prefixes) <= set(homed)
        prefix = prefixes[0]
        admin = node.on_node(lambda: node.node.store.get(f"{prefix.upper()}/ADMIN"))
        assert admin is not None
        assert [(v.index, v.type) for v in admin.values] == [(100, HS_ADMIN), (300, HS_SECKEY)]
        listed = http(
            node,
            "GET",
            "/api/handles",
            params=[("prefix", prefix), ("pageSize", "5")],
            headers=basic(f"300%3A{prefix}/ADMIN", SECRET),
        )
        assert listed.status == 200, listed.body
        total = next(
            e["identifiers"] for e in result.manifest["enterprises"] if e["prefix"] == prefix
        )
        assert int(listed.json["totalCount"]) == total + 1  # and the ADMIN handle


def test_rerun_does_not_duplicate(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = run_seed(data)
    stored = rows(data)
    again = run_seed(data)
    assert (first.loaded, again.loaded) == (3000, 0)  # the manifest says it is there
    assert rows(data) == stored
    (data / "manifest.json").unlink()
    third = run_seed(data)  # no manifest: loaded again, over the same keys
    assert third.loaded == 3000
    assert rows(data) == stored
    assert third.manifest["sample"] == first.manifest["sample"]


def test_two_runs_store_identical_records(tmp_path: Path) -> None:
    run_seed(tmp_path / "a")
    run_seed(tmp_path / "b")
    assert rows(tmp_path / "a") == rows(tmp_path / "b")


def test_generating_process_loads_the_same_data(tmp_path: Path) -> None:
    here = run_seed(tmp_path / "here", worker=False)
    there = run_seed(tmp_path / "there", worker=True)
    assert rows(tmp_path / "here") == rows(tmp_path / "there")
    assert here.manifest["sample"] == there.manifest["sample"]


def test_progress_bar_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_seed(tmp_path / "quiet")
    assert capsys.readouterr().err == ""
    run_seed(tmp_path / "shown", progress=True)
    err = capsys.readouterr().err
    assert err.startswith("\rseed [") and "3,000/3,000" in err and err.endswith("\n")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "data")
    args = ["seed", "--data-dir", data, "--identifiers", "500", "--industries", "2"]
    args += ["--enterprises-per-industry", "2", "--seed", "9", "--admin-secret", "x"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "seeded 500 identifiers of 4 enterprises" in out
    assert cli_main([*args, "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert [i["name"] for i in manifest["industries"]] == ["mining", "steel"]
    assert (
        cli_main(["seed", "--data-dir", data, "--industries", "textiles", "--admin-secret", "x"])
        == 2
    )
    assert cli_main(["seed", "--data-dir", data]) == 2  # no secret
    err = capsys.readouterr().err
    assert err.startswith("usage: idnode seed") and "idnode seed: error: " in err
    assert "admin secret" in err


def test_seeding_a_served_or_unusable_data_dir_is_refused_in_one_line(
    tmp_path: Path, spawn_node: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The node caches answers: seeding under it would leave it answering stale (a seeded
    handle not found, its prefix not served) what the seeder wrote."""
    data = tmp_path / "data"
    node = spawn_node(data)
    before = http(node, "GET", "/api/handles?prefix=88.100.1", auth=True).json["totalCount"]
    args = ["--identifiers", "200", "--industries", "1", "--admin-secret", "x", "--quiet"]
    assert cli_main(["seed", "--data-dir", str(data), *args]) == 1
    assert "is served by another idnode process" in capsys.readouterr().err
    assert http(node, "GET", "/api/handles?prefix=88.100.1", auth=True).json["totalCount"] == before
    assert not (data / seed.MANIFEST).exists()
    assert node.terminate() == 0
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for command in ("seed", "demo"):
        assert cli_main([command, "--data-dir", str(a_file), *args[:2], "--admin-secret", "x"]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"idnode {command}: cannot use the data directory"), err
        assert "Traceback" not in err


def test_a_seed_the_disk_cannot_hold_is_refused_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    too_many = shutil.disk_usage(tmp_path).free // seed.BYTES_PER_IDENTIFIER + 1_000_000
    args = ["--data-dir", str(data), "--identifiers", str(too_many), "--admin-secret", "x"]
    for command in ("seed", "demo"):
        assert cli_main([command, *args, "--quiet"] if command == "seed" else [command, *args]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"idnode {command}: seeding {too_many:,} identifiers needs about")
        assert err.count("\n") == 1 and "GB free" in err
    assert not (data / seed.MANIFEST).exists()
    conn = sqlite3.connect(data / "idnode.sqlite3")
    try:
        assert conn.execute("SELECT COUNT(*) FROM handles").fetchone() == (0,)
    finally:
        conn.close()


def test_demo_seeds_once_and_its_banner_names_a_seeded_identifier(tmp_path: Path) -> None:
    config = demo.prepare(make_config(tmp_path / "demo"), identifiers=800)
    assert demo.prepare(config, identifiers=800) == config  # second start: nothing to seed
    with running_node(config) as node:
        text = demo.banner(node.node)
        handle = re.search(r"/api/handles/(\S+)", text).group(1)  # type: ignore[union-attr]
        assert resolve(node, handle).status == 200
        for prefix in ("88.118.8", "88.101.1021", "88.106.3", "88.112.27"):
            assert prefix in text


# ------------------------------------------------------------------------------------------------
# the bulk path of the store


def _rec(handle: str, *values: HandleValue) -> tuple[str, Record]:
    return handle.upper(), Record(handle, values)


def test_prepared_rows_round_trip_every_kind_of_record() -> None:
    stamped = [
        _rec("88.1/a", HandleValue(1, "URL", b"u", timestamp=5), HandleValue(2, "it's", b"q", timestamp=5)),
        _rec("88.1/b", HandleValue(1, "URL", b"u", timestamp=5), HandleValue(2, "X", b"v", timestamp=6)),
        _rec("88.1/c", HandleValue(3, "R", b"r", references=(Reference("88.1/a", 1),))),
        _rec("88.1/d", HandleValue(1, "BAD\x00TYPE", b"n", ttl=60, ttl_type=1, permissions=0xC)),
        _rec("88.1/e", HandleValue(1, "URL", b"w", timestamp=5), HandleValue(2, "it's", b"x", timestamp=5)),
    ]  # fmt: skip
    batch = prepare_bulk(reversed(stamped))
    assert batch[0] == sorted(k for k, _ in stamped)
    assert bulk_records(marshal.loads(marshal.dumps(batch))) == sorted(stamped)


def test_bulk_load_of_every_kind_replaces_and_survives_reopening(tmp_path: Path) -> None:
    old = _rec("88.1/b", HandleValue(9, "OLD", b"old"), HandleValue(1, "URL", b"gone"))
    new = (
        [
            _rec(
                f"88.1/k{i:03d}",
                HandleValue(1, "URL", b"u%d" % i, timestamp=i),
                HandleValue(2, "N", b"n"),
            )
            for i in range(301)  # different timestamps in a record: one row per value
        ]
        + [
            _rec(
                f"88.1/s{i:03d}",
                HandleValue(1, "U", b"s", timestamp=3),
                HandleValue(2, "a'b", b"", timestamp=3),
            )
            for i in range(301)  # an odd number of one shape: a pair per statement and one alone
        ]
        + [
            _rec("88.1/b", HandleValue(1, "URL", b"new", timestamp=2)),
            _rec("88.1/r", HandleValue(3, "R", b"r", references=(Reference("88.1/b", 1),))),
        ]
    )

    async def go() -> Any:
        store = SQLiteStore(tmp_path)
        await store.open()
        await store.bulk_load([old])
        loaded = await store.bulk_load(iter(new))
        await store.close()
        store = SQLiteStore(tmp_path)
        await store.open()
        try:
            got = {k: await store.get(k) for k, _ in new}
            return loaded, await store.count(), got
        finally:
            await store.close()

    loaded, count, got = asyncio.run(go())
    assert loaded == len(new) and count == len(new)
    assert got == dict(new)  # 88.1/b replaced whole: its index 9 is gone
