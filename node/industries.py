"""The industries ``idnode seed`` generates for: products, metadata templates, enterprises.

``INDUSTRIES`` holds each industry's stable code (``88.<code>``), GB/T 4754 class, products and
metadata template (attributes from value index 2000, each with a ``Maker`` that draws its data from
the batch being made, a ``Unit``); ``make_enterprises`` makes up an industry's enterprises (its
anchor, the demo's, first). An emulated national topology has more secondary nodes than there are
industries here: codes from 201 up name synthetic industries (``synthetic_industry``), a real
industry's products and template under a regional name. ``select_industries`` and
``industry_by_code`` look codes up. Everything here is plain data or deterministic given its
``random.Random``: ``node.seed`` plans, generates and loads with it.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

FIRST_MONTH = date(2025, 1, 1)  #: production dates run from this month for ``MONTHS`` months,
MONTHS = 22  #: fixed (to 2026-10) so that the data never depends on the day it is generated


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


def make_enterprises(
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
