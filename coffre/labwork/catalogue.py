"""The lab test catalogue: tests, panels, reference ranges, flags, delta checks and
calculated results.

Pure Python on purpose (no Django, no database): analysers, order entry, validation and
reports all read it, and it can be tested on its own. Tests are keyed by LOINC; each also
has a short local code, the one analysers send and technicians type.

Stored results are canonical text: "12.5", "<0.5", ">100", a coded choice or free text.
French display (decimal comma) is only produced by `format_value` and `format_range`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

Sex = str  # "M" or "F" (or "" unknown)

MAX_TEXT = 2000
_NUMBER = re.compile(r"^([<>]?)(-?(?:\d+(?:\.\d*)?|\.\d+))$")


class UnknownTest(KeyError):
    """A code that is neither a LOINC, a local code nor (for `expand`) a panel code
    (``test_code``, as given)."""

    def __init__(self, message: str, test_code: str = "") -> None:
        super().__init__(message)
        self.test_code = test_code

    def __str__(self) -> str:
        # KeyError would repr() the message; keep it readable.
        return str(self.args[0]) if self.args else "unknown test code"


class InvalidResult(ValueError):
    """A typed or received value that cannot be stored for this test. The message names
    the test and the rule, never the value (errors may reach a log); ``rule`` and
    ``params`` say it to callers that reword it (coffre.labwork.workflow)."""

    def __init__(self, message: str, rule: str, **params: object) -> None:
        super().__init__(message)
        self.rule = rule
        self.params = params


@dataclass(frozen=True)
class Range:
    low: float | None = None
    high: float | None = None
    critical_low: float | None = None
    critical_high: float | None = None
    sex: str = ""  # "" = any
    min_age_days: int = 0
    max_age_days: int | None = None  # exclusive


@dataclass(frozen=True)
class TestDef:
    __test__ = False  # not a pytest test class, even when imported into a test module

    loinc: str
    code: str
    label: str
    unit: str
    specimen: str
    bench: str
    kind: str = "numeric"  # "numeric" | "text" | "coded"
    decimals: int = 1
    ranges: tuple[Range, ...] = ()
    choices: tuple[str, ...] = ()
    delta_percent: float | None = None
    calculated: bool = False
    inputs: tuple[str, ...] = ()  # LOINC codes a calculated test needs


@dataclass(frozen=True)
class Panel:
    code: str
    label: str
    loincs: tuple[str, ...]


SPECIMEN_TYPES: dict[str, str] = {
    "EDTA": "Sang total EDTA (tube violet)",
    "SERUM": "Sérum (tube sec / gel)",
    "CITRATE": "Plasma citraté (tube bleu)",
    "FLUORIDE": "Plasma fluoré (tube gris)",
    "URINE": "Urines",
    "NASO": "Écouvillon nasopharyngé",
}

BENCHES: dict[str, str] = {
    "HEMATO": "Hématologie",
    "BIOCHIMIE": "Biochimie",
    "IMMUNO": "Immunologie / hormonologie",
    "HEMOSTASE": "Hémostase",
    "IMMUNOHEMATO": "Immuno-hématologie",
    "SEROLOGIE": "Sérologie infectieuse",
    "MICROBIO": "Microbiologie / biologie moléculaire",
    "URINES": "Urines",
}


def _years(n: float) -> int:
    # Ages are in days; a year is 365.25 days, close enough at range boundaries.
    return round(n * 365.25)


_CHILD = _years(0.5)  # child ranges start at 6 months: neonates need their own ranges
_ADULT = _years(15)
_MAJOR = _years(18)

Bounds = tuple[float | None, float | None]


def _sexed(male: Bounds, female: Bounds, crit: Bounds = (None, None),
           min_age_days: int = 0) -> tuple[Range, ...]:
    """Male, female, and an any-sex union used when the sex is unknown."""
    lows = [b[0] for b in (male, female)]
    highs = [b[1] for b in (male, female)]
    union = (
        None if None in lows else min(x for x in lows if x is not None),
        None if None in highs else max(x for x in highs if x is not None),
    )
    return tuple(
        Range(*bounds, *crit, sex=sex, min_age_days=min_age_days)
        for bounds, sex in ((male, "M"), (female, "F"), (union, ""))
    )


def _n(loinc: str, code: str, label: str, unit: str, specimen: str, bench: str,
       *ranges: Range, decimals: int = 1, delta: float | None = None) -> TestDef:
    return TestDef(loinc, code, label, unit, specimen, bench, decimals=decimals,
                   ranges=ranges, delta_percent=delta)


_SEROLOGY = ("négatif", "positif", "douteux")


def _coded(loinc: str, code: str, label: str, specimen: str, bench: str,
           choices: tuple[str, ...] = _SEROLOGY) -> TestDef:
    return TestDef(loinc, code, label, "", specimen, bench, kind="coded", decimals=0,
                   choices=choices)


_ALL_TESTS: tuple[TestDef, ...] = (
    # --- Hématologie --------------------------------------------------------------------
    _n("718-7", "HB", "Hémoglobine", "g/dL", "EDTA", "HEMATO",
       # Under 6 months: no reference interval here, but a critical value still flags.
       Range(critical_low=7.0, max_age_days=_CHILD),
       Range(11.0, 14.5, 7.0, 20.0, min_age_days=_CHILD, max_age_days=_ADULT),
       *_sexed((13.0, 17.0), (12.0, 16.0), (7.0, 20.0), _ADULT), delta=20),
    _n("4544-3", "HT", "Hématocrite", "%", "EDTA", "HEMATO",
       *_sexed((40.0, 52.0), (37.0, 47.0), (20.0, 60.0)), delta=20),
    _n("789-8", "GR", "Hématies", "T/L", "EDTA", "HEMATO",
       *_sexed((4.50, 5.70), (4.00, 5.20)), decimals=2),
    _n("787-2", "VGM", "Volume globulaire moyen (VGM)", "fL", "EDTA", "HEMATO",
       Range(80, 100), decimals=0),
    _n("785-6", "TCMH", "Teneur corpusculaire moyenne en hémoglobine (TCMH)", "pg", "EDTA",
       "HEMATO", Range(27.0, 32.0)),
    _n("786-4", "CCMH", "Concentration corpusculaire moyenne en hémoglobine (CCMH)", "g/dL",
       "EDTA", "HEMATO", Range(32.0, 36.0)),
    _n("6690-2", "GB", "Leucocytes", "G/L", "EDTA", "HEMATO",
       Range(4.0, 10.0, 1.0, 50.0), decimals=2, delta=50),
    _n("751-8", "PNN", "Polynucléaires neutrophiles", "G/L", "EDTA", "HEMATO",
       Range(1.5, 7.0, 0.5), decimals=2),
    _n("731-0", "LYMPH", "Lymphocytes", "G/L", "EDTA", "HEMATO",
       Range(1.0, 4.0), decimals=2),
    _n("742-7", "MONO", "Monocytes", "G/L", "EDTA", "HEMATO", Range(0.2, 1.0), decimals=2),
    _n("711-2", "PNE", "Polynucléaires éosinophiles", "G/L", "EDTA", "HEMATO",
       Range(high=0.5), decimals=2),
    _n("704-7", "PNB", "Polynucléaires basophiles", "G/L", "EDTA", "HEMATO",
       Range(high=0.1), decimals=2),
    _n("777-3", "PLQ", "Plaquettes", "G/L", "EDTA", "HEMATO",
       Range(150, 400, 20, 1000), decimals=0, delta=50),
    _n("14196-0", "RETIC", "Réticulocytes", "G/L", "EDTA", "HEMATO",
       Range(20, 120), decimals=0),
    _n("4537-7", "VS", "Vitesse de sédimentation (1re heure)", "mm", "EDTA", "HEMATO",
       *_sexed((None, 15), (None, 20)), decimals=0),
    # --- Biochimie ----------------------------------------------------------------------
    _n("2951-2", "NA", "Sodium", "mmol/L", "SERUM", "BIOCHIMIE",
       Range(136, 145, 120, 160), decimals=0, delta=10),
    _n("2823-3", "K", "Potassium", "mmol/L", "SERUM", "BIOCHIMIE",
       Range(3.5, 5.0, 2.8, 6.2), delta=20),
    _n("2075-0", "CL", "Chlore", "mmol/L", "SERUM", "BIOCHIMIE", Range(98, 107), decimals=0),
    _n("1963-8", "BICAR", "Bicarbonates", "mmol/L", "SERUM", "BIOCHIMIE",
       Range(22, 29, 10, 40), decimals=0),
    _n("2885-2", "PROT", "Protides totaux", "g/L", "SERUM", "BIOCHIMIE",
       Range(64, 83), decimals=0),
    _n("14749-6", "GLY", "Glucose", "mmol/L", "FLUORIDE", "BIOCHIMIE",
       Range(3.9, 6.1, 2.2, 25.0), decimals=2),
    _n("14682-9", "CREA", "Créatinine", "µmol/L", "SERUM", "BIOCHIMIE",
       *_sexed((59, 104), (45, 84)), decimals=0, delta=50),
    TestDef("98979-8", "DFG", "Débit de filtration glomérulaire estimé (CKD-EPI 2021)",
            "mL/min/1,73 m²", "SERUM", "BIOCHIMIE", decimals=0,
            ranges=(Range(low=60),),  # below 60: chronic kidney disease threshold
            calculated=True, inputs=("14682-9",)),
    _n("22664-7", "UREE", "Urée", "mmol/L", "SERUM", "BIOCHIMIE", Range(2.5, 7.5), delta=50),
    _n("14933-6", "AU", "Acide urique", "µmol/L", "SERUM", "BIOCHIMIE",
       *_sexed((208, 428), (155, 357)), decimals=0),
    _n("2000-8", "CA", "Calcium", "mmol/L", "SERUM", "BIOCHIMIE",
       Range(2.15, 2.55, 1.60, 3.25), decimals=2, delta=20),
    _n("2601-3", "MG", "Magnésium", "mmol/L", "SERUM", "BIOCHIMIE",
       Range(0.66, 1.07, 0.40), decimals=2),
    _n("14879-1", "PHOS", "Phosphates", "mmol/L", "SERUM", "BIOCHIMIE",
       Range(0.81, 1.45, 0.30), decimals=2),
    _n("1751-7", "ALB", "Albumine", "g/L", "SERUM", "BIOCHIMIE", Range(35.0, 50.0)),
    _n("2093-3", "CT", "Cholestérol total", "g/L", "SERUM", "BIOCHIMIE",
       Range(high=2.00), decimals=2),
    _n("2085-9", "HDL", "Cholestérol HDL", "g/L", "SERUM", "BIOCHIMIE",
       Range(low=0.40), decimals=2),
    _n("2571-8", "TG", "Triglycérides", "g/L", "SERUM", "BIOCHIMIE",
       Range(high=1.50), decimals=2),
    TestDef("13457-7", "LDL", "Cholestérol LDL (calculé, Friedewald)", "g/L", "SERUM",
            "BIOCHIMIE", decimals=2, ranges=(Range(high=1.60),), calculated=True,
            inputs=("2093-3", "2085-9", "2571-8")),
    _n("1920-8", "ASAT", "ASAT (transaminases)", "UI/L", "SERUM", "BIOCHIMIE",
       Range(high=35), decimals=0, delta=100),
    _n("1742-6", "ALAT", "ALAT (transaminases)", "UI/L", "SERUM", "BIOCHIMIE",
       Range(high=45), decimals=0, delta=100),
    _n("2324-2", "GGT", "Gamma-glutamyltransférase (GGT)", "UI/L", "SERUM", "BIOCHIMIE",
       *_sexed((None, 55), (None, 38)), decimals=0),
    _n("6768-6", "PAL", "Phosphatases alcalines", "UI/L", "SERUM", "BIOCHIMIE",
       Range(100, 420, max_age_days=_MAJOR), Range(40, 130, min_age_days=_MAJOR),
       decimals=0),
    _n("14631-6", "BILT", "Bilirubine totale", "µmol/L", "SERUM", "BIOCHIMIE",
       Range(high=17), decimals=0),
    _n("1988-5", "CRP", "Protéine C réactive (CRP)", "mg/L", "SERUM", "BIOCHIMIE",
       Range(high=5.0)),
    _n("2157-6", "CK", "Créatine kinase (CK)", "UI/L", "SERUM", "BIOCHIMIE",
       *_sexed((None, 190), (None, 170)), decimals=0),
    _n("2532-0", "LDH", "Lactate déshydrogénase (LDH)", "UI/L", "SERUM", "BIOCHIMIE",
       Range(120, 246), decimals=0),
    _n("3040-3", "LIP", "Lipase", "UI/L", "SERUM", "BIOCHIMIE", Range(high=60), decimals=0),
    _n("89579-7", "TNI", "Troponine I hypersensible", "ng/L", "SERUM", "BIOCHIMIE",
       *_sexed((None, 34.0), (None, 16.0)), delta=20),
    _n("33762-6", "NTBNP", "NT-proBNP", "ng/L", "SERUM", "BIOCHIMIE",
       Range(high=125, max_age_days=_years(75)), Range(high=450, min_age_days=_years(75)),
       decimals=0),
    _n("33959-8", "PCT", "Procalcitonine", "µg/L", "SERUM", "BIOCHIMIE",
       Range(high=0.50), decimals=2),
    _n("14798-3", "FER", "Fer sérique", "µmol/L", "SERUM", "BIOCHIMIE", Range(10.0, 30.0)),
    _n("2276-4", "FERRI", "Ferritine", "µg/L", "SERUM", "BIOCHIMIE",
       *_sexed((30, 400), (15, 150)), decimals=0),
    _n("3034-6", "TRF", "Transferrine", "g/L", "SERUM", "BIOCHIMIE",
       Range(2.00, 3.60), decimals=2),
    TestDef("2502-3", "CST", "Coefficient de saturation de la transferrine", "%", "SERUM",
            "BIOCHIMIE", decimals=0, ranges=(Range(20, 40),), calculated=True,
            inputs=("14798-3", "3034-6")),
    _n("2132-9", "B12", "Vitamine B12", "ng/L", "SERUM", "BIOCHIMIE",
       Range(200, 900), decimals=0),
    _n("2284-8", "B9", "Folates sériques", "µg/L", "SERUM", "BIOCHIMIE", Range(4.0, 20.0)),
    _n("62292-8", "VITD", "25-OH vitamine D (D2 + D3)", "ng/mL", "SERUM", "BIOCHIMIE",
       Range(30.0, 100.0)),
    _n("4548-4", "HBA1C", "Hémoglobine glyquée (HbA1c)", "%", "EDTA", "BIOCHIMIE",
       Range(4.0, 6.0)),
    # --- Immunologie / hormonologie ------------------------------------------------------
    _n("3016-3", "TSH", "TSH", "mUI/L", "SERUM", "IMMUNO", Range(0.40, 4.00), decimals=2),
    _n("14920-3", "T4L", "T4 libre", "pmol/L", "SERUM", "IMMUNO", Range(12.0, 22.0)),
    _n("2857-1", "PSA", "PSA total", "µg/L", "SERUM", "IMMUNO",
       Range(high=4.00, sex="M"), decimals=2, delta=50),
    _n("21198-7", "HCG", "β-hCG (quantitatif)", "UI/L", "SERUM", "IMMUNO",
       Range(high=5), decimals=0),
    # --- Hémostase ----------------------------------------------------------------------
    _n("5894-1", "TP", "Taux de prothrombine (TP)", "%", "CITRATE", "HEMOSTASE",
       Range(low=70), decimals=0),
    _n("6301-6", "INR", "INR", "", "CITRATE", "HEMOSTASE",
       Range(0.80, 1.20, critical_high=5.0), decimals=2, delta=50),
    _n("63561-5", "TCA", "Temps de céphaline activée (ratio patient / témoin)", "",
       "CITRATE", "HEMOSTASE", Range(0.80, 1.20), decimals=2),
    _n("3255-7", "FIB", "Fibrinogène", "g/L", "CITRATE", "HEMOSTASE",
       Range(2.00, 4.00, 1.00), decimals=2),
    _n("48065-7", "DDI", "D-dimères", "µg/L FEU", "CITRATE", "HEMOSTASE",
       Range(high=500), decimals=0),
    # --- Immuno-hématologie -------------------------------------------------------------
    _coded("883-9", "ABO", "Groupe sanguin ABO", "EDTA", "IMMUNOHEMATO",
           ("A", "B", "AB", "O")),
    _coded("10331-7", "RH", "Rhésus D (RH1)", "EDTA", "IMMUNOHEMATO", ("positif", "négatif")),
    _coded("890-4", "RAI", "Recherche d'agglutinines irrégulières (RAI)", "EDTA",
           "IMMUNOHEMATO", ("négatif", "positif")),
    # --- Sérologie et biologie moléculaire ----------------------------------------------
    _coded("56888-1", "VIH", "Dépistage VIH 1 et 2 (Ac + Ag p24)", "SERUM", "SEROLOGIE"),
    _coded("5196-1", "AGHBS", "Antigène HBs", "SERUM", "SEROLOGIE"),
    _coded("16128-1", "VHC", "Anticorps anti-VHC", "SERUM", "SEROLOGIE"),
    _n("16935-9", "ACHBS", "Anticorps anti-HBs", "UI/L", "SERUM", "SEROLOGIE",
       Range(low=10), decimals=0),
    _coded("94500-6", "COV2", "SARS-CoV-2 (RT-PCR)", "NASO", "MICROBIO",
           ("non détecté", "détecté", "ininterprétable")),
    # --- Urines -------------------------------------------------------------------------
    _n("30405-5", "LEUCU", "Leucocytes urinaires (ECBU)", "/mL", "URINE", "URINES",
       Range(high=10000), decimals=0),
    _n("2890-2", "PCU", "Rapport protéinurie / créatininurie", "g/g", "URINE", "URINES",
       Range(high=0.15), decimals=2),
    TestDef("630-4", "ECBU", "Culture urinaire (ECBU)", "", "URINE", "URINES", kind="text",
            decimals=0),
)

TESTS: dict[str, TestDef] = {t.loinc: t for t in _ALL_TESTS}


def _panel(code: str, label: str, *codes: str) -> Panel:
    return Panel(code, label, tuple(_INDEX[c].loinc for c in codes))


_INDEX: dict[str, TestDef] = {t.code.upper(): t for t in _ALL_TESTS} | TESTS

PANELS: dict[str, Panel] = {p.code: p for p in (
    _panel("NFS", "Numération formule sanguine", "HB", "HT", "GR", "VGM", "TCMH", "CCMH",
           "GB", "PNN", "LYMPH", "MONO", "PNE", "PNB", "PLQ"),
    _panel("IONO", "Ionogramme sanguin", "NA", "K", "CL", "BICAR", "PROT"),
    _panel("BILAN_LIPIDIQUE", "Bilan lipidique", "CT", "HDL", "TG", "LDL"),
    _panel("BILAN_HEPATIQUE", "Bilan hépatique", "ASAT", "ALAT", "GGT", "PAL", "BILT"),
    _panel("BILAN_RENAL", "Bilan rénal", "CREA", "DFG", "UREE"),
    _panel("HEMOSTASE", "Bilan d'hémostase", "TP", "INR", "TCA", "FIB"),
    _panel("GROUPE", "Groupage sanguin et RAI", "ABO", "RH", "RAI"),
    _panel("THYROIDE", "Bilan thyroïdien", "TSH", "T4L"),
    _panel("BILAN_MARTIAL", "Bilan martial", "FER", "FERRI", "TRF", "CST"),
)}


# --- Lookup -------------------------------------------------------------------------------

def find(code: str) -> TestDef | None:
    """A test by LOINC or local code (case-insensitive), None if unknown."""
    return _INDEX.get(code.strip().upper())


def test(code: str) -> TestDef:
    """A test by LOINC or local code; raises UnknownTest."""
    found = find(code)
    if found is None:
        raise UnknownTest(f"unknown test code {code!r}", code)
    return found


test.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported

_ORDER = {loinc: i for i, loinc in enumerate(TESTS)}


def expand(codes: Iterable[str]) -> list[str]:
    """Panel, LOINC or local codes -> unique LOINCs in report order.

    A calculated test is added when all its inputs are ordered, and ordering a calculated
    test brings its inputs (it cannot be computed without them)."""
    wanted: set[str] = set()
    for code in codes:
        panel = PANELS.get(code.strip().upper())
        wanted.update(panel.loincs if panel else (test(code).loinc,))
    for loinc in list(wanted):
        wanted.update(TESTS[loinc].inputs)
    wanted.update(t.loinc for t in _ALL_TESTS
                  if t.calculated and t.inputs and wanted.issuperset(t.inputs))
    return sorted(wanted, key=_ORDER.__getitem__)


# --- Ranges and flags ----------------------------------------------------------------------

def _applies(rng: Range, sex: str, age_days: int) -> bool:
    return (rng.sex in ("", sex) and rng.min_age_days <= age_days
            and (rng.max_age_days is None or age_days < rng.max_age_days))


ADULT_DAYS = 40 * 365  # unknown birth date: adult ranges


def age_in_days(birth: date | None, on: date) -> int:
    """The age that ranges, flags and eGFR use: days from birth to the collection day."""
    return ADULT_DAYS if birth is None else max(0, (on - birth).days)


def reference_range(test: TestDef, sex: str, age_days: int) -> Range | None:
    """The most specific range for this patient: sex-specific beats any, age-bounded
    beats unbounded; the first listed wins a tie."""
    matches = [r for r in test.ranges if _applies(r, sex, age_days)]
    if not matches:
        return None
    return max(matches, key=lambda r: (r.sex != "",
                                       r.min_age_days > 0 or r.max_age_days is not None))


def flag(test: TestDef, value: str, sex: str, age_days: int) -> str:
    """"" normal/unflaggable, "L"/"H" out of range, "LL"/"HH" beyond critical limits."""
    number = numeric(value) if test.kind == "numeric" else None
    rng = reference_range(test, sex, age_days) if number is not None else None
    if number is None or rng is None:
        return ""
    # Limits themselves are inside the range; critical limits are checked first.
    if rng.critical_low is not None and number < rng.critical_low:
        return "LL"
    if rng.critical_high is not None and number > rng.critical_high:
        return "HH"
    if rng.low is not None and number < rng.low:
        return "L"
    if rng.high is not None and number > rng.high:
        return "H"
    return ""


def delta_exceeded(test: TestDef, value: str, previous: str | None) -> bool:
    """True when the relative change from the previous result exceeds the test's delta."""
    if test.delta_percent is None or previous is None or test.kind != "numeric":
        return False
    now, before = numeric(value), numeric(previous)
    if now is None or before is None:
        return False
    if before == 0:
        return now != 0
    return abs(now - before) / abs(before) * 100 > test.delta_percent


# --- Values --------------------------------------------------------------------------------

def _round(number: Decimal | float, decimals: int) -> str:
    step = Decimal(1).scaleb(-decimals)
    rounded = Decimal(str(number)).quantize(step, rounding=ROUND_HALF_UP)
    return f"{rounded.copy_abs() if rounded == 0 else rounded:f}"  # no "-0.0"


def _parse_numeric(test: TestDef, text: str) -> str:
    compact = re.sub(r"\s", "", text).replace(",", ".")
    match = _NUMBER.match(compact)
    if match is None:
        raise InvalidResult(f"{test.label}: the value typed is not a number", "not_a_number")
    comparator, number = match.groups()
    try:
        return comparator + _round(Decimal(number), test.decimals)
    except InvalidOperation:
        raise InvalidResult(f"{test.label}: the value typed is out of range",
                            "out_of_range") from None


def _parse_coded(test: TestDef, text: str) -> str:
    wanted = text.strip().casefold()
    for choice in test.choices:
        if choice.casefold() == wanted:
            return choice
    allowed = ", ".join(test.choices)
    raise InvalidResult(f"{test.label}: the value typed is not one of {allowed}",
                        "not_a_choice", choices=allowed)


def parse_value(test: TestDef, text: str) -> str:
    """Canonical stored text for a typed or received value; raises InvalidResult."""
    if not text or not text.strip():
        raise InvalidResult(f"{test.label}: empty result", "empty")
    if test.kind == "numeric":
        return _parse_numeric(test, text)
    if test.kind == "coded":
        return _parse_coded(test, text)
    stripped = text.strip()
    if len(stripped) > MAX_TEXT:
        raise InvalidResult(f"{test.label}: text longer than {MAX_TEXT} characters",
                            "too_long", max=MAX_TEXT)
    return stripped


def numeric(text: str) -> float | None:
    """Stored text -> float ("<0.5" -> 0.5); None when it is not a number."""
    try:
        number = float(text.strip().lstrip("<>").replace(",", "."))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# --- Calculated results ----------------------------------------------------------------------

def _egfr(values: list[float], sex: str, age_years: int) -> float | None:
    """CKD-EPI 2021, race-free; creatinine in µmol/L."""
    if age_years < 18 or sex not in ("M", "F") or values[0] <= 0:
        return None
    scr = values[0] / 88.4  # mg/dL
    kappa, alpha = (0.7, -0.241) if sex == "F" else (0.9, -0.302)
    ratio = scr / kappa
    egfr = 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.200 * 0.9938 ** age_years
    return egfr * 1.012 if sex == "F" else egfr


def _friedewald(values: list[float], sex: str, age_years: int) -> float | None:
    """LDL = TC - HDL - TG/5 in g/L; invalid once triglycerides reach 3.4 g/L."""
    total, hdl, triglycerides = values
    if triglycerides >= 3.4:
        return None
    ldl = total - hdl - triglycerides / 5
    return ldl if ldl >= 0 else None


def _saturation(values: list[float], sex: str, age_years: int) -> float | None:
    """Iron (µmol/L) over total binding capacity, taken as 25 × transferrin (g/L)."""
    iron, transferrin = values
    return iron / (25 * transferrin) * 100 if transferrin > 0 else None


_FORMULAS: dict[str, Callable[[list[float], str, int], float | None]] = {
    "98979-8": _egfr,
    "13457-7": _friedewald,
    "2502-3": _saturation,
}


def _input(inputs: dict[str, str], loinc: str) -> float | None:
    text = inputs.get(loinc, inputs.get(TESTS[loinc].code))
    # A bound such as "<20" is not a measurement: computing from it would mislead.
    if text is None or text.strip()[:1] in ("<", ">"):
        return None
    return numeric(text)


def calculate(test: TestDef, inputs: dict[str, str], sex: str, age_years: int) -> str | None:
    """Canonical text of a calculated result, None when inputs are missing or the formula
    does not apply. `inputs` maps LOINC (or local code) to stored text."""
    formula = _FORMULAS.get(test.loinc)
    values = [_input(inputs, loinc) for loinc in test.inputs]
    if formula is None or None in values:
        return None
    result = formula([v for v in values if v is not None], sex, age_years)
    return None if result is None else _round(result, test.decimals)


# --- French display --------------------------------------------------------------------------

def _french(number: float, decimals: int) -> str:
    return _round(number, decimals).replace(".", ",")


def format_range(test: TestDef, rng: Range | None) -> str:
    """"13,0 – 17,0", "< 5,0" or "> 1,50"; "" when there is nothing to show."""
    low, high = (None, None) if rng is None else (rng.low, rng.high)
    if low is not None and high is not None:
        return f"{_french(low, test.decimals)} – {_french(high, test.decimals)}"
    if high is not None:
        return f"< {_french(high, test.decimals)}"
    if low is not None:
        return f"> {_french(low, test.decimals)}"
    return ""


def format_value(test: TestDef, value: str) -> str:
    """Stored text -> French display: "12,5", "< 0,5"; text and coded values unchanged."""
    if test.kind != "numeric":
        return value
    comparator = value[:1] if value[:1] in ("<", ">") else ""
    number = value[len(comparator):].replace(".", ",")
    return f"{comparator} {number}" if comparator else number
