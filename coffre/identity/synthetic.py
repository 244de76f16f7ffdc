"""Fast, deterministic synthetic patients for tests, demos and the seed profile.

Measured (Python 3.11, Faker 40.63, pools included): 85,000-90,000 rows/s on one
core, the 491,840-row seed profile in 5.5-5.8 s; ~62,000 rows/s when the machine
is busy with other work.

Nothing here is a real person's data. Faker (fr_FR) is slow per call, so it only
fills pools once per seed (names, addresses, doctors, insurers, birth places); rows
are then drawn from the pools with a `random.Random` seeded from (seed, row index).
So row k is the same whether a run starts at 0 or at k: generation can be sharded
or resumed. Same Faker version and seed, same rows.

Choices that keep synthetic data from touching real people:
- e-mails only on example.com/.org/.net, the domains reserved by RFC 2606
  (example.fr is not reserved, so it could be someone's mailbox);
- phones only in the blocks the French numbering plan (ARCEP) keeps for fiction:
  01 99 00, 02 61 91, 03 53 01, 04 65 71, 05 36 49 (xx xx). The fiction mobile
  block 06 39 98 is not accepted as French by libphonenumber, so there are no
  mobiles: 50,000 numbers, shared by about ten patients each at the seed size;
- doctors' RPPS in 19xxxxxxxxx, outside the 10/11 prefixes that real RPPS use.

NIRs are unique for the first 1,998,000 rows of a seed: the birth place and the
serial come from a keyed permutation of the row index over 2,000 distinct places
x 999 serials, so no two rows share them.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import random
from calendar import isleap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

from faker import Faker
from stdnum import luhn

from coffre.identity.french import nir_key, normalize_name

COLUMNS = (
    "nir", "birth_name", "used_name", "first_names", "sex", "birth_date", "birth_place",
    "address", "postal_code", "city", "phone", "email", "blood_group", "doctor_rpps",
    "doctor_name", "insurer", "notes",
)

# The 2021 labs were in north-west France: most patients live and were born there.
_NW_DEPTS = {
    "14": "Calvados", "22": "Côtes-d'Armor", "29": "Finistère", "35": "Ille-et-Vilaine",
    "44": "Loire-Atlantique", "49": "Maine-et-Loire", "50": "Manche", "53": "Mayenne",
    "56": "Morbihan", "61": "Orne", "72": "Sarthe", "85": "Vendée",
}
_OTHER_DEPTS = tuple(f"{d:02d}" for d in range(1, 96) if d != 20 and f"{d:02d}" not in _NW_DEPTS)
_EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
_FICTION_PHONE_PREFIXES = ("+3319900", "+3326191", "+3335301", "+3346571", "+3353649")
_BLOOD_GROUPS = ("O+", "A+", "B+", "AB+", "O-", "A-", "B-", "AB-")
_BLOOD_CUM = tuple(
    sum((36, 37, 9, 3, 6, 7, 1, 1)[: i + 1]) / 100 for i in range(len(_BLOOD_GROUPS))
)
_NOTES = (
    "Traitement anticoagulant (AVK) en cours",
    "Suivi diabète de type 2",
    "Sérologie VIH positive connue — suivi spécialisé",
    "Antécédent de cancer du sein, surveillance",
    "Insuffisance rénale chronique, surveiller la créatinine",
    "Chimiothérapie en cours, NFS avant chaque cure",
    "Hépatite C traitée, contrôle de la charge virale",
    "Traitement par lithium, dosage mensuel",
    "Allergie à la pénicilline",
    "Prélèvement difficile, veines fragiles",
)
_PREGNANCY_NOTES = ("Grossesse en cours, 2e trimestre", "Grossesse en cours, 1er trimestre")
_UNKNOWN_MONTH_CODES = tuple(f"{m}" for m in range(20, 43)) + tuple(f"{m}" for m in range(50, 100))

T = TypeVar("T")

# Birth places: 2,000 distinct codes, each drawn equally often, so the mix of the
# pool is the mix of the patients (5% abroad, 2% overseas, 1% Corsica).
_PLACE_COUNT = 2000
_SERIALS = 999
_CAPACITY = _PLACE_COUNT * _SERIALS
_PERM_BITS = 21  # 2**21 >= _CAPACITY
_PERM_MASK = (1 << _PERM_BITS) - 1
_FIRST_YEAR, _LAST_YEAR = 1920, 2020
_ADULT_LAST_YEAR = 2002


@dataclass(frozen=True)
class _Pools:
    last_names: tuple[tuple[str, str], ...]  # (name, e-mail slug)
    first_names: dict[str, tuple[tuple[str, str], ...]]  # by sex
    addresses: tuple[tuple[str, str, str], ...]  # (street, postal code, city)
    doctors: tuple[tuple[str, str], ...]  # (RPPS, name)
    insurers: tuple[str, ...]
    places: tuple[str, ...]
    perm_keys: tuple[int, ...]


def generate_patients(count: int, seed: int, start_index: int = 0) -> Iterator[dict[str, str]]:
    """Yield `count` synthetic registry rows (all values str, "" when absent).

    Row i depends only on (seed, i): rows from `start_index` equal the same rows of
    a run from 0.
    """
    if count < 0 or seed < 0 or start_index < 0:
        raise ValueError("count, seed and start_index must not be negative")
    pools = _pools(seed)
    rng = random.Random()  # noqa: S311 - synthetic data, not secrets
    for index in range(start_index, start_index + count):
        rng.seed(seed * 2**40 + index)
        yield _patient(pools, rng, index)


def generate_finess(index: int, seed: int) -> str:
    """A valid synthetic FINESS number, unique per index (below 1.2 M) for a seed.

    A north-west department, a 9, a 5-digit sequence and the Luhn key. It may equal
    a real establishment's number: those are public identifiers, not personal data.
    """
    depts = tuple(_NW_DEPTS)
    serial = (index // len(depts) + seed * 7919) % 100_000
    body = f"{depts[index % len(depts)]}9{serial:05d}"
    return body + luhn.calc_check_digit(body)


# Real towns of north-west France: public place names, which (unlike Faker's towns,
# built from surnames) cannot coincide with a synthetic patient's name.
_LAB_TOWNS = ("Rennes", "Brest", "Quimper", "Lorient", "Vannes", "Saint-Brieuc", "Lannion",
              "Morlaix", "Caen", "Cherbourg", "Nantes", "Saint-Malo", "Laval", "Le Mans")
_LAB_SITES = ("Centre", "Gare", "Nord", "Sud")


def lab_name(index: int, seed: int) -> str:
    """A laboratory name such as "Laboratoire d'analyses de Quimper - Centre"."""
    town = _LAB_TOWNS[(index + seed) % len(_LAB_TOWNS)]
    site = _LAB_SITES[(index // len(_LAB_TOWNS)) % len(_LAB_SITES)]
    return f"Laboratoire d'analyses de {town} - {site}"


# --- one patient ----------------------------------------------------------------------

def _patient(pools: _Pools, rng: random.Random, index: int) -> dict[str, str]:
    r = rng.random
    slot = _permute(index % _CAPACITY, pools.perm_keys)
    place, serial = pools.places[slot // _SERIALS], slot % _SERIALS + 1
    sex = "F" if r() < 0.52 else "M"
    birth = _birth_date(rng, corsica=place[:2] in ("2A", "2B"))
    last, last_slug = _pick(rng, pools.last_names)
    firsts = _first_names(rng, pools.first_names[sex])
    street, postal_code, city = _pick(rng, pools.addresses)
    rpps, doctor = _pick(rng, pools.doctors) if r() < 0.95 else ("", "")
    return {
        "nir": "" if r() < 0.03 else _nir(rng, sex, birth, place, serial),
        "birth_name": last,
        "used_name": _used_name(rng, pools, sex, birth, last),
        "first_names": " ".join(name for name, _ in firsts),
        "sex": sex,
        "birth_date": birth.isoformat(),
        "birth_place": place,
        "address": street,
        "postal_code": postal_code,
        "city": city,
        "phone": _phone(rng) if r() < 0.92 else "",
        "email": _email(rng, firsts[0][1], last_slug, index) if r() < 0.70 else "",
        "blood_group": "" if r() < 0.25 else _BLOOD_GROUPS[bisect.bisect(_BLOOD_CUM, r())],
        "doctor_rpps": rpps,
        "doctor_name": doctor,
        "insurer": _pick(rng, pools.insurers),
        "notes": _notes(rng, sex, birth) if r() < 0.08 else "",
    }


def _pick(rng: random.Random, items: tuple[T, ...]) -> T:
    return items[int(rng.random() * len(items))]


def _nir(rng: random.Random, sex: str, birth: dt.date, place: str, serial: int) -> str:
    abroad = place.startswith("99")
    sex_digit = {"M": "1", "F": "2"}[sex]
    if abroad and rng.random() < 0.10:  # NIA: waiting number of a person born abroad
        sex_digit = {"M": "7", "F": "8"}[sex]
    month = f"{birth.month:02d}"
    if abroad and rng.random() < 0.03:  # incomplete foreign civil record
        month = _pick(rng, _UNKNOWN_MONTH_CODES)
    body = f"{sex_digit}{birth.year % 100:02d}{month}{place}{serial:03d}"
    return body + nir_key(body)


def _birth_date(rng: random.Random, corsica: bool) -> dt.date:
    # 2A/2B exist since 1976; earlier Corsican NIRs say 20, which COG codes don't.
    years, cum = _YEARS_CORSICA if corsica else _YEARS_ALL
    year = years[bisect.bisect(cum, rng.random() * cum[-1])]
    start = dt.date(year, 1, 1).toordinal()
    return dt.date.fromordinal(start + int(rng.random() * (366 if isleap(year) else 365)))


def _year_weights(first: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Birth years skewed to adults: lab patients are mostly 40-80 years old in 2020."""
    years = tuple(range(first, _LAST_YEAR + 1))
    cum, total = [], 0.0
    for year in years:
        total += _AGE_WEIGHTS[bisect.bisect(_AGE_BOUNDS, _LAST_YEAR - year)]
        cum.append(total)
    return years, tuple(cum)


_AGE_BOUNDS = (18, 40, 80, 90)
_AGE_WEIGHTS = (0.6, 1.0, 1.3, 0.7, 0.2)
_YEARS_ALL = _year_weights(_FIRST_YEAR)
_YEARS_CORSICA = _year_weights(1976)


def _first_names(rng: random.Random, pool: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    r = rng.random()
    wanted = 1 if r < 0.45 else 2 if r < 0.85 else 3
    names: list[tuple[str, str]] = []
    for _ in range(wanted * 3):  # a few tries to avoid "Marie Marie"
        name = _pick(rng, pool)
        if name not in names:
            names.append(name)
        if len(names) == wanted:
            break
    return names


def _used_name(rng: random.Random, pools: _Pools, sex: str, birth: dt.date, last: str) -> str:
    if sex != "F" or birth.year > _ADULT_LAST_YEAR or rng.random() >= 0.30:
        return ""
    for _ in range(3):
        used = _pick(rng, pools.last_names)[0]
        if used != last:
            return used
    return ""


def _phone(rng: random.Random) -> str:
    return f"{_pick(rng, _FICTION_PHONE_PREFIXES)}{int(rng.random() * 10_000):04d}"


def _email(rng: random.Random, first_slug: str, last_slug: str, index: int) -> str:
    # The row index keeps addresses unique; the domain is reserved (RFC 2606).
    return f"{first_slug}.{last_slug}.{index}@{_pick(rng, _EMAIL_DOMAINS)}"


def plausible_note(rng: random.Random, sex: str, birth: dt.date) -> str:
    """A generic note of the kind a lab's secretary types (never a patient's own)."""
    return _notes(rng, sex, birth)


def _notes(rng: random.Random, sex: str, birth: dt.date) -> str:
    if sex == "F" and 1975 <= birth.year <= 2003 and rng.random() < 0.3:
        return _pick(rng, _PREGNANCY_NOTES)
    return _pick(rng, _NOTES)


def _permute(value: int, keys: tuple[int, ...]) -> int:
    """A keyed bijection of [0, _CAPACITY): invertible mixing on 21 bits, cycle-walked."""
    while True:
        for key in keys:
            value = (value + key) & _PERM_MASK
            value ^= value >> 11
            value = (value * 0x5BD1E9) & _PERM_MASK  # odd, so invertible modulo 2**21
            value ^= value >> 7
        if value < _CAPACITY:
            return value


# --- pools, built once per seed -------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _pools(seed: int) -> _Pools:
    fake = Faker("fr_FR")
    fake.seed_instance(seed)
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets
    return _Pools(
        last_names=_last_names(fake, rng),
        first_names={
            "F": tuple(_slugged(fake.first_name_female() for _ in range(1500))),
            "M": tuple(_slugged(fake.first_name_male() for _ in range(1500))),
        },
        addresses=tuple(_address(fake, rng) for _ in range(5000)),
        doctors=tuple(_doctor(fake, rng) for _ in range(400)),
        insurers=_insurers(fake),
        places=_birth_places(rng),
        perm_keys=tuple(rng.getrandbits(_PERM_BITS) for _ in range(3)),
    )


def _slugged(names: object) -> list[tuple[str, str]]:
    return [(name, normalize_name(name).lower().replace(" ", "-")) for name in names]


def _last_names(fake: Faker, rng: random.Random) -> tuple[tuple[str, str], ...]:
    names = []
    for _ in range(3000):
        name = fake.last_name()
        if rng.random() < 0.06:  # double-barrelled birth names
            name = f"{name}-{fake.last_name()}"
        names.append(name)
    return tuple(_slugged(names))


def _address(fake: Faker, rng: random.Random) -> tuple[str, str, str]:
    dept = _dept(rng, nw_share=0.9)
    return fake.street_address(), f"{dept}{int(rng.random() * 100) * 10:03d}", fake.city()


def _dept(rng: random.Random, nw_share: float) -> str:
    return _pick(rng, tuple(_NW_DEPTS) if rng.random() < nw_share else _OTHER_DEPTS)


def _doctor(fake: Faker, rng: random.Random) -> tuple[str, str]:
    body = f"19{rng.randrange(10**8):08d}"
    first = fake.first_name_female() if rng.random() < 0.5 else fake.first_name_male()
    return body + luhn.calc_check_digit(body), f"Dr {first} {fake.last_name()}"


def _insurers(fake: Faker) -> tuple[str, ...]:
    mutuelles = []
    while len(mutuelles) < 18:
        name = f"Mutuelle {fake.last_name()}"
        if name not in mutuelles:
            mutuelles.append(name)
    return tuple(f"CPAM {name}" for name in _NW_DEPTS.values()) + tuple(mutuelles)


def _birth_places(rng: random.Random) -> tuple[str, ...]:
    """Distinct COG codes, in a seed-dependent order (never a set: hash order varies)."""
    makers = (
        (100, lambda: f"99{_country_code(rng)}"),
        (40, lambda: f"{rng.choice(('971', '972', '973', '974', '976'))}{rng.randint(1, 24):02d}"),
        (20, lambda: f"{rng.choice(('2A', '2B'))}{rng.randint(1, 360):03d}"),
        (_PLACE_COUNT - 160, lambda: f"{_dept(rng, nw_share=0.6)}{rng.randint(1, 600):03d}"),
    )
    places: list[str] = []
    for count, make in makers:
        seen: set[str] = set()
        while len(seen) < count:
            place = make()
            if place not in seen:
                seen.add(place)
                places.append(place)
    rng.shuffle(places)
    return tuple(places)


# INSEE country codes are grouped by continent: 1xx Europe, 2xx Asia, 3xx Africa,
# 4xx Americas, 5xx Oceania. Synthetic codes are drawn inside the parts in use,
# Europe and Africa first as in the patients of a French lab.
_COUNTRY_RANGES = ((101, 157), (301, 397), (201, 255), (401, 443), (501, 517))
_COUNTRY_CUM = (0.35, 0.80, 0.92, 0.98, 1.0)


def _country_code(rng: random.Random) -> str:
    low, high = _COUNTRY_RANGES[bisect.bisect(_COUNTRY_CUM, rng.random())]
    return f"{rng.randint(low, high)}"
