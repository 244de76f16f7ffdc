"""Scan leaked files: read them, recognise their columns, and match every row against
the installation's patients.

How a row is matched:

1. Every patient in scope (the whole installation, or one lab) is decrypted once, at
   the start of the scan: their NIR, birth and used names with the birth date, phone
   and e-mail are normalised as the registry normalises them, and only keyed digests
   of them are kept (``PatientDigests``): BLAKE2b in its keyed mode (a MAC), under a
   random key drawn for this scan and never written anywhere, looked up by their first
   64 bits. No plaintext is kept; the decrypted values live only while their digests
   are computed.
2. Each row's values are normalised the same way and digested under the same key; a
   digest equal to a patient's is a match of that value (64 bits: a chance coincidence
   between the 2.5 million values of a 500,000-row file and the 2.5 million values of
   491,840 patients has a probability of about 3 in 10 million). No blind index is
   used: each lab's index
   keys are its own and truncated so that a row's tuple of index values stays
   ambiguous within the lab, which makes indexes a poor tool for matching a file
   against every lab at once, while decrypting each patient once costs the same as the
   confirmation of candidates did (a file of 500,000 rows named nearly every patient).
3. A row's confidence is the strongest level it matches (NIR, then name + birth date,
   then phone or e-mail); among the patients matching at that level, the one matching
   most of the row's values is chosen (in practice the true patient). It counts for
   that one patient.

Like the digest table, the scan is a snapshot: a patient erased or renamed during the
scan may still be matched on the values it had. Canary patients are reported as
evidence, never as affected patients. Reads are audited like an export (see
``_audit``).

With ``helpers`` (the CLI on a large file), the patients are decrypted in forked
processes, a share of the labs each, while this process waits; the rows are then read,
digested and looked up here.
"""

from __future__ import annotations

import multiprocessing
import uuid
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from coffre.breach import columns as cols
from coffre.breach.attribution import Attributor
from coffre.breach.readers import BreachScanError, Table, open_file
from coffre.breach.report import (
    CATEGORIES,
    CONFIDENCES,
    CONTACT,
    NAME_BIRTH,
    NIR,
    LabImpact,
    ScanReport,
)
from coffre.labs.tenancy import Actor
from coffre.vault import ScratchDigest, file_sha256

BATCH_ROWS = 5000
ACTION = "breach_scan"  # audit action; not a READ_ACTION, so outside mass-reading counts
_FIELDS = ("nir", "birth_name", "used_name", "birth_date", "phone", "email")
_LEVEL_RANK = {level: rank for rank, level in enumerate(CONFIDENCES)}

Progress = Callable[[int], None]


# --- the patients, decrypted once into keyed digests --------------------------------

_SLOTS = ("nir", "name", "phone", "email")
_MIXED = 0xFFFF_FFFF_FFFF_FFFF  # digests are looked up by their first 64 bits


def _digest_key(digest: ScratchDigest, text: str) -> int:
    return int.from_bytes(digest(text)[:8], "big")


def nir_text(nir: str) -> str:
    return "i\x1f" + nir


def name_text(birth_date: str, name: str) -> str:
    return f"n\x1f{birth_date}\x1f{name}"


def phone_text(phone: str) -> str:
    return "p\x1f" + phone


def email_text(email: str) -> str:
    return "e\x1f" + email.lower()


def _patient_texts(values: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(slot, text to digest) of one decrypted patient's compared values."""
    if values["nir"]:
        yield "nir", nir_text(values["nir"])
    birth = values["birth_date"]
    if birth:
        names = {n for n in (cols.normalize_name(values["birth_name"]),
                             cols.normalize_name(values["used_name"])) if n}
        for name in sorted(names):
            yield "name", name_text(birth, name)
    if values["phone"]:
        yield "phone", phone_text(values["phone"])
    if values["email"]:
        yield "email", email_text(values["email"])


class PatientDigests:
    """The patients in scope, each decrypted once: ``ids`` and ``labs`` by position, and
    per compared value a map from digest (first 64 bits) to position (an int, or a
    list of positions when several patients share the value: a family's phone)."""

    def __init__(self, lab_id: int | None = None, helpers: int = 0) -> None:
        from coffre.identity.models import Patient

        self.digest = ScratchDigest()
        self.ids: list[uuid.UUID] = []
        self.labs: list[int] = []
        self.maps: dict[str, dict[int, int | list[int]]] = {slot: {} for slot in _SLOTS}
        scope = Patient.unscoped.filter(data_key__isnull=False)
        if lab_id is not None:
            scope = scope.filter(lab_id=lab_id)
        positions: dict[uuid.UUID, int] = {}
        per_lab: Counter = Counter()
        for pid, lab in scope.order_by("lab_id", "id").values_list("id", "lab_id").iterator(
                chunk_size=10_000):
            positions[pid] = len(self.ids)
            self.ids.append(pid)
            self.labs.append(lab)
            per_lab[lab] += 1
        for part in _decrypt_parts(positions, per_lab, self.digest, helpers):
            self._add(part)

    @classmethod
    def empty(cls) -> PatientDigests:
        """No patient (a scan of files without a single row)."""
        found = cls.__new__(cls)
        found.digest, found.ids, found.labs = ScratchDigest(), [], []
        found.maps = {slot: {} for slot in _SLOTS}
        return found

    def _add(self, part: dict[str, array]) -> None:
        for slot, pairs in part.items():
            found = self.maps[slot]
            for at in range(0, len(pairs), 2):
                key, pos = pairs[at] & _MIXED, pairs[at + 1]
                known = found.get(key)
                if known is None:
                    found[key] = pos
                elif isinstance(known, list):
                    known.append(pos)
                elif known != pos:
                    found[key] = [known, pos]

    def get(self, slot: str, text: str) -> list[int]:
        """Positions of the patients whose ``slot`` value digests like ``text``."""
        found = self.maps[slot].get(_digest_key(self.digest, text))
        if found is None:
            return _NONE
        return found if isinstance(found, list) else [found]


_NONE: list[int] = []


def _decrypt_parts(positions: dict[uuid.UUID, int], per_lab: Counter, digest: ScratchDigest,
                   helpers: int) -> Iterator[dict[str, array]]:
    """The digests of every patient, a lab at a time: here, or in ``helpers`` forked
    processes sharing out the labs (largest first)."""
    labs = [lab for lab, _n in per_lab.most_common()]
    if helpers < 1 or len(labs) < 2:
        for lab in labs:
            yield _decrypt_lab(lab, positions, digest)
        return
    from django.db import connection, connections

    if connection.in_atomic_block:
        for lab in labs:
            yield _decrypt_lab(lab, positions, digest)
        return
    global _FORKED
    _FORKED = (positions, digest)  # inherited by the forked helpers, never pickled
    connections.close_all()  # each helper opens its own connection
    pool = multiprocessing.get_context("fork").Pool(helpers)
    try:
        yield from pool.imap_unordered(_forked_lab, labs)
    finally:
        pool.terminate()
        pool.join()
        _FORKED = None


_FORKED: tuple[dict[uuid.UUID, int], ScratchDigest] | None = None


def _forked_lab(lab_id: int) -> dict[str, array]:
    assert _FORKED is not None
    return _decrypt_lab(lab_id, *_FORKED)


def _decrypt_lab(lab_id: int, positions: dict[uuid.UUID, int], digest: ScratchDigest
                 ) -> dict[str, array]:
    """(digest key, position) pairs of one lab's patients, flat per slot. Plain SQL: the
    ORM's model instances of wide sealed rows cost more than the decryption."""
    from django.db import connection

    from coffre.identity.models import Patient
    from coffre.identity.registry import patient_key

    if not _AD:
        _AD.update(_ad_prefixes())
    meta, quote = Patient._meta, connection.ops.quote_name
    pk = meta.pk
    columns = ", ".join(quote(meta.get_field(name).column)
                        for name in ("id", "data_key", *_FIELDS))
    sql = (f"SELECT {columns} FROM {quote(meta.db_table)} "  # noqa: S608 - names from the model
           f"WHERE {quote(meta.get_field('lab').column)} = %s AND "
           f"{quote(meta.get_field('data_key').column)} IS NOT NULL")
    pairs = {slot: array("q") for slot in _SLOTS}
    with connection.cursor() as cursor:
        cursor.execute(sql, [lab_id])
        while rows := cursor.fetchmany(2000):
            for raw_id, wrapped, *blobs in rows:
                pid = pk.to_python(raw_id)
                pos = positions.get(pid)
                if pos is None:  # created since the positions were listed
                    continue
                key, row = patient_key(pid, lab_id, bytes(wrapped)), str(pid).encode()
                values = {name: key.open(bytes(blob), _AD[name] + row)
                          for name, blob in zip(_FIELDS, blobs, strict=True)}
                for slot, text in _patient_texts(values):
                    pairs[slot].extend((_signed(_digest_key(digest, text)), pos))
    return pairs


def _signed(value: int) -> int:
    """A 64-bit digest key as array("q") stores it (masked back on reading)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _ad_prefixes() -> dict[str, bytes]:
    from coffre.identity.registry import TABLE
    from coffre.vault import context_prefix

    return {name: context_prefix(TABLE, name) for name in _FIELDS}


_AD: dict[str, bytes] = {}


# --- one row's keys ------------------------------------------------------------------------

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
    columns: list[cols.Column]
    nir: list[int]
    family: list[int]
    birth: cols.Column | None
    phone: list[int]
    email: list[int]

    @classmethod
    def of(cls, table: str, header: list[str], columns: list[cols.Column]) -> Plan:
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
            keys.nir = cols.nir_value(cell(index)) or ""
        if self.birth is not None:
            date = cols.date_value(cell(self.birth.index), self.birth.day_first)
            keys.birth_date = date.isoformat() if date else ""
        if keys.birth_date:
            keys.names = tuple(dict.fromkeys(
                n for i in self.family if (n := cols.normalize_name(cell(i)))))
        for index in self.phone:
            keys.phone = cols.phone_value(cell(index), lenient=True) or ""
        for index in self.email:
            keys.email = cols.email_value(cell(index)) or ""
        return keys


def match_row(keys: RowKeys, patients: PatientDigests) -> tuple[int, str] | None:
    """The row's (position, level): its strongest level, and there the patient that
    matches most of the row's values."""
    found: dict[str, list[int]] = {}
    if keys.nir:
        found[NIR] = patients.get("nir", nir_text(keys.nir))
    if keys.names:
        found[NAME_BIRTH] = [pos for name in keys.names
                             for pos in patients.get("name", name_text(keys.birth_date,
                                                                       name))]
    contact = []
    if keys.phone:
        contact += patients.get("phone", phone_text(keys.phone))
    if keys.email:
        contact += patients.get("email", email_text(keys.email))
    found[CONTACT] = contact
    for level in CONFIDENCES:
        candidates = found.get(level)
        if not candidates:
            continue
        if len(candidates) == 1:
            return candidates[0], level
        hits = Counter(pos for positions in found.values() for pos in positions)
        return max(dict.fromkeys(candidates), key=hits.__getitem__), level
    return None


# --- the scan ---------------------------------------------------------------------------

@dataclass
class _Tally:
    rows_read: int = 0
    rows_matched: int = 0
    matches: dict[int, str] = field(default_factory=dict)  # position -> strongest level
    canary_rows: Counter = field(default_factory=Counter)  # patient id -> rows
    columns: list = field(default_factory=list)
    categories: set[str] = field(default_factory=set)

    def add(self, result: tuple[int, str] | None, index_map: PatientDigests,
            canary_ids: frozenset[uuid.UUID]) -> None:
        self.rows_read += 1
        if result is None:
            return
        pos, level = result
        pid = index_map.ids[pos]
        if pid in canary_ids:
            self.canary_rows[pid] += 1
            return
        self.rows_matched += 1
        known = self.matches.get(pos)
        if known is None or _LEVEL_RANK[level] < _LEVEL_RANK[known]:
            self.matches[pos] = level


def _file_info(path: Path) -> dict:
    return {"name": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size}


def _tables(rows: Iterator[tuple[Table, list[str]]]) -> Iterator[tuple[Plan, list[str]]]:
    """Each row with its table's plan; a table's first SAMPLE_ROWS rows are held back
    until its columns are known (tables of a SQL dump may interleave)."""
    plans: dict[int, Plan] = {}
    held: dict[int, list[list[str]]] = defaultdict(list)
    tables: dict[int, Table] = {}
    for table, row in rows:
        key = id(table)
        plan = plans.get(key)
        if plan is not None:
            yield plan, row
            continue
        tables[key] = table
        held[key].append(row)
        if len(held[key]) >= cols.SAMPLE_ROWS:
            yield from _release(table, held.pop(key), plans)
    for key, waiting in held.items():
        yield from _release(tables[key], waiting, plans)


def _release(table: Table, rows: list[list[str]], plans: dict[int, Plan]
             ) -> Iterator[tuple[Plan, list[str]]]:
    header = list(table.header or [])
    sample = rows[1:] if table.first_row_maybe_header and len(rows) > 1 else rows
    columns = cols.classify(header, sample)
    if table.first_row_maybe_header and len(rows) > 1 and \
            cols.first_row_is_header(rows[0], columns):
        header, rows = rows[0], rows[1:]
        columns = cols.named(columns, header, rows)
    plan = plans[id(table)] = Plan.of(table.name, header, columns)
    for row in rows:
        yield plan, row


def scan_files(paths: Iterable[Path | str], *, progress: Progress | None = None,
               lab_id: int | None = None, actor: Actor | None = None,
               helpers: int = 0) -> ScanReport:
    """Scan the files and return the report; record the reads in the audit log.

    ``lab_id`` restricts matching to one lab (``--lab``); ``actor`` is who scans (the
    CLI's operating-system user by default; a web actor restricts to its lab);
    ``helpers``: processes forked to decrypt the patients (the CLI, outside any
    transaction). Raises BreachScanError for a file that cannot be read, before
    anything is written.
    """
    from coffre.audit import canaries

    paths = [Path(p) for p in paths]
    for path in paths:
        if not path.is_file():
            raise BreachScanError(f"{path.name}: no such file")
    if actor is not None and actor.channel != "cli":
        from coffre.audit import detection

        detection.ensure_not_locked(actor)
        lab_id = actor.lab_id
    canary_ids = frozenset(uuid.UUID(r["patient_id"]) for r in canaries.planted(lab_id))
    attributor = Attributor()
    tally = _Tally()
    files = []
    patients: PatientDigests | None = None
    try:
        for path in paths:
            info = _file_info(path)
            opened = open_file(path)
            before = tally.rows_read
            seen: set[int] = set()
            done = 0
            for plan, row in _tables(opened.rows):
                if patients is None:  # the first row is read: the file is readable
                    patients = PatientDigests(lab_id, helpers)
                if id(plan) not in seen:
                    seen.add(id(plan))
                    tally.columns.extend(c.guess(plan.table) for c in plan.columns)
                    tally.categories.update(c.category for c in plan.columns)
                result = match_row(plan.keys(row), patients)
                tally.add(result, patients, canary_ids)
                if result is None:
                    attributor.unmatched(row, plan)
                done += 1
                if progress and done == BATCH_ROWS:
                    progress(done)
                    done = 0
            if progress and done:
                progress(done)
            files.append({**info, "format": opened.format, "rows": tally.rows_read - before})
    finally:
        # The memo of names and dates holds the file's (and decrypted) values: drop them
        # with the scan rather than keep them in a long-lived web worker.
        cols.normalize_name.cache_clear()
        cols.date_value.cache_clear()
    matched = patients or PatientDigests.empty()
    report = ScanReport(
        files=files, rows_read=tally.rows_read, rows_matched=tally.rows_matched,
        columns=tally.columns, categories=[c for c in CATEGORIES if c in tally.categories],
        labs=_lab_impacts(tally, matched),
        evidence=attributor.evidence(tally.canary_rows),
        matches={matched.ids[pos]: level for pos, level in tally.matches.items()})
    _audit(report, tally, matched, actor, files)
    return report


def _lab_impacts(tally: _Tally, index_map: PatientDigests) -> list[LabImpact]:
    from coffre.labs.models import Lab

    per_lab: dict[int, Counter] = defaultdict(Counter)
    for pos, level in tally.matches.items():
        per_lab[index_map.labs[pos]][level] += 1
    labs = {lab.id: lab for lab in Lab.objects.filter(id__in=list(per_lab))}
    return [LabImpact(lab_id=lab_id, finess=labs[lab_id].finess, name=labs[lab_id].name,
                      patients=sum(counts.values()),
                      by_confidence={level: counts.get(level, 0) for level in CONFIDENCES})
            for lab_id, counts in sorted(per_lab.items())]


def _audit(report: ScanReport, tally: _Tally, index_map: PatientDigests, actor: Actor | None,
           files: list[dict]) -> None:
    """One chained entry per matched patient, appended in chunks as the exports do,
    WITHOUT the mass-reading detection and the canary check of ``log.record``: a scan
    confirms by design thousands of patients (and the lab's canaries) in a leaked file;
    running it from the data-protection officer's account must not lock that account
    or raise a canary alert against it in the middle of a breach. Its action,
    "breach_scan", is not one of ``log.READ_ACTIONS``, so these entries do not count in
    the person's later reading thresholds either. Each entry carries the patient's own
    lab, so each lab's DPO and each patient see it; a scan that matched nobody leaves one
    entry without a patient. The purpose (sealed) names the files by their SHA-256."""
    from django.db import transaction
    from django.utils import timezone

    from coffre.audit import chain
    from coffre.audit.log import seal_text
    from coffre.labs.tenancy import cli_actor

    who = actor or cli_actor(None, role="dpo")
    purpose = seal_text("breach scan of " + ", ".join(
        f"{f['name']} (sha256 {f['sha256'][:16]})" for f in files), "purpose")
    entry = {"at": timezone.now(), "person": who.person, "role": who.role,
             "channel": who.channel, "action": ACTION, "kind": "breach",
             "address": who.address, "outcome": "ok", "purpose": purpose}
    positions = list(tally.matches)
    if not positions:
        chain.append([{**entry, "lab_id": who.lab_id, "patient_id": None,
                       "outcome": "no_match"}])
        return
    with transaction.atomic():
        for start in range(0, len(positions), BATCH_ROWS):
            chain.append([{**entry, "lab_id": index_map.labs[pos], "patient_id": index_map.ids[pos]}
                          for pos in positions[start:start + BATCH_ROWS]])
