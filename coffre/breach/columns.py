"""Recognise a leaked file's columns by their content, whatever their headers.

The first ~2,000 rows of each table are sampled; each column gets the kind most of its
non-empty cells look like (a NIR with a valid key, an e-mail, a phone, a date...).
Headers only break ties or name what content cannot tell apart (a password column of
random strings, a family name from a city). Plain functions; values never leave memory.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass

from coffre.breach.report import ColumnGuess
from coffre.identity import french

SAMPLE_ROWS = 2000
STRONG_SHARE = 0.6   # share of non-empty cells a typed kind needs
MIN_CELLS = 3        # fewer non-empty cells: decide by header only

# kind -> category of the report (GDPR art. 33 asks for categories of data)
CATEGORY = {
    "nir": "nir", "family_name": "identity", "given_name": "identity", "sex": "identity",
    "birth_date": "birth_date", "email": "contact", "phone": "contact",
    "address": "address", "postcode": "address", "city": "address",
    "health": "health", "blood_group": "health", "credentials": "credentials",
    "insurance": "insurance", "prescriber": "prescriber", "date": "other", "other": "other",
}

_HINTS = (  # header hints, checked in this order (lower-case, accents kept)
    ("given_name", r"pr[ée]nom|first.?name|given|forename"),
    ("birth_date", r"naiss|birth|dob|ddn|born"),
    ("nir", r"\bnir\b|s[ée]cu|insee|\bssn\b|matricule|n[°o]?.?ss\b"),
    ("email", r"mail|courriel"),
    ("phone", r"\bt[ée]l|phone|portable|mobile|\bgsm"),
    ("postcode", r"\bcp\b|code.?postal|\bzip|postcode|postal"),
    ("city", r"ville|city|commune|localit"),
    ("address", r"adress|address|\brue\b|street"),
    ("credentials", r"\bpass(?:word|wd|e)?\b|\bmdp\b|mot.?de.?passe|\bpwd|\bhash|secret|"
                    r"\blogin|identifiant"),
    ("insurance", r"mutuelle|assur|insur|\bamc\b|organisme|caisse|cpam"),
    ("blood_group", r"\bsang\b|blood|\babo\b|rh[ée]sus|\bgroupe"),
    ("prescriber", r"m[ée]decin|prescri|doctor|docteur|rpps"),
    ("health", r"comment|\bnotes?\b|observ|remarq|diagnos|\bant[ée]c|patholog|traitement|\btreat"),
    ("sex", r"\bsexe?\b|genre|gender|civilit"),
    ("family_name", r"\bnom\b|name\b|surname|patronym|\blast"),
    ("date", r"date|visite|visit|pr[ée]l[eè]v"),
)
_HINT_RES = tuple((kind, re.compile(pattern, re.IGNORECASE)) for kind, pattern in _HINTS)

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_PHONE_SEPARATORS = re.compile(r"[\s.\-()/]")
_PHONE_FR = re.compile(r"(?:(?:\+|00)330?|0)([1-9]\d{8})")  # +33 (0)6..., 0033..., 06...
_PHONE_INTL = re.compile(r"(?:\+|00)([1-9]\d{7,14})")
_ISO_DATE = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T][\d:.+Z-]*)?")
_DMY_DATE = re.compile(r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})(?: [\d:]*)?")
_POSTCODE = re.compile(r"(?!00)\d{5}")
_BLOOD = re.compile(r"(A|B|AB|O|0)\s*(?:Rh)?\s*(\+|-|pos|neg|positif|n[ée]gatif)",
                    re.IGNORECASE)
_SEX = re.compile(r"[MFH]|homme|femme|masculin|f[ée]minin", re.IGNORECASE)
_RPPS = re.compile(r"\d{11}")
_PRESCRIBER = re.compile(r"(?:dr|docteur|pr)\.?\s", re.IGNORECASE)
_INSURANCE = re.compile(r"\b(?:mutuelle|cpam|msa|mgen|assurance|harmonie|mutualit|caisse|"
                        r"malakoff|ag2r|axa|allianz|groupama|maaf|macif|maif|matmut|apicil|"
                        r"humanis|cmu|ame|css)\b", re.IGNORECASE)
_HEALTH = re.compile(r"vih|hiv|sida|cancer|tumeur|grossesse|enceinte|diab[eè]t|h[ée]patite|"
                     r"chimio|traitement|antir[ée]troviral|leuc[ée]mie|g[ée]n[ée]tique|"
                     r"mucoviscidose|s[ée]ropositi|insuline|d[ée]pression|allergi|"
                     r"anticoagul|insuffisance|lithium|s[ée]rologie|psychiatr|ivg",
                     re.IGNORECASE)
_HASH = re.compile(r"\$(?:2[aby]|argon2(?:id|i|d)|[156]|pbkdf2[\w-]*|scrypt)\$\S+|"
                   r"(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64}|[0-9a-fA-F]{128})|"
                   r"(?:sha\d*|md5|pbkdf2_sha256)[$:]\S+")
_STREET = re.compile(r"\b(?:rue|avenue|av|boulevard|bd|chemin|place|all[ée]e|impasse|route|"
                     r"quai|cours|square|lieu.?dit|r[ée]sidence|rond.?point|voie|sentier|"
                     r"passage|hameau|faubourg|chauss[ée]e|lotissement|cit[ée]|clos|"
                     r"bp|cedex)\b", re.IGNORECASE)
_NAME = re.compile(r"[^\W\d_]+(?:[ '’\-][^\W\d_]+){0,4}")
_CITY_MARKS = re.compile(r"-sur-|-l[ae]s?-|-en-|-d[eu]-|^saint|^sainte|^l[ae]s? |ville$|"
                         r"bourg$|-bains|-mer$|-for[eê]t", re.IGNORECASE)


@dataclass(frozen=True)
class Column:
    index: int
    name: str
    kind: str
    share: float
    day_first: bool = True  # for dates written with slashes: DD/MM/YYYY (French) or not

    @property
    def category(self) -> str:
        return CATEGORY[self.kind]

    def guess(self, file: str) -> ColumnGuess:
        """For the report, which may be stored and shown: a header is kept only when it
        reads as a column name, so a data row mistaken for a header never puts a
        patient's value there (the column is then called by its position)."""
        shown = self.name if header_kind(self.name) else f"#{self.index + 1}"
        return ColumnGuess(file=file, column=shown, kind=self.kind,
                           category=self.category, share=round(self.share, 3))


# --- value recognisers (also used row by row by the scan) --------------------------------

_NIR_SHAPE = re.compile(r"[1278]\d{4}(?:\d{2}|2[AB])\d{8}")
_NIR_STRIP = str.maketrans("", "", " .-")


def nir_value(text: str) -> str | None:
    """The compact NIR when its shape and check key are right (as clean_nir computes
    the key), else None. The other rules of clean_nir (place, month codes) are not
    needed to match: a NIR breaking them belongs to no patient, and a match is
    confirmed against the stored value anyway."""
    compact = text.translate(_NIR_STRIP).upper()
    if len(compact) != 15 or not _NIR_SHAPE.fullmatch(compact):
        return None
    body = compact[:5] + {"2A": "19", "2B": "18"}.get(compact[5:7], compact[5:7]) + \
        compact[7:13]
    return compact if 97 - int(body) % 97 == int(compact[13:]) else None


def phone_value(text: str, lenient: bool = False) -> str | None:
    """E.164 by shape: French numbers are written in few ways, and the full validation
    (phonenumbers, ~60 us) would be most of a 500,000-row scan. A wrong shape only
    yields an index no patient has; a match is confirmed against the stored value.
    ``lenient``: in a known phone column, 9 digits are a number a spreadsheet stripped
    of its leading 0."""
    compact = _PHONE_SEPARATORS.sub("", text)
    match = _PHONE_FR.fullmatch(compact)
    if match:
        return "+33" + match.group(1)
    if (lenient and len(compact) == 9 and compact.isascii() and compact.isdigit()
            and compact[0] != "0"):
        return "+33" + compact
    match = _PHONE_INTL.fullmatch(compact)
    return "+" + match.group(1) if match else None


def email_value(text: str) -> str | None:
    """As ``french.normalize_email`` (the whole address lowercased) for any address of
    the usual shape."""
    if len(text) > 254 or not _EMAIL.fullmatch(text) or text.index("@") > 64:
        return None
    return text.lower()


@functools.lru_cache(maxsize=1 << 16)  # a file has ~40,000 distinct birth dates at most
def date_value(text: str, day_first: bool = True) -> dt.date | None:
    match = _ISO_DATE.fullmatch(text)
    if match:
        year, month, day = (int(g) for g in match.groups())
    else:
        match = _DMY_DATE.fullmatch(text)
        if not match:
            return None
        first, second, year = (int(g) for g in match.groups())
        day, month = (first, second) if day_first else (second, first)
    try:
        date = dt.date(year, month, day)
    except ValueError:
        return None
    return date if dt.date(1900, 1, 1) <= date <= dt.date.today() else None


normalize_name = functools.lru_cache(maxsize=1 << 17)(french.normalize_name)


@functools.cache
def _name_sets() -> tuple[frozenset[str], frozenset[str]]:
    """Common French given and family names (Faker's fr_FR lists), normalised as the
    registry normalises names: only to tell a given-name column from a family-name one."""
    from faker.providers.person.fr_FR import Provider

    given = {french.normalize_name(n) for n in Provider.first_names_male
             + Provider.first_names_female}
    return frozenset(given), frozenset(french.normalize_name(n) for n in Provider.last_names)


def _is_name(text: str) -> bool:
    return len(text) <= 60 and bool(_NAME.fullmatch(text))


def _luhn_ok(text: str) -> bool:
    from stdnum import luhn

    return luhn.is_valid(text)


_TESTS = (  # typed kinds, strongest first: the first reaching STRONG_SHARE wins
    ("nir", lambda t: nir_value(t) is not None),
    ("email", lambda t: email_value(t) is not None),
    ("phone", lambda t: phone_value(t) is not None),
    ("date", lambda t: date_value(t) is not None),
    ("postcode", lambda t: bool(_POSTCODE.fullmatch(t))),
    ("blood_group", lambda t: bool(_BLOOD.fullmatch(t))),
    ("prescriber", lambda t: bool(_RPPS.fullmatch(t)) and _luhn_ok(t)),
    ("credentials", lambda t: bool(_HASH.fullmatch(t))),
    ("address", lambda t: bool(_STREET.search(t)) and any(c.isdigit() for c in t)),
    ("prescriber", lambda t: bool(_PRESCRIBER.match(t))),
    ("insurance", lambda t: bool(_INSURANCE.search(t))),
    ("sex", lambda t: bool(_SEX.fullmatch(t))),
)


def header_kind(name: str) -> str | None:
    """The kind a header names ("NOM_USAGE", "date-naissance"...), or None."""
    words = re.sub(r"[_\-.]+", " ", name)
    for kind, pattern in _HINT_RES:
        if pattern.search(words):
            return kind
    return None


def _share(cells: list[str], test, needed: float = 0.0) -> float:
    """Share of cells passing ``test``; stops early (returning 0) once ``needed`` is out
    of reach, which keeps classifying a wide table cheap."""
    if not cells:
        return 0.0
    allowed = len(cells) * (1 - needed)
    missed = passed = 0
    for cell in cells:
        if test(cell):
            passed += 1
        else:
            missed += 1
            if needed and missed > allowed:
                return 0.0
    return passed / len(cells)


def _content_kind(cells: list[str], hint: str | None) -> tuple[str, float]:
    """The kind most cells look like, and the share that does."""
    for kind, test in _TESTS:
        share = _share(cells, test, STRONG_SHARE)
        if share >= STRONG_SHARE and not (kind == "sex" and hint not in (None, "sex")):
            return kind, share
    if hint == "phone" and _share(cells, lambda t: bool(phone_value(t, lenient=True)),
                                  STRONG_SHARE):
        return "phone", _share(cells, lambda t: bool(phone_value(t, lenient=True)))
    if _share(cells, lambda t: len(t) >= 8 and bool(_HEALTH.search(t))) >= 0.15:
        return "health", _share(cells, lambda t: bool(_HEALTH.search(t)))
    share = _share(cells, _is_name, STRONG_SHARE)
    if share >= STRONG_SHARE:
        return _name_kind(cells, hint), share
    return "other", 0.0


def _name_kind(cells: list[str], hint: str | None) -> str:
    if hint in ("family_name", "given_name", "city", "insurance", "prescriber"):
        return hint
    given, family = _name_sets()
    words = [normalize_name(c) for c in cells]
    given_share = sum(1 for w in words if w.split(" ")[0] in given) / len(words)
    family_share = sum(1 for w in words if w in family) / len(words)
    city_share = _share(cells, lambda t: bool(_CITY_MARKS.search(t)))
    if city_share >= 0.25:
        return "city"
    if given_share >= 0.3 and given_share > family_share:
        return "given_name"
    return "family_name"


# Kinds content settles alone: naming a column by its header does not change them.
_SETTLED = frozenset({"nir", "email", "phone", "postcode", "blood_group", "credentials",
                      "address"})


def named(columns: list[Column], header: list[str], rows: list[list[str]]) -> list[Column]:
    """The columns once the first row turned out to be a header: settled kinds keep
    their guess, the others are classified again with the header as tie-breaker."""
    return classify(header, rows, known={c.index: c for c in columns if c.kind in _SETTLED})


def classify(header: list[str], rows: list[list[str]],
             known: dict[int, Column] | None = None) -> list[Column]:
    """One Column per position, from up to SAMPLE_ROWS sample rows."""
    width = max([len(header)] + [len(r) for r in rows])
    columns = []
    for index in range(width):
        name = header[index] if index < len(header) and header[index] else f"#{index + 1}"
        if known and index in known:
            column = known[index]
            columns.append(Column(index, name, column.kind, column.share, column.day_first))
            continue
        cells = [r[index] for r in rows[:SAMPLE_ROWS] if index < len(r) and r[index]]
        hint = header_kind(name) if not name.startswith("#") else None
        kind, share = _content_kind(cells, hint) if len(cells) >= MIN_CELLS else ("other", 0)
        if kind == "other" and hint is not None and hint not in _TYPED:
            kind = hint  # content says nothing against the header (passwords, notes...)
        day_first = True
        if kind == "date":
            day_first = not any((m := _DMY_DATE.fullmatch(c)) and int(m.group(2)) > 12
                                for c in cells)
            if hint == "birth_date":
                kind = "birth_date"
        columns.append(Column(index, name, kind, share, day_first))
    return _pick_birth_date(columns, rows)


_TYPED = {"nir", "email", "phone", "birth_date", "date", "postcode", "blood_group", "sex"}


def _pick_birth_date(columns: list[Column], rows: list[list[str]]) -> list[Column]:
    """With no header naming it, the birth date is the date column of oldest dates (a
    last-visit or sample date is recent)."""
    if any(c.kind == "birth_date" for c in columns):
        return columns
    dates = [c for c in columns if c.kind == "date" and header_kind(c.name) in (None,
                                                                                  "birth_date")]
    if not dates:
        return columns

    def median_year(column: Column) -> int:
        years = sorted(d.year for r in rows[:SAMPLE_ROWS] if column.index < len(r)
                       and (d := date_value(r[column.index], column.day_first)))
        return years[len(years) // 2] if years else 9999

    oldest = min(dates, key=median_year)
    return [Column(c.index, c.name, "birth_date", c.share, c.day_first) if c is oldest else c
            for c in columns]


def first_row_is_header(first: list[str], columns: list[Column]) -> bool:
    """Whether a CSV/XLSX table's first row names its columns: none of its cells looks
    like its column's typed content, or (no typed column) a cell is a known header."""
    typed = [c for c in columns if c.kind in _TYPED | {"address", "credentials"}]
    if typed:
        for column in typed:
            cell = first[column.index] if column.index < len(first) else ""
            if not cell or _content_kind([cell], None)[0] in (column.kind, "date"):
                return False  # a header names every column; a data row fits them
        return True
    return any(header_kind(cell) for cell in first if cell)


# --- one row's keys (coffre.breach.scan matches them, attribution fingerprints them) -----

@dataclass
class RowKeys:
    nir: str = ""
    names: tuple[str, ...] = ()
    birth_date: str = ""
    phone: str = ""
    email: str = ""


@dataclass
class Plan:
    """How to read one table's rows, from its recognised columns."""

    table: str
    header: list[str]
    columns: list[Column]
    nir: list[int]
    family: list[int]
    birth: Column | None
    phone: list[int]
    email: list[int]

    @classmethod
    def of(cls, table: str, header: list[str], columns: list[Column]) -> Plan:
        def where(kind: str) -> list[int]:
            return [c.index for c in columns if c.kind == kind]

        family = sorted((c for c in columns if c.kind == "family_name"),
                        key=lambda c: -c.share)[:2]
        births = [c for c in columns if c.kind == "birth_date"]
        return cls(table, header, columns, where("nir")[:1], [c.index for c in family],
                   births[0] if births else None, where("phone")[:1], where("email")[:1])

    def keys(self, row: list[str]) -> RowKeys:
        keys = RowKeys()

        def cell(index: int) -> str:
            return row[index] if index < len(row) else ""

        for index in self.nir:
            keys.nir = nir_value(cell(index)) or ""
        if self.birth is not None:
            date = date_value(cell(self.birth.index), self.birth.day_first)
            keys.birth_date = date.isoformat() if date else ""
        if keys.birth_date:
            keys.names = tuple(dict.fromkeys(
                n for i in self.family if (n := normalize_name(cell(i)))))
        for index in self.phone:
            keys.phone = phone_value(cell(index), lenient=True) or ""
        for index in self.email:
            keys.email = email_value(cell(index)) or ""
        return keys
