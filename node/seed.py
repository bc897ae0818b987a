"""``idnode seed``: realistic enterprises and product identifiers per industry, loaded fast.

``make_plan`` picks enterprises for each industry of ``INDUSTRIES`` (stable codes, GB/T 4754
classes, a metadata template each) and shares the identifiers among them; ``chunks`` generates every
identifier as a factory registers it: suffix ``PRD-<class>-<yyyymm>-<serial>``, values 1 URL,
2 product name, 3 model, 4 batch, 5 production date, 6 manufacturer, 7 GTIN-14 (where goods carry
one) and the industry's template attributes from index 2000. Every choice comes from
``random.Random`` seeded with the seed, and values are stamped with the time their batch was made,
so the same seed gives the same records, byte for byte. An emulated national topology has more
secondary nodes than there are industries here: codes from 201 up name synthetic industries
(``synthetic_industry``), a real industry's products and template under a regional name.

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
import dataclasses
import json
import marshal
import os
import queue
import random
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from node.config import Config
from node.store import Record
from node.store.sqlite import BulkRows, Shape, SQLiteStore, bulk_records, bulk_shape
from protocol.identifiers import Handle, ascii_upper, gtin_check_digit
from protocol.records import HandleValue

MANIFEST = "manifest.json"
CHUNK = 20_000  #: identifiers per ``bulk_load`` call, each one commit
SAMPLE = 5_000  #: handles in the manifest's sample (all of them when fewer were seeded)
WORKER_FROM = 200_000  #: from this many identifiers on, a second process generates them
MAX_ENTERPRISES = 5_000  #: per industry (enterprise segments have at most four digits)
FIRST_MONTH = date(2025, 1, 1)  #: production dates run from this month for ``MONTHS`` months,
MONTHS = 22  #: fixed (to 2026-10) so that the data never depends on the day it is generated
_FRAME = struct.Struct(">cQ")  #: a frame from the generating process: tag, payload length


# -- the industry table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    code: str  #: product class in the suffix, e.g. BRK
    name: str  #: value 2
    models: tuple[str, ...]  #: value 3, one per batch


class Unit:
    """What template makers see: the batch being made and, for per-item attributes, the serial.

    ``memo`` is emptied for each batch: per-item makers keep there what only the serial changes.
    """

    __slots__ = ("ent", "product", "model", "made", "batch", "gtin", "serial", "memo")

    def __init__(self, ent: Enterprise) -> None:
        self.ent = ent
        self.product = ent.products[0]
        self.model = ""
        self.made = FIRST_MONTH
        self.batch = ""
        self.gtin = ""
        self.serial = 0
        self.memo: dict[Any, Any] = {}


Maker = Callable[[random.Random, Unit], str]
Row = tuple[Any, ...]


@dataclass(frozen=True)
class Attribute:
    """A metadata template item (index 2000 and up); data is a string in ``format``."""

    index: int
    type: str
    format: str  #: string, number or date (how the template validates the string)
    make: Maker = field(compare=False)
    per_item: bool = False  #: differs per identifier (made from the serial, drawing nothing)


@dataclass(frozen=True)
class Anchor:
    """A fixed enterprise that leads its industry (the demo's, whose prefixes people know)."""

    code: str
    name: str
    domain: str
    gs1_company: str
    products: tuple[str, ...]


@dataclass(frozen=True)
class Industry:
    code: str  #: the industry segment of ``88.<industry>``; never changes
    name: str
    gbt4754: tuple[str, str, str, str]  #: category, division, group, class
    weight: float  #: relative share of identifiers
    batch: int  #: typical units per production batch
    gtin: bool  #: its goods carry a GS1 GTIN (packaged goods, parts), unlike bulk goods
    words: tuple[str, ...]  #: what its enterprises call themselves
    products: tuple[Product, ...]
    template: tuple[Attribute, ...]
    anchor: Anchor | None = None

    @property
    def prefix(self) -> str:
        return f"88.{self.code}"


@dataclass(frozen=True)
class Enterprise:
    prefix: str  #: ``88.<industry>.<enterprise>``
    industry: Industry
    name: str  #: value 6
    domain: str  #: host of its URLs (value 1)
    gs1_company: str  #: 7-digit GS1 company prefix of its GTINs
    products: tuple[Product, ...]
    serial_width: int  #: digits of its serial numbers (at least)
    url: str  #: value 1, with {h} the handle and {s} the suffix


def _products(*specs: str) -> tuple[Product, ...]:
    """``"BRK Disc brake caliper: HX-BC200 HX-BC260"`` -> Product("BRK", name, models)."""
    out = []
    for spec in specs:
        head, _, models = spec.partition(":")
        code, _, name = head.partition(" ")
        out.append(Product(code, name, tuple(models.split())))
    return tuple(out)


def _pick(*options: str) -> Maker:
    return lambda rng, u: rng.choice(options)


def _num(low: float, high: float, places: int = 0) -> Maker:
    return lambda rng, u: f"{rng.uniform(low, high):.{places}f}"


def _by_product(values: dict[str, str]) -> Maker:
    return lambda rng, u: values[u.product.code]


def _digits(u: Unit, at: int, n: int) -> int:
    """A stable number of the enterprise (from its GS1 company prefix), for licences and such."""
    return int(u.ent.gs1_company[at : at + n])


_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  #: no I, O, Q
_VIN_VALUES = dict(
    zip(
        _VIN_CHARS,
        [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9] + list(range(10)),
        strict=True,
    )
)
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_VIN_YEARS = "ABCDEFGHJKLMNPRSTVWXY123456789"  #: model-year codes from 2010


def vin_check_digit(vin: str) -> str:
    """The ISO 3779 / GB 16735 check character (position 9) of a 17-character VIN."""
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True)) % 11
    return "X" if total == 10 else str(total)


def _part_number(rng: random.Random, u: Unit) -> str:
    """A VIN-shaped part number: maker, model, check, year, plant, six-digit serial."""
    head = u.memo.get(_part_number)
    if head is None:
        wmi = "L" + _VIN_CHARS[_digits(u, 3, 2) % 23] + _VIN_CHARS[_digits(u, 5, 2) % 23]
        model = "".join(c for c in u.model.upper() if c in _VIN_CHARS)[-5:].rjust(5, "0")
        plant = _VIN_CHARS[int(u.batch[-2:]) % 23]
        head = u.memo[_part_number] = f"{wmi}{model}0{_VIN_YEARS[(u.made.year - 2010) % 30]}{plant}"
    vin = f"{head}{u.serial % 1000000:06d}"
    return vin[:8] + vin_check_digit(vin) + vin[9:]


_MEDICAL_REG = "国械注准"  #: class III device registered with the national administration


def _registration(rng: random.Random, u: Unit) -> str:
    n = u.ent.industry.products.index(u.product)
    return f"{_MEDICAL_REG}{2019 + n}3{7 + n:02d}{_digits(u, 3, 4):04d}"


_SHELF_DAYS = {"UHT": 180, "YOG": 21, "MPW": 540, "PAS": 7}


def _expiry(rng: random.Random, u: Unit) -> str:
    return (u.made + timedelta(days=_SHELF_DAYS[u.product.code])).isoformat()


def _licence(rng: random.Random, u: Unit) -> str:
    """A food production licence number: SC, food category, then the enterprise's digits."""
    return f"SC105{_digits(u, 2, 5):05d}{_digits(u, 3, 4):04d}{u.ent.gs1_company[-1]}"


def _ccc(rng: random.Random, u: Unit) -> str:
    """A China Compulsory Certification certificate number of the product."""
    return f"20240107{_digits(u, 2, 5):05d}{u.ent.industry.products.index(u.product):03d}"


def _per_batch(pattern: str, *ranges: int) -> Maker:
    """``pattern`` formatted with the batch's production date and a random number per range."""
    return lambda rng, u: pattern.format(u.made, *(rng.randrange(r) for r in ranges))


def _per_item(pattern: str, width: int) -> Maker:
    """``pattern`` formatted with the GS1 company prefix and production date, then the serial."""

    def make(rng: random.Random, u: Unit) -> str:
        head = u.memo.get(pattern)
        if head is None:
            head = u.memo[pattern] = pattern.format(u.ent.gs1_company, u.made)
        return head + str(u.serial).zfill(width)

    return make


# Codes never change (the demo's 118, 101, 106, 112 included): prefixes in manifests and load tests
# depend on them. Products read "CODE Name: model model ...".
INDUSTRIES: tuple[Industry, ...] = (
    Industry("102", "mining", ("B", "06", "061", "0610"), 0.3, 20, False,
        ("Coal Mining", "Energy Mining", "Coal Industry", "Mining"),
        _products("CTH Thermal coal: Q5500-S08 Q5000-S10 Q4500-S12", "CCK Coking coal: JM-13 JM-25",
                  "ANT Anthracite lump: WY-25-50 WY-50-100", "WCL Washed coal fines: XM-0-13 XM-0-25"),
        (Attribute(2000, "calorificValueKcalKg", "number", _num(4200, 6200)),
         Attribute(2001, "sulfurPercent", "number", _num(0.3, 1.5, 2)),
         Attribute(2002, "mineSite", "string",
                   _pick("No. 1 shaft", "No. 3 shaft", "East open pit", "West open pit")))),
    Industry("101", "steel", ("C", "31", "313", "3130"), 0.6, 30, False,
        ("Iron and Steel", "Special Steel", "Steel", "Metallurgy"),
        _products("COIL Hot-rolled steel coil: Q235B-4.0 Q345B-6.0 SPHC-2.5",
                  "PLT Shipbuilding steel plate: AH36-20 DH36-32",
                  "RBR Ribbed rebar bundle: HRB400E-16 HRB500E-25",
                  "CRC Cold-rolled steel coil: DC01-1.0 DC04-0.8"),
        (Attribute(2000, "heatNumber", "string", _per_batch("{0:%y}H{1:05d}", 100000)),
         Attribute(2001, "thicknessMm", "number", _num(0.8, 40.0, 1)),
         Attribute(2002, "standard", "string", _by_product({
             "COIL": "GB/T 3274-2017", "PLT": "GB/T 712-2022", "RBR": "GB/T 1499.2-2018",
             "CRC": "GB/T 5213-2019"}))),
        Anchor("1021", "Northern Special Steel Group Co., Ltd.", "id.nss-steel.example.cn",
               "6921021", ("COIL", "PLT", "RBR"))),
    Industry("106", "electric power", ("D", "44", "442", "4420"), 0.9, 40, False,
        ("Grid Equipment", "Power Equipment", "Electric", "Power Supply"),
        _products("XFMR Distribution transformer: S13-M-400 SCB12-1000",
                  "MTR Smart electricity meter: DDZY-102 DTZY-341",
                  "SWG Ring main unit switchgear: XGN15-12 HXGN-24",
                  "CBL Medium-voltage power cable: YJV22-3x240 YJV-3x95"),
        (Attribute(2000, "ratedVoltageKv", "number", _pick("0.4", "10", "35")),
         Attribute(2001, "materialCode", "string", _per_batch("5000{1:08d}", 10**8)),
         Attribute(2002, "assetNumber", "string", _per_item("{0}{1:%y}", 7), per_item=True)),
        Anchor("3", "Eastern Grid Equipment Co., Ltd.", "trace.egrid-equip.example.cn",
               "6931063", ("XFMR", "MTR", "SWG"))),
    Industry("103", "petrochemical", ("C", "25", "251", "2511"), 0.5, 50, False,
        ("Petrochemical", "Refining and Chemical", "Petroleum"),
        _products("GSL Motor gasoline: 92-VIA 95-VIA 98-VIA", "DSL Automotive diesel: 0-VI -10-VI",
                  "LUB Lubricating base oil: 150N 500N 150BS",
                  "PPR Polypropylene resin: T30S S1003 K8003"),
        (Attribute(2000, "productStandard", "string", _by_product({
             "GSL": "GB 17930-2016", "DSL": "GB 19147-2016", "LUB": "Q/SH PRD0403-2016",
             "PPR": "GB/T 12670-2008"})),
         Attribute(2001, "densityKgM3", "number", _num(720, 905, 1)),
         Attribute(2002, "tankNumber", "string", _per_batch("T-{1}", 349)))),
    Industry("104", "chemical", ("C", "26", "261", "2614"), 0.7, 100, False,
        ("Chemical", "Chemical Industry", "Fine Chemicals", "Chemical Materials"),
        _products("MEG Ethylene glycol: MEG-PG MEG-IG", "MEO Methanol: AA-GRADE A-GRADE",
                  "ACA Glacial acetic acid: GAA-998 GAA-995", "NAOH Caustic soda flakes: NAOH-99 NAOH-96",
                  "PVC PVC resin: SG-5 SG-8"),
        (Attribute(2000, "casNumber", "string", _by_product({
             "MEG": "107-21-1", "MEO": "67-56-1", "ACA": "64-19-7", "NAOH": "1310-73-2",
             "PVC": "9002-86-2"})),
         Attribute(2001, "purityPercent", "number", _num(95.0, 99.99, 2)),
         Attribute(2002, "hazardClass", "string", _by_product({
             "MEG": "not regulated", "MEO": "UN1230 class 3", "ACA": "UN2789 class 8",
             "NAOH": "UN1823 class 8", "PVC": "not regulated"})))),
    Industry("105", "electronic information", ("C", "39", "397", "3973"), 1.6, 2000, True,
        ("Microelectronics", "Semiconductor", "Electronic Technology", "Integrated Circuit"),
        _products("MCU Microcontroller: HC32F460 HC32L130 HC32F030",
                  "PMIC Power management IC: PM8150 PM6125", "DRAM LPDDR4X memory: LP4X-4G LP4X-8G",
                  "MOD 5G industrial module: RG500Q RM500U FG650"),
        (Attribute(2000, "waferLot", "string", _per_batch("W{0:%y}{1:04X}{2:02d}", 16**4, 25)),
         Attribute(2001, "packageType", "string", _pick("QFN-48", "LQFP-64", "BGA-200", "LGA-41")),
         Attribute(2002, "firmwareVersion", "string", _pick("V1.2.3", "V1.3.0", "V2.0.1")))),
    Industry("107", "high-end equipment", ("C", "34", "349", "3491"), 0.6, 10, False,
        ("Robotics", "Intelligent Equipment", "Automation", "Precision Machinery"),
        _products("ROB Six-axis industrial robot: ER20-1700 ER50-2100 ER165-2650",
                  "SCR SCARA robot: SR6-600 SR10-800", "RED Precision RV reducer: RV-40E RV-110E",
                  "SRV AC servo motor: SM130-10 SM180-30"),
        (Attribute(2000, "ratedPayloadKg", "number", _pick("6", "20", "50", "165")),
         Attribute(2001, "axisCount", "number",
                   _by_product({"ROB": "6", "SCR": "4", "RED": "1", "SRV": "1"})),
         Attribute(2002, "controllerSerial", "string", _per_item("CS{0}{1:%y%m}", 6), per_item=True))),
    Industry("118", "automobiles", ("C", "36", "367", "3670"), 1.4, 500, True,
        ("Auto Parts", "Brake Systems", "Automotive Components", "Auto Electronics", "Power Battery"),
        _products("BRK Disc brake caliper: HX-BC200 HX-BC260 HX-BC310",
                  "ECU Brake control unit: HX-EBS9 HX-EBS11",
                  "PAD Ceramic brake pad set: HX-P45 HX-P52 HX-P60",
                  "SHK Shock absorber: SA-F55 SA-R48", "BAT Traction battery pack: LFP-60 LFP-75 NCM-90"),
        (Attribute(2000, "partNumber", "string", _part_number, per_item=True),
         Attribute(2001, "oemCustomer", "string",
                   _pick("FAW", "SAIC", "Dongfeng", "Changan", "GAC", "BYD", "Geely")),
         Attribute(2002, "ppapLevel", "number", _pick("3", "3", "4", "5"))),
        Anchor("8", "Huaxia Auto Brake Systems Co., Ltd.", "trace.huaxia-brake.example.cn",
               "6901180", ("BRK", "ECU", "PAD"))),
    Industry("1031", "new materials", ("C", "30", "309", "3091"), 0.4, 100, False,
        ("New Materials", "Advanced Materials", "Carbon Materials", "Composite Materials"),
        _products("CFT Carbon fibre tow: T300-12K T700S-12K T800H-24K",
                  "PRE Carbon fibre prepreg: UD-150 WOVEN-200", "GRP Graphite electrode: UHP-450 UHP-600",
                  "AGL Aerogel insulation blanket: AG-5 AG-10"),
        (Attribute(2000, "tensileStrengthMpa", "number", _num(3500, 5900)),
         Attribute(2001, "arealWeightGm2", "number", _num(100, 300)),
         Attribute(2002, "standard", "string",
                   _pick("GB/T 26752-2020", "GB/T 32993-2016", "YB/T 4088-2015")))),
    Industry("1042", "machine tools", ("C", "34", "342", "3421"), 0.4, 5, False,
        ("Machine Tool", "CNC Machine", "Precision Machine Tool", "Heavy Machine Tool"),
        _products("VMC Vertical machining centre: VMC850 VMC1160 VMC1580", "LTH CNC lathe: CK6150 CK6180",
                  "GRD Surface grinder: M7140 M7160", "HMC Horizontal machining centre: HMC630 HMC800"),
        (Attribute(2000, "cncSystem", "string", _pick("GSK 980TDi", "HNC-848D", "KND K2000", "FANUC 0i-MF")),
         Attribute(2001, "spindleSpeedRpm", "number", _pick("8000", "10000", "12000", "15000")),
         Attribute(2002, "positioningAccuracyMm", "number", _pick("0.005", "0.008", "0.010")))),
    Industry("110", "shipbuilding", ("C", "37", "373", "3731"), 0.15, 20, False,
        ("Shipbuilding", "Heavy Industry", "Marine Engineering", "Shipyard"),
        _products("BLK Hull block: B-DB01 B-SS12 B-ER05", "PIP Pipe spool: PS-DN100 PS-DN250",
                  "HAT Hatch cover: HC-12 HC-18", "PRP Propeller shaft: PS-420 PS-580"),
        (Attribute(2000, "classSociety", "string", _pick("CCS", "DNV", "ABS", "LR", "BV")),
         Attribute(2001, "hullNumber", "string", _per_batch("H{1:04d}", 1480)),
         Attribute(2002, "materialCertificate", "string", _per_batch("MC{0:%y}{1:05d}", 10**5)))),
    Industry("111", "medical equipment", ("C", "35", "358", "3581"), 0.8, 300, True,
        ("Medical Technology", "Medical Devices", "Biomedical Engineering", "Healthcare Equipment"),
        _products("MON Patient monitor: PM-7000 PM-9000", "INF Infusion pump: IP-100 IP-300",
                  "SYR Disposable syringe: DS-5ML DS-10ML", "ECG Electrocardiograph: ECG-1200 ECG-300G"),
        (Attribute(2000, "registrationNumber", "string", _registration),
         Attribute(2001, "udiDi", "string", lambda rng, u: f"(01){u.gtin}"),
         Attribute(2002, "expiryDate", "date",
                   lambda rng, u: u.made.replace(year=u.made.year + 3).isoformat()))),
    Industry("113", "agricultural machinery", ("C", "35", "357", "3571"), 0.5, 20, False,
        ("Agricultural Machinery", "Agricultural Equipment", "Farm Machinery", "Harvester"),
        _products("TRC Wheeled tractor: LX904 LX1304 LX2204", "HRV Combine harvester: 4LZ-6 4LZ-8",
                  "TRN Rice transplanter: 2ZG-6 2ZG-8", "SPR Boom sprayer: 3WP-500 3WP-1000"),
        (Attribute(2000, "enginePowerKw", "number", _num(50, 160, 1)),
         Attribute(2001, "emissionStage", "string", _pick("China IV", "China IV", "China III")),
         Attribute(2002, "promotionCertificate", "string", _per_batch("NJTG-{0:%Y}-{1:04d}", 10**4)))),
    Industry("114", "home appliances", ("C", "38", "385", "3851"), 1.5, 800, True,
        ("Home Appliances", "Electric Appliances", "Smart Home", "Household Appliances"),
        _products("REF Refrigerator: BCD-470 BCD-520 BCD-630", "AC Split air conditioner: KFR-35GW KFR-50LW",
                  "WM Washing machine: XQG100 XQG120", "DW Dishwasher: WQP12 WQP15"),
        (Attribute(2000, "energyEfficiencyGrade", "number", _pick("1", "1", "2", "3")),
         Attribute(2001, "cccCertificate", "string", _ccc),
         Attribute(2002, "ratedPowerW", "number",
                   _by_product({"REF": "120", "AC": "1050", "WM": "2000", "DW": "1800"})))),
    Industry("115", "building materials", ("C", "30", "301", "3011"), 0.7, 200, False,
        ("Cement", "Building Materials", "Construction Materials", "Concrete"),
        _products("OPC Ordinary Portland cement: PO42.5 PO52.5", "PSC Slag Portland cement: PS32.5 PS42.5",
                  "CLK Cement clinker: CK-A CK-B", "RMC Ready-mixed concrete: C30 C40 C50"),
        (Attribute(2000, "standard", "string", _by_product({
             "OPC": "GB 175-2023", "PSC": "GB 175-2023", "CLK": "GB/T 21372-2024",
             "RMC": "GB/T 14902-2012"})),
         Attribute(2001, "compressiveStrength28dMpa", "number", _num(35, 62, 1)),
         Attribute(2002, "kilnLine", "string", _pick("Line 1", "Line 2", "Line 3")))),
    # Not among the fifteen named industries; the demo has always had a dairy.
    Industry("112", "food and beverage", ("C", "14", "144", "1441"), 1.4, 2400, True,
        ("Dairy", "Food", "Foods", "Beverage"),
        _products("UHT UHT whole milk 250 ml x 24: GV-UHT250 GV-UHT250L",
                  "YOG Set yogurt 100 g x 12: GV-Y100 GV-Y100S", "MPW Whole milk powder 800 g: MP800 MP800G",
                  "PAS Pasteurised milk 950 ml: PM950 PM950A"),
        (Attribute(2000, "shelfLifeDays", "number", _by_product({k: str(v) for k, v in _SHELF_DAYS.items()})),
         Attribute(2001, "expiryDate", "date", _expiry),
         Attribute(2002, "storageCondition", "string", _by_product({
             "UHT": "room temperature", "YOG": "2-6 C", "MPW": "cool and dry", "PAS": "2-6 C"})),
         Attribute(2003, "productionLicence", "string", _licence)),
        Anchor("27", "Green Valley Dairy Co., Ltd.", "trace.greenvalley-dairy.example.cn",
               "6941127", ("UHT", "YOG"))),
)  # fmt: skip

_REGIONS = (
    "Huaxia", "Northern", "Eastern", "Southern", "Western", "Jiangnan", "Lingnan", "Bohai", "Tianfu",
    "Zhongyuan", "Qilu", "Jinling", "Minjiang", "Changjiang", "Huanghe", "Taihu", "Xiangjiang",
    "Songhua", "Qinling", "Haixi", "Pearl River", "Yunling", "Kunlun", "Taishan", "Hengshan",
    "Dongting", "Poyang", "Wanjiang", "Liaohe", "Huaihe", "Jinghua", "Sanjin", "Longyuan",
)  # fmt: skip
_LEGAL = (
    "Co., Ltd.",
    "Co., Ltd.",
    "Group Co., Ltd.",
    "Technology Co., Ltd.",
    "Industrial Co., Ltd.",
)
_HOSTS = ("trace", "id", "idis", "www")
_URLS = ("https://{d}/p/{s}", "https://{d}/trace?id={h}", "https://{d}/id/{h}")


def _enterprises(
    industry: Industry, rng: random.Random, count: int, names: set[str], gs1: set[str]
) -> list[Enterprise]:
    """``count`` enterprises of ``industry``: its anchor first, then made-up ones (``names`` and
    ``gs1``, the GS1 company prefixes, are those taken)."""
    out = []
    codes: set[int] = set()
    if industry.anchor is not None:
        a = industry.anchor
        products = tuple(p for p in industry.products if p.code in a.products)
        out.append(
            Enterprise(
                f"{industry.prefix}.{a.code}", industry, a.name, a.domain, a.gs1_company,
                products, 6, "https://" + a.domain + "/p/{s}",
            )
        )  # fmt: skip
        codes.add(int(a.code))
        names.add(a.name)
        gs1.add(a.gs1_company)
    while len(out) < count:
        width = rng.choices((1, 2, 3, 4), (1, 3, 4, 2))[0]
        number = rng.randrange(10 ** (width - 1), 10**width)
        if number in codes:
            continue
        codes.add(number)
        # segment widths vary in the wild, zero-padded ones included (88.101.0042)
        code = f"{number:04d}" if width < 4 and rng.random() < 0.1 else str(number)
        region, word, legal = rng.choice(_REGIONS), rng.choice(industry.words), rng.choice(_LEGAL)
        name = f"{region} {word} {legal}"
        twin = 1
        while name in names:  # the works of a big group are numbered
            twin += 1
            name = f"{region} {word} No. {twin} {legal}"
        names.add(name)
        slug = "-".join(name.lower().replace(",", "").replace(".", "").split()[:2])
        domain = f"{rng.choice(_HOSTS)}.{slug}{number}.example.cn"
        k = rng.randint(2, min(4, len(industry.products)))
        picked = sorted(rng.sample(range(len(industry.products)), k))
        url = rng.choice(_URLS).replace("{d}", domain)
        company = f"69{rng.randrange(10**5):05d}"  # China's GS1 prefixes are 690-699
        while company in gs1:
            company = f"69{rng.randrange(10**5):05d}"
        gs1.add(company)
        out.append(
            Enterprise(
                f"{industry.prefix}.{code}", industry, name, domain, company,
                tuple(industry.products[i] for i in picked), rng.choice((5, 6, 6, 7)), url,
            )
        )  # fmt: skip
    return out


# -- synthetic industries (an emulated national topology has more secondary nodes than INDUSTRIES) --

SYNTHETIC_FIRST = 201  #: synthetic industry codes run from 201 to ``SYNTHETIC_LAST``,
SYNTHETIC_LAST = 999  #: clear of every real code (three-digit 10x-11x and four-digit ones)
_REAL_CODES = frozenset(i.code for i in INDUSTRIES)
assert not any(SYNTHETIC_FIRST <= int(c) <= SYNTHETIC_LAST for c in _REAL_CODES)


def synthetic_codes(count: int) -> tuple[str, ...]:
    """The first ``count`` synthetic industry codes: the same count, the same codes, always."""
    if not 0 <= count <= SYNTHETIC_LAST - SYNTHETIC_FIRST + 1:
        raise ValueError(f"at most {SYNTHETIC_LAST - SYNTHETIC_FIRST + 1} synthetic industries")
    return tuple(str(SYNTHETIC_FIRST + k) for k in range(count))


def synthetic_industry(code: str) -> Industry | None:
    """The industry of a synthetic ``code`` (None for any other code): a real industry's products
    and template under a new code and a regional name, so that a node emulating, say, the 40th
    secondary node holds data as realistic as the first one's. Derived from the code alone, so a
    ``SeedSpec`` naming it stays plain data (the generating process rebuilds it)."""
    if not (code.isdigit() and code == str(int(code))):
        return None
    k = int(code) - SYNTHETIC_FIRST
    if not 0 <= k <= SYNTHETIC_LAST - SYNTHETIC_FIRST:
        return None
    base = INDUSTRIES[k % len(INDUSTRIES)]
    turn = k // len(INDUSTRIES)
    region = _REGIONS[turn % len(_REGIONS)]
    again = f" {turn // len(_REGIONS) + 1}" if turn >= len(_REGIONS) else ""
    name = f"{base.name} ({region}{again} region)"
    return dataclasses.replace(base, code=code, name=name, anchor=None)


def industry_by_code(code: str) -> Industry:
    """A real industry of ``INDUSTRIES`` or a synthetic one; ValueError for any other code."""
    for industry in INDUSTRIES:
        if industry.code == code:
            return industry
    found = synthetic_industry(code)
    if found is None:
        raise ValueError(f"no industry has the code {code!r}")
    return found


# -- the plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedSpec:
    """What to generate; the same spec gives the same data."""

    seed: int = 1  #: seed of every random choice
    identifiers: int = 10_000  #: product identifiers in all
    industries: tuple[str, ...] = ()  #: industry codes; empty: all of them
    enterprises_per_industry: int = 8
    case_sensitive_suffix: bool = False  #: the node's suffix rule, which store keys follow


@dataclass(frozen=True)
class Plan:
    spec: SeedSpec
    industries: tuple[Industry, ...]
    enterprises: tuple[Enterprise, ...]  #: in store key order, the order identifiers come in
    counts: tuple[int, ...]  #: identifiers of each enterprise


def select_industries(text: str | None) -> tuple[str, ...]:
    """Codes named by ``text``: empty or ``all``; K, the first K; or names or codes (synthetic ones
    too, see ``synthetic_industry``), with commas."""
    if not text or text.strip().lower() == "all":
        return tuple(i.code for i in INDUSTRIES)
    text = text.strip()
    if text.isdigit() and text not in _REAL_CODES and synthetic_industry(text) is None:
        if not 1 <= int(text) <= len(INDUSTRIES):
            raise ValueError(f"--industries K needs 1 <= K <= {len(INDUSTRIES)}")
        return tuple(i.code for i in INDUSTRIES[: int(text)])
    codes = []
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        if synthetic_industry(part) is not None:
            codes.append(part)
            continue
        found = [i for i in INDUSTRIES if part in (i.code, i.name)]
        found = found or [i for i in INDUSTRIES if i.name.startswith(part)]
        if len(found) != 1:
            known = "; ".join(f"{i.code} {i.name}" for i in INDUSTRIES)
            problem = "is ambiguous" if found else "is unknown"
            raise ValueError(f"industry {part!r} {problem}; known: {known}")
        codes.append(found[0].code)
    return tuple(dict.fromkeys(codes))


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
        for ent in _enterprises(industry, rng, spec.enterprises_per_industry, names, gs1):
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
    fields = json.loads(argv[0])
    spec = SeedSpec(**{**fields, "industries": tuple(fields["industries"])})
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


async def _seeded(store: SQLiteStore, path: Path, plan: Plan) -> dict[str, Any] | None:
    """The manifest at ``path`` when it describes ``plan`` and the store holds its sample's ends."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        same = (
            old["version"] == 1
            and (old["seed"], old["identifiers"]) == (plan.spec.seed, plan.spec.identifiers)
            and [e["prefix"] for e in old["enterprises"]] == [e.prefix for e in plan.enterprises]
        )
        handles = sorted(s["handle"] for s in old["sample"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for handle in handles[:1] + handles[-1:] if same else ():
        prefix, _, suffix = handle.partition("/")
        key = Handle(prefix, suffix).key(case_sensitive_suffix=plan.spec.case_sensitive_suffix)
        if await store.get(key) is None:
            return None
    return old if same else None


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
    started = time.perf_counter()
    if not config.admin_secret:
        raise ValueError("seeding homes prefixes, which needs an admin secret (--admin-secret)")
    plan = make_plan(spec)
    path = Path(config.data_dir) / MANIFEST
    store = SQLiteStore(config.data_dir, max_batch=config.write_batch_max)
    await store.open()
    homing = _Homing(store, config, plan, await store.homed_prefixes())
    try:
        manifest = await _seeded(store, path, plan)
        if manifest is not None:
            await homing.finish()
            return SeedResult(0, time.perf_counter() - started, 0.0, manifest, path)
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


def main(args: argparse.Namespace) -> int:
    """``idnode seed``: 0 when seeded (or already), 2 on a bad argument."""
    from node import config as config_mod

    config = config_mod.load(args)
    try:
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
        print(f"idnode seed: {exc}", file=sys.stderr)
        return 2
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
