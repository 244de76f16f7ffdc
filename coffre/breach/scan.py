"""Scan leaked files: read them, recognise their columns, and match every row against
the installation's patients through the blind indexes only.

How a row is matched:

1. Its NIR, family name(s) + birth date, phone and e-mail are normalised as the
   registry normalises them and hashed with the registry's blind indexer (one
   installation-wide indexer: the same computation as ``registry.index_values``).
2. The index values are looked up in an in-memory map of the index columns (ints and
   row ids only, no ciphertext), loaded once per scan: a lookup per row and per index
   in the database would be tens of millions of index probes for 500,000 rows and 28
   labs, since the indexes lead with the lab id. Nothing is decrypted for this step.
3. Candidates are confirmed by decryption, strongest level first (NIR, then name +
   birth date, then phone or e-mail): truncated indexes collide by design (2 or more
   patients per value), so a candidate is a match only once its decrypted value equals
   the row's. The candidate hit by most of a row's indexes is tried first (in practice
   the true patient), the others only when it does not settle the row at its strongest
   possible level. Candidates are fetched in bulk, once per batch (one query per 900).
4. The confirmations are memoised (``_Digests``): a scan checks the same patients
   again and again (1.7 million candidate checks over 491,840 patients for a file of
   500,000 rows), so the first time a candidate is fetched, its data key is unwrapped,
   its compared fields (NIR, names + birth date, phone, e-mail) are decrypted at once,
   and only keyed digests of their normalised values are kept: keyed BLAKE2b (a MAC,
   half the cost of HMAC-SHA256 here) of 128 bits, under a random key drawn per scan and
   per process and never written anywhere. A later row naming that candidate compares
   its own digests with them, with no fetch, unwrap or decryption. No plaintext is
   cached; the decrypted values live only while their digests are computed. The cache
   is a direct-mapped table of flat arrays (about 85 bytes per patient, at most
   CACHE_PATIENTS patients, ~85 MB, per process that confirms); it ends with the scan.
   Like the index map, it is a snapshot: a patient erased or renamed during the scan
   may still be matched on the values it had.

A row's confidence is the strongest level confirmed; it counts for one patient (the
first confirmed at that level). Canary patients are reported as evidence, never as
affected patients. Reads are audited like an export (see ``_audit``).

Rows go by batches of BATCH_ROWS; with ``helpers`` (the CLI on a large file), steps 1-4
of each batch run in forked processes while this one reads on (``_Confirmer``), each
helper with its own cache. A row of strangers costs the most: every candidate of every
level must be ruled out (about 5 x 3 of them), where a patient's row is settled by one;
with the cache, most of them are ruled out by comparing digests.
"""

from __future__ import annotations

import multiprocessing
import uuid
from array import array
from collections import Counter, defaultdict, deque
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
from coffre.vault.digest import SCRATCH_BYTES

BATCH_ROWS = 5000
ACTION = "breach_scan"  # audit action; not a READ_ACTION, so outside mass-reading counts
FETCH_CHUNK = 900       # ids per IN query (SQLite's bound-parameter limit is 999)
_FIELDS = ("nir", "birth_name", "used_name", "birth_date", "phone", "email")
_LEVEL_RANK = {level: rank for rank, level in enumerate(CONFIDENCES)}

Progress = Callable[[int], None]


# --- the blind-index map ---------------------------------------------------------------

class IndexMap:
    """The patients' index columns in memory: index value -> row positions. Holds ints
    and ids only; the two name indexes share one map (a row's family name may be the
    patient's birth or used name, as the registry search tries both)."""

    def __init__(self, lab_id: int | None = None) -> None:
        from coffre.identity.models import Patient

        self.ids: list[uuid.UUID] = []
        self.labs: list[int] = []
        self.maps: dict[str, dict[int, list[int]]] = {k: {} for k in ("nir", "name_dob",
                                                                      "phone", "email")}
        scope = Patient.unscoped.filter(data_key__isnull=False)
        if lab_id is not None:
            scope = scope.filter(lab_id=lab_id)
        rows = scope.values_list("id", "lab_id", "bi_nir", "bi_birth_name_dob",
                                 "bi_used_name_dob", "bi_phone", "bi_email")
        nir, name, phone, email = (self.maps[k] for k in ("nir", "name_dob", "phone", "email"))
        for pos, (pid, lab, b_nir, b_birth, b_used, b_phone, b_email) in enumerate(
                rows.iterator(chunk_size=10_000)):
            self.ids.append(pid)
            self.labs.append(lab)
            nir.setdefault(b_nir, []).append(pos)
            name.setdefault(b_birth, []).append(pos)
            if b_used != b_birth:
                name.setdefault(b_used, []).append(pos)
            phone.setdefault(b_phone, []).append(pos)
            email.setdefault(b_email, []).append(pos)

    def get(self, index: str, value: int) -> list[int]:
        return self.maps[index].get(value, [])


# --- one row's keys ------------------------------------------------------------------------

@dataclass
class RowKeys:
    nir: str = ""
    names: tuple[str, ...] = ()
    birth_date: str = ""
    phone: str = ""
    email: str = ""
    candidates: dict[str, list[int]] = field(default_factory=dict)  # level -> positions
    hits: Counter = field(default_factory=Counter)


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


def _lookup(keys: RowKeys, index_map: IndexMap, compute: Callable[[str, str], int]) -> None:
    """Fill the row's candidates from the index map (no decryption)."""
    maps = index_map.maps
    found: dict[str, list[int]] = {}
    if keys.nir:
        found[NIR] = maps["nir"].get(compute("nir", keys.nir), _NONE)
    if keys.names:
        names = maps["name_dob"]
        lists = [names.get(compute("name_dob", f"{name}|{keys.birth_date}"), _NONE)
                 for name in keys.names]
        found[NAME_BIRTH] = lists[0] if len(lists) == 1 else list(
            dict.fromkeys(pos for positions in lists for pos in positions))
    phone = maps["phone"].get(compute("phone", keys.phone), _NONE) if keys.phone else _NONE
    email = maps["email"].get(compute("email", keys.email), _NONE) if keys.email else _NONE
    found[CONTACT] = list(dict.fromkeys(phone + email)) if phone and email else phone or email
    hits = keys.hits
    candidates = {}
    for level, positions in found.items():
        if positions:
            hits.update(positions)
            candidates[level] = positions
    keys.candidates = {level: (p if len(p) < 2 else sorted(p, key=hits.__getitem__,
                                                             reverse=True))
                       for level, p in candidates.items()}


_NONE: list[int] = []


# --- confirmation by decryption, memoised as keyed digests ---------------------------

# A confirmed candidate's record: one keyed digest per compared value, in this order.
_SLOTS = ("nir", "name", "other_name", "phone", "email")
DIGEST_BYTES = SCRATCH_BYTES  # 128 bits: a chance coincidence would need ~2**64 checks
RECORD_BYTES = DIGEST_BYTES * len(_SLOTS)
CACHE_PATIENTS = 1_000_000   # records kept per process: at most ~85 MB
_ABSENT = bytes(DIGEST_BYTES)  # a stored value that is empty: matches no row


class _Digests:
    """Per process and per scan: for each candidate position decrypted once, keyed
    digests (BLAKE2b in its keyed mode, a MAC, 128 bits, under a random key drawn for
    this cache and never written anywhere) of its normalised compared values, so that
    the next rows naming it compare digests instead of fetching, unwrapping and
    decrypting it again. No plaintext
    is kept. A direct-mapped table (position modulo the capacity), flat arrays: about 85
    bytes per position and at most CACHE_PATIENTS positions, evicting on collision."""

    __slots__ = ("capacity", "digest", "records", "tags")

    def __init__(self, patients: int) -> None:
        self.digest = ScratchDigest()
        self.capacity = max(1, min(patients, CACHE_PATIENTS))
        self.tags = array("i", [-1]) * self.capacity
        self.records = bytearray(RECORD_BYTES * self.capacity)

    def get(self, pos: int) -> bytes | None:
        slot = pos % self.capacity
        if self.tags[slot] != pos:
            return None
        start = slot * RECORD_BYTES
        return bytes(self.records[start:start + RECORD_BYTES])

    def put(self, pos: int, record: bytes) -> None:
        slot = pos % self.capacity
        self.tags[slot] = pos
        start = slot * RECORD_BYTES
        self.records[start:start + RECORD_BYTES] = record

    def record(self, values: dict[str, str]) -> bytes:
        """A decrypted candidate's record; the values are dropped by the caller."""
        def one(tag: str, value: str) -> bytes:
            return self.digest(tag + value) if value else _ABSENT

        birth = values["birth_date"]
        names = [cols.normalize_name(n) for n in (values["birth_name"], values["used_name"])
                 if n]
        names = [n for n in names if n] or [""]
        name, other = names[0], names[-1]
        return b"".join((
            one("i\x1f", values["nir"]),
            one(f"n\x1f{birth}\x1f", name if birth else ""),
            one(f"n\x1f{birth}\x1f", other if birth else ""),
            one("p\x1f", values["phone"]),
            one("e\x1f", values["email"].lower())))

    def of_row(self, keys: RowKeys, level: str) -> tuple[bytes | None, ...]:
        """The row's digests compared at ``level``, as ``record`` computes the stored
        side (None: no value). Computed when the level is first tried for the row."""
        if level == NIR:
            return (self.digest("i\x1f" + keys.nir),)
        if level == NAME_BIRTH:
            return tuple(self.digest(f"n\x1f{keys.birth_date}\x1f{name}")
                         for name in keys.names)
        return (self.digest("p\x1f" + keys.phone) if keys.phone else None,
                self.digest("e\x1f" + keys.email) if keys.email else None)


def _ad_prefixes() -> dict[str, bytes]:
    from coffre.identity.registry import TABLE
    from coffre.vault import context_prefix

    return {name: context_prefix(TABLE, name) for name in _FIELDS}


_AD: dict[str, bytes] = {}
_NIR, _NAME, _OTHER, _PHONE, _EMAIL = (i * DIGEST_BYTES for i in range(len(_SLOTS)))


class _Need(Exception):
    """A candidate not fetched yet: the row waits for the next round."""


def _confirms(record: bytes, wanted: tuple[bytes | None, ...], level: str) -> bool:
    """As ``coffre.identity.access._confirms`` (stored values are canonical), on the
    digests of the values: equal values, equal digests."""
    if level == NIR:
        return record[_NIR:_NIR + DIGEST_BYTES] == wanted[0]
    if level == NAME_BIRTH:
        stored = (record[_NAME:_NAME + DIGEST_BYTES], record[_OTHER:_OTHER + DIGEST_BYTES])
        return any(name in stored for name in wanted)
    phone, email = wanted
    return bool((phone is not None and record[_PHONE:_PHONE + DIGEST_BYTES] == phone)
                or (email is not None and record[_EMAIL:_EMAIL + DIGEST_BYTES] == email))


def _resolve(keys: RowKeys, row: dict[str, tuple], cache: _Digests,
             records: Callable[[int], bytes | None], final: bool) -> tuple[int, str] | None:
    """The row's (position, level), strongest level first; raises _Need when a
    candidate that could decide is not opened yet (``final``: skip it, it was erased).
    ``row``: the row's digests by level, filled on first use."""
    for level in CONFIDENCES:
        candidates = keys.candidates.get(level)
        if not candidates:
            continue
        wanted = row.get(level)
        if wanted is None:
            wanted = row[level] = cache.of_row(keys, level)
        for pos in candidates:
            record = records(pos)
            if record is None:
                if final:
                    continue
                raise _Need
            if _confirms(record, wanted, level):
                return pos, level
    return None


def _open_all(positions: Iterable[int], index_map: IndexMap, cache: _Digests,
              records: dict[int, bytes]) -> None:
    """Fetch the candidates neither in ``records`` nor in the cache, unwrap their data
    keys, decrypt their compared fields and keep only the digests. Plain SQL: building
    and converting an ORM query of 900 UUIDs costs more than the query itself, and a
    scan runs ~20 of them per 5,000 rows (the same table, columns and RLS policy)."""
    from django.db import connection

    from coffre.identity.models import Patient
    from coffre.identity.registry import patient_key

    wanted = []
    for pos in {p for p in positions if p not in records}:
        record = cache.get(pos)
        if record is None:
            wanted.append(pos)
        else:
            records[pos] = record
    if not wanted:
        return
    wanted.sort()
    meta, quote = Patient._meta, connection.ops.quote_name
    pk = meta.pk
    by_id = {index_map.ids[p]: p for p in wanted}
    ids = list(by_id)
    by_raw = {}  # the database's form of each id: no UUID built per fetched row
    columns = ", ".join(quote(meta.get_field(name).column)
                        for name in ("id", "lab", "data_key", *_FIELDS))
    with connection.cursor() as cursor:
        for start in range(0, len(ids), FETCH_CHUNK):
            chunk = ids[start:start + FETCH_CHUNK]
            params = [pk.get_db_prep_value(pid, connection) for pid in chunk]
            by_raw.update(zip(params, (by_id[pid] for pid in chunk), strict=True))
            cursor.execute(
                f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {quote(pk.column)} "  # noqa: S608 - names from the model, values bound
                f"IN ({', '.join(['%s'] * len(chunk))})", params)
            for raw_id, lab_id, wrapped, *blobs in cursor.fetchall():
                if wrapped is None:  # erased since the map was loaded
                    continue
                pos = by_raw.get(raw_id)
                if pos is None:
                    pos = by_id[pk.to_python(raw_id)]
                pid = index_map.ids[pos]
                key, row = patient_key(pid, lab_id, bytes(wrapped)), str(pid).encode()
                record = cache.record({name: key.open(blob, _AD[name] + row)
                                       for name, blob in zip(_FIELDS, blobs, strict=True)})
                records[pos] = record
                cache.put(pos, record)


def _match_batch(batch: list[RowKeys], index_map: IndexMap, cache: _Digests
                 ) -> list[tuple[int, str] | None]:
    """Two rounds: the best candidate of each row, then every candidate of the rows the
    best one did not settle at their strongest possible level. A candidate in the cache
    is compared from it; the others are fetched and decrypted in bulk, once a batch."""
    records: dict[int, bytes] = {}  # this batch's: the cache may evict within a batch
    firsts = []
    for keys in batch:
        if keys.hits:
            top = max(keys.hits.values())
            firsts.extend(p for p, n in keys.hits.items() if n == top)
    _open_all(firsts, index_map, cache, records)
    rows: list[dict[str, tuple]] = [{} for _ in batch]
    results: list[tuple[int, str] | None] = []
    pending: list[int] = []

    def known(pos: int) -> bytes | None:
        record = records.get(pos)
        if record is None:
            record = cache.get(pos)
            if record is not None:
                records[pos] = record
        return record

    for number, keys in enumerate(batch):
        try:
            results.append(_resolve(keys, rows[number], cache, known, final=False))
        except _Need:
            results.append(None)
            pending.append(number)
    _open_all((p for n in pending for p in batch[n].hits), index_map, cache, records)
    for number in pending:
        results[number] = _resolve(batch[number], rows[number], cache, records.get,
                                   final=True)
    return results


# --- the scan ---------------------------------------------------------------------------

@dataclass
class _Tally:
    rows_read: int = 0
    rows_matched: int = 0
    matches: dict[int, str] = field(default_factory=dict)  # position -> strongest level
    canary_rows: Counter = field(default_factory=Counter)  # patient id -> rows
    columns: list = field(default_factory=list)
    categories: set[str] = field(default_factory=set)

    def add(self, result: tuple[int, str] | None, index_map: IndexMap,
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


class _Confirmer:
    """Confirms batches here, or in ``helpers`` forked processes while this one reads
    and hashes on (the CLI on a large file: reading and confirming each take about half
    of a scan, so one helper nearly halves it on two cores). Results come back in order.
    """

    def __init__(self, index_map: IndexMap, helpers: int) -> None:
        from django.db import connection

        self.index_map, self.helpers, self.pool = index_map, helpers, None
        self.cache: _Digests | None = None  # this process's, when it confirms
        self.inflight: deque = deque()
        if helpers > 0 and not connection.in_atomic_block:
            from coffre.serving.server import release_connections

            global _FORKED_MAP
            _FORKED_MAP = index_map  # inherited by the forked helpers, never pickled
            # Each helper opens its own connection: a connection pool copied into the
            # children would hand its one socket to all of them at once (two helpers
            # then read each other's answers: "the last operation didn't produce
            # records", or a hang).
            release_connections()
            self.pool = multiprocessing.get_context("fork").Pool(helpers)

    def submit(self, batch: list) -> Iterator[tuple[list, list]]:
        keys = [k for k, _, _ in batch]
        if self.pool is None:
            if self.cache is None:
                self.cache = _Digests(len(self.index_map.ids))
            yield batch, _confirm_batch(keys, self.index_map, self.cache)
            return
        self.inflight.append((batch, self.pool.apply_async(_forked_match, (keys,))))
        while len(self.inflight) > self.helpers + 1:
            done, pending = self.inflight.popleft()
            yield done, pending.get()

    def drain(self) -> Iterator[tuple[list, list]]:
        while self.inflight:
            done, pending = self.inflight.popleft()
            yield done, pending.get()

    def close(self) -> None:
        global _FORKED_MAP
        self.cache = None
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            _FORKED_MAP = None


_FORKED_MAP: IndexMap | None = None
_FORKED_CACHE: _Digests | None = None  # set in a helper only, which ends with its scan


def _forked_match(keys: list[RowKeys]) -> list[tuple[int, str] | None]:
    global _FORKED_CACHE
    assert _FORKED_MAP is not None
    if _FORKED_CACHE is None:
        _FORKED_CACHE = _Digests(len(_FORKED_MAP.ids))
    return _confirm_batch(keys, _FORKED_MAP, _FORKED_CACHE)


def _confirm_batch(keys: list[RowKeys], index_map: IndexMap, cache: _Digests
                   ) -> list[tuple[int, str] | None]:
    """Hash and look up each row's values, then confirm the candidates. Both run where
    the batch is confirmed (a helper process when there are helpers: hashing is a
    fifth of a scan, and the reader is the busiest process otherwise)."""
    from coffre.keyring import services as keyring

    compute = keyring.indexer().compute
    for row_keys in keys:
        _lookup(row_keys, index_map, compute)
    return _match_batch(keys, index_map, cache)


def scan_files(paths: Iterable[Path | str], *, progress: Progress | None = None,
               lab_id: int | None = None, actor: Actor | None = None,
               helpers: int = 0) -> ScanReport:
    """Scan the files and return the report; record the reads in the audit log.

    ``lab_id`` restricts matching to one lab (``--lab``); ``actor`` is who scans (the
    CLI's operating-system user by default; a web actor restricts to its lab);
    ``helpers``: processes forked to confirm candidates (the CLI, outside any
    transaction). Raises BreachScanError for a file that cannot be read, before
    anything is written.
    """
    from coffre.audit import canaries
    from coffre.keyring import services as keyring

    paths = [Path(p) for p in paths]
    for path in paths:
        if not path.is_file():
            raise BreachScanError(f"{path.name}: no such file")
    if actor is not None and actor.channel != "cli":
        from coffre.audit import detection

        detection.ensure_not_locked(actor)
        lab_id = actor.lab_id
    if not _AD:
        _AD.update(_ad_prefixes())
    keyring.indexer()  # loaded before any helper is forked, which inherits it
    index_map = IndexMap(lab_id)
    canary_ids = frozenset(uuid.UUID(r["patient_id"]) for r in canaries.planted(lab_id))
    attributor = Attributor()
    tally = _Tally()
    files = []
    confirmer = _Confirmer(index_map, helpers)

    def finish(done: Iterable[tuple[list, list]]) -> None:
        for batch, results in done:
            _tally_batch(batch, results, index_map, tally, canary_ids, attributor)
            if progress:
                progress(len(batch))

    try:
        for path in paths:
            info = _file_info(path)
            opened = open_file(path)
            before = tally.rows_read
            batch: list[tuple[RowKeys, list[str], Plan]] = []
            seen: set[int] = set()
            for plan, row in _tables(opened.rows):
                if id(plan) not in seen:
                    seen.add(id(plan))
                    tally.columns.extend(c.guess(plan.table) for c in plan.columns)
                    tally.categories.update(c.category for c in plan.columns)
                batch.append((plan.keys(row), row, plan))
                if len(batch) >= BATCH_ROWS:
                    finish(confirmer.submit(batch))
                    batch = []
            if batch:
                finish(confirmer.submit(batch))
            finish(confirmer.drain())
            files.append({**info, "format": opened.format, "rows": tally.rows_read - before})
    finally:
        confirmer.close()
        # The memo of names and dates holds the file's (and decrypted) values: drop them
        # with the scan rather than keep them in a long-lived web worker.
        cols.normalize_name.cache_clear()
        cols.date_value.cache_clear()
    report = ScanReport(
        files=files, rows_read=tally.rows_read, rows_matched=tally.rows_matched,
        columns=tally.columns, categories=[c for c in CATEGORIES if c in tally.categories],
        labs=_lab_impacts(tally, index_map),
        evidence=attributor.evidence(tally.canary_rows),
        matches={index_map.ids[pos]: level for pos, level in tally.matches.items()})
    _audit(report, tally, index_map, actor, files)
    return report


def _tally_batch(batch: list[tuple[RowKeys, list[str], Plan]], results: list,
                 index_map: IndexMap, tally: _Tally, canary_ids: frozenset[uuid.UUID],
                 attributor: Attributor) -> None:
    for (_keys, row, plan), result in zip(batch, results, strict=True):
        tally.add(result, index_map, canary_ids)
        if result is None:
            attributor.unmatched(row, plan)


def _lab_impacts(tally: _Tally, index_map: IndexMap) -> list[LabImpact]:
    from coffre.labs.models import Lab

    per_lab: dict[int, Counter] = defaultdict(Counter)
    for pos, level in tally.matches.items():
        per_lab[index_map.labs[pos]][level] += 1
    labs = {lab.id: lab for lab in Lab.objects.filter(id__in=list(per_lab))}
    return [LabImpact(lab_id=lab_id, finess=labs[lab_id].finess, name=labs[lab_id].name,
                      patients=sum(counts.values()),
                      by_confidence={level: counts.get(level, 0) for level in CONFIDENCES})
            for lab_id, counts in sorted(per_lab.items())]


def _audit(report: ScanReport, tally: _Tally, index_map: IndexMap, actor: Actor | None,
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
