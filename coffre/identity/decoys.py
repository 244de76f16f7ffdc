"""Decoy identities (canary patients, export watermark rows) that look like the lab's own
patients.

A decoy that can be told apart from real patients can be removed from a copy before it
is sold or published, and then attributes nothing. So a decoy is not made from a
generator of its own (whose shapes a regular expression learns) but from the lab's
patients: :class:`LabProfile` decrypts a random sample of them in memory and keeps
each trait apart (surnames, first names by sex, birth dates, birth places, towns,
phone and e-mail styles, doctors, insurers, the rates of absent values, registration
times). A decoy draws each trait from a different patient, then makes its own
identifiers in the lab's style: a NIR from its own sex, birth date and place; a phone
that keeps a sampled number's prefix and draws the rest; an e-mail built from its own
names in a sampled address's pattern and domain. Free text comes from a list of
generic notes at the lab's rate, never from a patient's note.

The sample is read with an audit entry per sampled patient (action ``decoy_sample``,
outside the mass-reading counts, in each patient's history). Below
:data:`MIN_SAMPLE` patients a lab's traits would identify the few people they come
from: the synthetic generator's pools are used instead (the data of a new lab, or of a
test, come from it anyway).

A decoy never gets a real patient's NIR, phone or e-mail: the caller checks that no
patient of the lab shares them (``coffre.breach.planting``).
"""

from __future__ import annotations

import datetime as dt
import random
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field

from django.utils import timezone

from coffre.identity import digests, french, synthetic
from coffre.identity.models import Patient
from coffre.identity.registry import clean_values, open_columns

MIN_SAMPLE = 200
SAMPLE = 400
_FIELDS = ("nir", "birth_name", "used_name", "first_names", "sex", "birth_date",
           "birth_place", "postal_code", "city", "phone", "email", "blood_group",
           "doctor_rpps", "doctor_name", "insurer", "notes", "treatments")
_JITTER_DAYS = 45
_TREATMENTS = ("Lévothyrox 75 µg", "Kardégic 75 mg", "Metformine 1000 mg x2",
               "Previscan 20 mg", "Tahor 20 mg", "Inexium 20 mg")


@dataclass
class _Pools:
    """Traits of the sampled patients, each list on its own (never a whole row)."""

    birth_names: list[str] = field(default_factory=list)
    used_names: list[str] = field(default_factory=list)  # women's; "" where none
    first_names: dict[str, list[str]] = field(default_factory=lambda: {"F": [], "M": []})
    sexes: list[str] = field(default_factory=list)
    birth_dates: list[dt.date] = field(default_factory=list)
    birth_places: list[str] = field(default_factory=list)
    towns: list[tuple[str, str]] = field(default_factory=list)  # (postal code, city)
    phones: list[str] = field(default_factory=list)  # "" where none
    emails: list[str] = field(default_factory=list)  # "" where none
    blood_groups: list[str] = field(default_factory=list)
    doctors: list[tuple[str, str]] = field(default_factory=list)
    insurers: list[str] = field(default_factory=list)
    nir_absent: list[bool] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    with_notes: list[bool] = field(default_factory=list)
    with_treatments: list[bool] = field(default_factory=list)
    registered: list[dt.datetime] = field(default_factory=list)

    def add(self, values: dict[str, str], status: str, created: dt.datetime) -> None:
        sex = values["sex"] or "F"
        self.birth_names.append(values["birth_name"])
        if sex == "F":
            self.used_names.append(values["used_name"])
        self.first_names.setdefault(sex, []).append(values["first_names"])
        self.sexes.append(sex)
        if values["birth_date"]:
            self.birth_dates.append(dt.date.fromisoformat(values["birth_date"]))
        self.birth_places.append(values["birth_place"])
        self.towns.append((values["postal_code"], values["city"]))
        self.phones.append(values["phone"])
        self.emails.append(values["email"])
        self.blood_groups.append(values["blood_group"])
        self.doctors.append((values["doctor_rpps"], values["doctor_name"]))
        self.insurers.append(values["insurer"])
        self.nir_absent.append(not values["nir"])
        self.statuses.append(status)
        self.with_notes.append(bool(values["notes"]))
        self.with_treatments.append(bool(values.get("treatments")))
        self.registered.append(created)


class LabProfile:
    """What the lab's patients look like; ``sampled`` lists the patients read."""

    def __init__(self, lab_id: int, rng: random.Random, *, exclude: set[uuid.UUID] = frozenset(),
                 sample: int = SAMPLE) -> None:
        self.lab_id = lab_id
        self.pools = _Pools()
        self.sampled: list[uuid.UUID] = []
        self._faker_seed = rng.randrange(10**9)
        ids = [pid for pid in Patient.unscoped.filter(lab_id=lab_id, data_key__isnull=False)
               .values_list("id", flat=True) if pid not in exclude]
        if len(ids) >= MIN_SAMPLE:
            self._read(rng.sample(ids, min(sample, len(ids))))
        else:
            self._synthetic(rng, sample)
        self._times = sorted(self.pools.registered)

    def _read(self, ids: list[uuid.UUID]) -> None:
        rows = (Patient.unscoped.filter(id__in=ids)
                .values_list("id", "lab_id", "data_key", "identity_status", "created_at",
                             *_FIELDS))
        for pid, lab_id, wrapped, status, created, *blobs in rows.iterator(chunk_size=500):
            values = open_columns(pid, lab_id, wrapped, dict(zip(_FIELDS, blobs, strict=True)))
            self.pools.add(values, status, created)
            self.sampled.append(pid)

    def _synthetic(self, rng: random.Random, count: int) -> None:
        now = timezone.now()
        for row in synthetic.generate_patients(count, seed=rng.randrange(10**9),
                                               start_index=rng.randrange(10**6)):
            values, _ = clean_values(row)
            self.pools.add({**values, "treatments": ""}, values["identity_status"],
                           now - dt.timedelta(minutes=rng.randrange(60 * 24 * 30)))

    # --- one decoy -------------------------------------------------------------------

    def identity(self, rng: random.Random) -> dict[str, str]:
        """A valid registry row (canonical values) drawn trait by trait."""
        pools, pick = self.pools, rng.choice
        sex = pick(pools.sexes)
        birth = _jittered(pick(pools.birth_dates), rng)
        place = pick(pools.birth_places) or _any_place(pools, rng)
        birth_name = self._surname(pools.birth_names, rng)
        used_name = self._surname(pools.used_names, rng) if sex == "F" and pools.used_names \
            else ""
        if used_name == birth_name:
            used_name = ""
        first_names = self._first_names(sex, rng)
        postal_code, city = self._town(rng)
        rpps, doctor = pick(pools.doctors)
        row = {
            "nir": "" if pick(pools.nir_absent) else _nir(sex, birth, place, rng),
            "birth_name": birth_name, "used_name": used_name, "first_names": first_names,
            "sex": sex, "birth_date": birth.isoformat(), "birth_place": place,
            "address": self._street(rng), "postal_code": postal_code, "city": city,
            "phone": _phone_like(pick(pools.phones), rng),
            "email": _email_like(pick(pools.emails), birth_name, first_names, birth, rng),
            "blood_group": pick(pools.blood_groups), "doctor_rpps": rpps,
            "doctor_name": doctor, "insurer": pick(pools.insurers),
            "notes": synthetic.plausible_note(rng, sex, birth) if pick(pools.with_notes)
            else "",
            "treatments": pick(_TREATMENTS) if pick(pools.with_treatments) else "",
        }
        status = pick(pools.statuses)
        row["identity_status"] = status if row["nir"] or status in ("PROV", "VALI") else "PROV"
        values, errors = clean_values(row)
        if errors:  # a sampled trait the registry refuses now (rules changed): draw again
            return self.identity(rng)
        return values

    # A trait drawn only from the sample would always be one some patient has: a rare
    # surname would then appear twice, and canaries would be the patients who never
    # have a trait of their own. So a trait is new (from Faker fr_FR) as often as the
    # sample has traits seen once (Good-Turing: the chance that the next patient's is
    # unseen).

    def _surname(self, pool: list[str], rng: random.Random) -> str:
        value = rng.choice(pool)
        if value and rng.random() < _unseen_share(pool):
            return self._faker(rng).last_name()
        return value

    def _first_names(self, sex: str, rng: random.Random) -> str:
        pool = self.pools.first_names.get(sex) or self.pools.first_names["F"] \
            or self.pools.first_names["M"]
        value = rng.choice(pool)
        if rng.random() < _unseen_share(pool):
            fake = self._faker(rng)
            names = [fake.first_name_female() if sex == "F" else fake.first_name_male()
                     for _ in range(len(value.split()) or 1)]
            return " ".join(dict.fromkeys(names))
        return value

    def _town(self, rng: random.Random) -> tuple[str, str]:
        postal_code, city = rng.choice(self.pools.towns)
        if city and rng.random() < _unseen_share([t[1] for t in self.pools.towns]):
            return postal_code, self._faker(rng).city()
        return postal_code, city

    def _faker(self, rng: random.Random):
        from faker import Faker

        fake = Faker("fr_FR")
        fake.seed_instance(self._faker_seed + rng.randrange(10**6))
        return fake

    def registered_at(self, rng: random.Random) -> dt.datetime:
        """A registration time like the lab's: between two neighbouring sampled ones
        (so the lab's busy hours, days and quiet periods are followed, whatever its
        pace), never into the future."""
        times = self._times
        if len(times) < 2:
            return times[0] if times else timezone.now()
        at = rng.randrange(len(times) - 1)
        return min(times[at] + (times[at + 1] - times[at]) * rng.random(), timezone.now())

    def _street(self, rng: random.Random) -> str:
        return self._faker(rng).street_address()


def _unseen_share(pool: list[str]) -> float:
    """The share of the pool's values seen once (the Good-Turing estimate of the chance
    that a new draw is a value not in the pool)."""
    present = [value for value in pool if value]
    if not present:
        return 0.0
    counts = Counter(present)
    return sum(1 for n in counts.values() if n == 1) / len(present)


def _jittered(day: dt.date, rng: random.Random) -> dt.date:
    moved = day + dt.timedelta(days=rng.randint(-_JITTER_DAYS, _JITTER_DAYS))
    return min(moved, timezone.localdate() - dt.timedelta(days=1))


def _any_place(pools: _Pools, rng: random.Random) -> str:
    known = [p for p in pools.birth_places if p]
    return rng.choice(known) if known else "75056"


def _nir(sex: str, birth: dt.date, place: str, rng: random.Random) -> str:
    body = f"{1 if sex == 'M' else 2}{birth.year % 100:02d}{birth.month:02d}{place}" \
           f"{rng.randint(1, 999):03d}"
    return body + french.nir_key(body)


def _phone_like(sample: str, rng: random.Random) -> str:
    """A number with the sampled one's prefix (country, operator or area, a fiction
    block...) and four digits of its own; none when the sample has none."""
    if not sample:
        return ""
    return sample[:-4] + f"{rng.randrange(10_000):04d}"


_SEPARATORS = re.compile(r"[._-]")


def _slug(name: str) -> str:
    return french.normalize_name(name).lower().replace(" ", "-")


def _email_like(sample: str, birth_name: str, first_names: str, birth: dt.date,
                rng: random.Random) -> str:
    """An address in the sampled one's style: same domain, same separator, the names in
    the same order or initial form, digits where it had digits (a number of the same
    length, or the birth year)."""
    if not sample or "@" not in sample:
        return ""
    local, domain = sample.rsplit("@", 1)
    first = _slug(first_names.split()[0]) if first_names else "x"
    last = _slug(birth_name) or "x"
    separator = (_SEPARATORS.search(local) or [""])[0]
    words = [w for w in _SEPARATORS.split(local) if w]
    digits = re.search(r"\d+$", local)
    parts = [first, last]
    if words and len(words[0]) == 1:
        parts = [first[0], last]
    elif len(words) >= 2 and words[0].isalpha() and not words[1].isalpha():
        parts = [last] if rng.random() < 0.5 else [first]
    suffix = ""
    if digits:
        length = len(digits.group())
        suffix = (str(birth.year) if length == 4 else
                  f"{rng.randrange(10**length):0{length}d}")
    address = separator.join(parts) + (separator if separator and suffix and
                                       local[digits.start() - 1:digits.start()]
                                       == separator else "") + suffix
    return f"{address}@{domain}"


MAX_TRIES = 50


class NoUnusedIdentity(RuntimeError):
    """No identity free of the lab's identifiers could be drawn (a lab far too small
    for the decoys asked)."""


def decoy_texts(values: dict[str, str]) -> list[tuple[str, str]]:
    """(slot, text) of a decoy's identifiers, as coffre.identity.digests compares them."""
    found = []
    if values.get("nir"):
        found.append(("nir", digests.nir_text(values["nir"])))
    if values.get("birth_date"):
        for name in (values.get("birth_name", ""), values.get("used_name", "")):
            if name:
                found.append(("name", digests.name_text(values["birth_date"],
                                                       french.normalize_name(name))))
    if values.get("phone"):
        found.append(("phone", digests.phone_text(values["phone"])))
    if values.get("email"):
        found.append(("email", digests.email_text(values["email"])))
    return found


def draw_unused(profile: LabProfile, taken: digests.PatientDigests,
                mine: set[tuple[str, str]], rng: random.Random) -> dict[str, str]:
    """A decoy none of whose NIR, name + birth date, phone or e-mail is a patient's of
    the lab (``taken``), nor another new decoy's (``mine``, updated)."""
    for _ in range(MAX_TRIES):
        values = profile.identity(rng)
        texts = decoy_texts(values)
        if any(taken.get(slot, text) for slot, text in texts) or mine & set(texts):
            continue
        mine.update(texts)
        return values
    raise NoUnusedIdentity(f"no unused identity after {MAX_TRIES} draws: the lab has too "
                           "few patients for its decoys")
