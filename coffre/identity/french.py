"""Validation and normalisation of French identity values (NIR, RPPS, FINESS, COG...).

Plain Python, no Django: importers, forms, the synthetic generator and the blind
indexes all call these, so each rule lives here once.

Every validator returns the canonical value or raises `InvalidValue`. Error messages
name the rule that failed and never contain the value: they end up in import error
reports and logs, which must not become a copy of the patients' data.

NIR decisions (13 characters + 2-digit key):

- First digit: 1 (man) and 2 (woman) for a NIR; 7 (man) and 8 (woman) for a NIA, the
  waiting number the CNAV gives a person born abroad until the NIR is certified.
  The INS matricule is a NIR or a NIA, so both are accepted. 3 and 4 appear in some
  old temporary numbers that are no INS matricule: rejected, such a patient gets a
  provisional identity without NIR.
- Month: 01-12, or 20-42 / 50-99 which INSEE uses when the month is unknown
  (incomplete civil record). 00, 13-19 and 43-49 are rejected.
- Birth place (5 characters), the COG code in force at the birth:
  * 01-95 + 3-digit commune. 91-94 and 95 also coded births in Algeria and Morocco
    before independence; same shape, nothing to tell apart.
  * 2A/2B + commune: Corsica since 1 January 1976. Before, Corsica was 20, and a NIR
    keeps its place for life, so 20 is accepted; `check_nir_matches` rejects 20 for
    births from 1976 on. 2A/2B for an earlier birth is not rejected: unusual, but a
    wrong rejection would block a real patient's import.
  * 96 + commune: Tunisia before independence. Still carried by living patients, so
    accepted; `check_nir_matches` rejects it for births from 1968 on (sources say it
    stopped earlier; the boundary is kept lenient for the same reason as above).
  * 97x/98x (971-978, 984-989) + 2-digit commune: overseas.
  * 99 + 3-digit INSEE country code: born abroad.
  * 00, and a commune, country or serial of all zeros, are rejected.
- Key: 97 - (body mod 97), so 01-97; for the key 2A counts as 19 and 2B as 18.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

import phonenumbers
from stdnum import luhn
from stdnum.fr import nir as stdnum_nir


class InvalidValue(ValueError):
    """A value broke a rule. The message names the rule, never the value; ``rule`` is set
    where a caller tells the rules apart (``nir_length``, ``nir_key``)."""

    def __init__(self, message: str, rule: str = "") -> None:
        super().__init__(message)
        self.rule = rule


_SEPARATORS = re.compile(r"[\s.\-]")
_MONTH_CODES = frozenset(
    [f"{m:02d}" for m in range(1, 13)]
    + [f"{m:02d}" for m in range(20, 43)]
    + [f"{m:02d}" for m in range(50, 100)]
)
_OVERSEAS = frozenset([f"97{d}" for d in range(1, 9)] + [f"98{d}" for d in range(4, 10)])
# Historical NIR department codes: last birth year for which they were given.
_NIR_LAST_BIRTH_YEAR = {"20": 1975, "96": 1967}
_NIR_SEX = {"1": "M", "2": "F", "7": "M", "8": "F"}
_BLOOD_GROUPS = frozenset(["A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-"])
_MIN_BIRTH_DATE = dt.date(1900, 1, 1)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"{what} must be text")
    return value


def _compact(value: object, what: str) -> str:
    """Strip spaces, dots and dashes and uppercase: the shape people type NIRs in.
    Only ASCII: str.isdigit() also accepts other scripts' digits, and a NIR typed with
    one would be a second, different value for the same person (no duplicate found)."""
    compact = _SEPARATORS.sub("", _text(value, what)).upper()
    if not compact.isascii():
        raise InvalidValue(f"{what} must be written with the digits 0-9 (and letters A-Z)")
    return compact


# --- birth places (COG) ---------------------------------------------------------------

def _place_problem(place: str, historical: bool) -> str | None:
    """Why a 5-character COG place code is not valid, or None.

    `historical` also accepts department codes that only old NIRs carry (20, 96).
    """
    if len(place) != 5:
        return "must have 5 characters"
    dept, rest = place[:2], place[2:]
    if dept in ("2A", "2B"):
        return _zero_or_digits(rest, "commune")
    if not place.isdigit():
        return "may only contain digits, except 2A/2B for Corsica"
    if dept in ("97", "98"):
        if place[:3] not in _OVERSEAS:
            return "overseas department must be 971-978 or 984-989"
        return _zero_or_digits(place[3:], "commune")
    if dept == "99":
        return _zero_or_digits(rest, "country code")
    allowed = 1 <= int(dept) <= (96 if historical else 95)
    if not allowed or (dept == "20" and not historical):
        return "department is not valid"
    return _zero_or_digits(rest, "commune")


def _zero_or_digits(part: str, what: str) -> str | None:
    if not part.isdigit():
        return f"{what} must be digits"
    return f"{what} must not be all zeros" if int(part) == 0 else None


def clean_insee_place(value: str) -> str:
    """A current INSEE (COG) code of a commune, overseas commune or foreign country."""
    place = _compact(value, "birth place")
    problem = _place_problem(place, historical=False)
    if problem:
        raise InvalidValue(f"INSEE place code {problem}")
    return place


# --- NIR ------------------------------------------------------------------------------

def nir_key(body13: str) -> str:
    """The 2-digit check key of a 13-character NIR body (2A/2B allowed)."""
    body = _compact(body13, "NIR")
    digits = body[:5] + {"2A": "19", "2B": "18"}.get(body[5:7], body[5:7]) + body[7:]
    if len(body) != 13 or not digits.isdigit():
        raise InvalidValue("NIR body must have 13 digits (2A/2B allowed for Corsica)")
    return stdnum_nir.calc_check_digits(body)


def clean_nir(value: str) -> str:
    """A NIR or NIA with its key, as 15 uppercase characters without separators."""
    nir = _compact(value, "NIR")
    if len(nir) != 15:
        raise InvalidValue("NIR must have 15 characters (13 + 2-digit key)", "nir_length")
    if nir[0] not in _NIR_SEX:
        raise InvalidValue("NIR first digit must be 1, 2, 7 or 8")
    if not nir[1:3].isdigit():
        raise InvalidValue("NIR birth year must be 2 digits")
    if nir[3:5] not in _MONTH_CODES:
        raise InvalidValue("NIR birth month code must be 01-12, 20-42 or 50-99")
    problem = _place_problem(nir[5:10], historical=True)
    if problem:
        raise InvalidValue(f"NIR birth place {problem}")
    if _zero_or_digits(nir[10:13], "serial"):
        raise InvalidValue("NIR serial number must be 3 digits, not 000")
    if not nir[13:].isdigit() or nir_key(nir[:13]) != nir[13:]:
        raise InvalidValue("NIR check key does not match", "nir_key")
    return nir


def check_nir_matches(nir: str, sex: str, birth_date: dt.date) -> None:
    """Raise when the NIR contradicts the patient's sex or birth date."""
    nir = clean_nir(nir)
    if _NIR_SEX[nir[0]] != clean_sex(sex):
        raise InvalidValue("NIR sex digit does not match the sex")
    if int(nir[1:3]) != birth_date.year % 100:
        raise InvalidValue("NIR birth year does not match the birth date")
    month = int(nir[3:5])
    if month <= 12 and month != birth_date.month:  # 20-42 and 50-99: month unknown
        raise InvalidValue("NIR birth month does not match the birth date")
    last_year = _NIR_LAST_BIRTH_YEAR.get(nir[5:7])
    if last_year is not None and birth_date.year > last_year:
        raise InvalidValue(
            f"NIR department {nir[5:7]} was only given for births up to {last_year}"
        )


# --- health professionals and establishments -------------------------------------------

def clean_rpps(value: str) -> str:
    """An RPPS number: 11 digits whose last one is a Luhn key."""
    rpps = _compact(value, "RPPS")
    if len(rpps) != 11 or not rpps.isdigit():
        raise InvalidValue("RPPS number must have 11 digits")
    if not luhn.is_valid(rpps):
        raise InvalidValue("RPPS check digit does not match")
    return rpps


def clean_finess(value: str) -> str:
    """A FINESS number: department (01-95, 2A, 2B, 97, 98), 6 digits and a Luhn key.

    For Corsica the Luhn key is computed with the letter replaced by its rank in the
    alphabet (2A -> 21, 2B -> 22). Assumption: no primary ANS/DREES text was found;
    this is the rule of the FINESS validator of gip-inclusion/pilotage (a French
    public service). Corsican numbers are rare; revisit if a real one fails.
    """
    finess = _compact(value, "FINESS")
    if len(finess) != 9:
        raise InvalidValue("FINESS number must have 9 characters")
    dept = finess[:2]
    if not finess[2:].isdigit():
        raise InvalidValue("FINESS number must be digits after the department")
    corsica = {"2A": "21", "2B": "22"}
    if dept not in corsica and not (dept.isdigit() and _finess_dept_ok(int(dept))):
        raise InvalidValue("FINESS department must be 01-95, 2A, 2B, 97 or 98")
    if not luhn.is_valid(corsica.get(dept, dept) + finess[2:]):
        raise InvalidValue("FINESS check digit does not match")
    return finess


def _finess_dept_ok(dept: int) -> bool:
    return (1 <= dept <= 95 and dept != 20) or dept in (97, 98)


# --- contact --------------------------------------------------------------------------

def clean_phone(value: str) -> str:
    """A phone number valid for its country (default France), in E.164."""
    text = _text(value, "phone number").strip()
    if len(text) > 32:
        raise InvalidValue("phone number is too long")
    try:
        number = phonenumbers.parse(text, "FR")
    except phonenumbers.NumberParseException:
        raise InvalidValue("phone number cannot be read") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidValue("phone number is not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def clean_email(value: str) -> str:
    """An e-mail address: basic syntax only; the domain is lowercased."""
    text = _text(value, "e-mail address").strip()
    if len(text) > 254 or any(c.isspace() for c in text):
        raise InvalidValue("e-mail address is too long or contains spaces")
    local, at, domain = text.partition("@")
    if not at or "@" in domain or not local or len(local) > 64:
        raise InvalidValue("e-mail address must have one @ after a non-empty name")
    labels = domain.split(".")
    if len(labels) < 2 or not all(labels):
        raise InvalidValue("e-mail domain must contain a dot between non-empty parts")
    return f"{local}@{domain.lower()}"


def clean_postal_code(value: str) -> str:
    """A French postal code: 5 digits (spaces allowed in input)."""
    code = _compact(value, "postal code")
    if len(code) != 5 or not code.isdigit() or code.startswith("00"):
        raise InvalidValue("postal code must be 5 digits, not starting with 00")
    return code


# --- identity traits ------------------------------------------------------------------

_SEXES = {"M": "M", "H": "M", "1": "M", "F": "F", "2": "F"}


def clean_sex(value: str) -> str:
    """'M' or 'F'. Accepts M/H (homme)/1 and F/2, any case."""
    sex = _SEXES.get(_text(value, "sex").strip().upper())
    if sex is None:
        raise InvalidValue("sex must be M or F")
    return sex


def clean_birth_date(value: str, today: dt.date | None = None) -> dt.date:
    """A birth date written YYYY-MM-DD, from 1900-01-01 up to today."""
    text = _text(value, "birth date").strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise InvalidValue("birth date must be written YYYY-MM-DD")
    try:
        date = dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidValue("birth date is not a calendar date") from None
    if date < _MIN_BIRTH_DATE or date > (today or dt.date.today()):
        raise InvalidValue("birth date must be between 1900-01-01 and today")
    return date


def clean_typed_birth_date(value: str) -> dt.date:
    """A birth date typed by a person on a form: DD/MM/YYYY as French people write it, or
    YYYY-MM-DD (a date input). Files keep the strict ISO form (clean_birth_date)."""
    text = (value or "").strip()
    written = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text)
    if written:
        day, month, year = written.groups()
        text = f"{year}-{int(month):02d}-{int(day):02d}"
    return clean_birth_date(text)


def clean_blood_group(value: str) -> str:
    """ABO group and RhD sign ("A+", "O-"...), or "" when empty. Accepts 0 for O, Rh."""
    text = _text(value, "blood group").upper().replace(" ", "").replace("RH", "")
    if not text:
        return ""
    text = ("O" + text[1:]) if text.startswith("0") else text
    if text not in _BLOOD_GROUPS:
        raise InvalidValue("blood group must be A, B, AB or O followed by + or -")
    return text


# --- normalisers for blind indexes: one place for all of them -------------------------

_LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ø": "o",
                            "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D"})
_NOT_ALNUM = re.compile(r"[^0-9A-Z]+")


def normalize_name(value: str) -> str:
    """Uppercase ASCII letters and digits, every other run of characters one space.

    "Lefèvre-d'Almeida " -> "LEFEVRE D ALMEIDA": accents, apostrophes, hyphens and
    spacing do not change the blind index, so a search finds the patient anyway.
    """
    text = unicodedata.normalize("NFKD", _text(value, "name").translate(_LIGATURES))
    text = "".join(c for c in text if not unicodedata.combining(c)).upper()
    return _NOT_ALNUM.sub(" ", text).strip()


_E164 = re.compile(r"\+[1-9]\d{6,14}")


def normalize_phone(value: str, canonical: bool = False) -> str:
    """E.164, so "06 12 34 56 78" and "+33612345678" index the same.

    ``canonical=True`` says the value already came out of :func:`clean_phone` (as in the
    registry's index computation): parsing it again would cost ~60 us for nothing.
    """
    if canonical and _E164.fullmatch(value):
        return value
    return clean_phone(value)


def normalize_email(value: str) -> str:
    """The whole address lowercased (mail providers ignore the case in practice)."""
    return clean_email(value).lower()


def normalize_nir(value: str) -> str:
    """The compact 15-character NIR, validated."""
    return clean_nir(value)
