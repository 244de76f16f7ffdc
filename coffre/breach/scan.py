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

import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from coffre.breach import columns as cols
from coffre.breach.attribution import Attributor
from coffre.breach.columns import Plan, RowKeys
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
from coffre.identity.digests import (
    PatientDigests,
    email_text,
    name_text,
    nir_text,
    phone_text,
)
from coffre.tenancy.actors import Actor
from coffre.vault import file_sha256

BATCH_ROWS = 5000
ACTION = "breach_scan"  # audit action; not a READ_ACTION, so outside mass-reading counts
_LEVEL_RANK = {level: rank for rank, level in enumerate(CONFIDENCES)}

Progress = Callable[[int], None]


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
                keys = plan.keys(row)
                result = match_row(keys, patients)
                tally.add(result, patients, canary_ids)
                if result is None:
                    attributor.unmatched(row, plan, keys)
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
    from coffre.tenancy.models import Lab

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
    from coffre.tenancy.actors import cli_actor

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
