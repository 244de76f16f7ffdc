"""Attribute a leaked file: canary patients name the lab (and a date), export watermark
rows name the export. Each piece of evidence says what it supports, and no more.

Canaries (coffre.audit.canaries) are synthetic patients planted in a lab: a file holding
one derives from that lab's data as it was after the planting, by whatever way (a
database copy, a backup, an export, a screen); it does not say who took it. Watermark
rows (coffre.exports.services) are synthetic rows mixed into one export's file only:
a file holding one derives from that export's file.

Backups carry no canaries of their own: a canary found in a file names the lab, not
whether the copy came from the live database or one of its backups.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter, defaultdict

from coffre.breach.columns import Plan, RowKeys
from coffre.breach.report import Evidence

# Recognised kind -> the registry column a watermark fingerprint was computed for.
# Only the near-unique ones: a given name or an address alone proves nothing, and
# hashing every cell of every unmatched row would cost more than matching it.
_WATERMARK_COLUMNS = {"nir": ("nir",), "phone": ("phone",), "email": ("email",)}
# What identifies a watermark row on its own: its NIR, e-mail, name with birth date
# (a decoy's own, no patient of its lab shares them), or the whole row. Its phone keeps
# a real number's prefix, so it only confirms another.
_UNIQUE = frozenset({"nir", "email", "name_dob", "row"})
PENDING_ROWS = 2000
NO_EVIDENCE = ("no canary or watermark: the source cannot be attributed from this file")


def _cell_variants(kind: str, text: str) -> set[str]:
    """The cell as found and as the export wrote it (canonical registry values)."""
    from coffre.breach import columns as cols

    variants = {" ".join(text.split())}
    canonical = {"nir": cols.nir_value, "phone": cols.phone_value}.get(kind)
    if canonical is not None and (value := canonical(text)):
        variants.add(value)
    if kind == "email":
        from coffre.identity import french

        with contextlib.suppress(french.InvalidValue):
            variants.add(french.clean_email(text))
    return variants


class Attributor:
    """Collects the fingerprints of the rows no patient matched (watermark rows are
    decoys, never patients) and looks them up in bulk."""

    def __init__(self) -> None:
        from coffre.exports.services import watermark_keys

        self._keys = watermark_keys()
        self._pending: list[dict[str, str]] = []  # per row: fingerprint -> column
        self.watermark_rows: Counter[int] = Counter()  # export id -> rows
        self.strong: Counter[int] = Counter()  # export id -> rows matched by a unique cell

    def unmatched(self, row: list[str], plan: Plan, keys: RowKeys) -> None:
        """A row no patient matched: its fingerprints under each watermark key."""
        for key in self._keys:
            self._prints(key, row, plan, keys)

    def _prints(self, key: bytes, row: list[str], plan: Plan, keys: RowKeys) -> None:
        from coffre.exports.services import (
            cell_fingerprint,
            name_dob_fingerprint,
            row_fingerprint,
        )
        from coffre.identity.registry import CSV_COLUMNS

        prints: dict[str, str] = {}
        for column in plan.columns:
            names = _WATERMARK_COLUMNS.get(column.kind)
            text = row[column.index] if column.index < len(row) else ""
            if not names or not text:
                continue
            for name in names:
                for value in _cell_variants(column.kind, text):
                    prints[cell_fingerprint(key, name, value)] = name
        for name in keys.names:  # already normalised, with the ISO birth date
            prints[name_dob_fingerprint(key, name, keys.birth_date)] = "name_dob"
        header = [h.strip() for h in plan.header]
        if header and all(h in CSV_COLUMNS for h in header):
            prints[row_fingerprint(key, dict(zip(header, row, strict=False)))] = "row"
        if prints:
            self._pending.append(prints)
        if len(self._pending) >= PENDING_ROWS:
            self._flush()

    def _flush(self) -> None:
        from coffre.exports.models import ExportWatermark

        wanted = sorted({fp for prints in self._pending for fp in prints})
        owner: dict[str, int] = {}
        for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
            owner.update(ExportWatermark.objects.filter(
                fingerprint__in=wanted[start:start + 500]).values_list("fingerprint",
                                                                      "export_id"))
        for prints in self._pending:
            per_export: dict[int, set[str]] = defaultdict(set)
            for fp, column in prints.items():
                if fp in owner:
                    per_export[owner[fp]].add(column)
            for export_id, columns in per_export.items():
                if columns & _UNIQUE:
                    self.watermark_rows[export_id] += 1
                    if "row" in columns or len(columns & _UNIQUE) >= 2:
                        self.strong[export_id] += 1
        self._pending.clear()

    def evidence(self, canary_rows: Counter[uuid.UUID]) -> list[Evidence]:
        self._flush()
        return _canary_evidence(canary_rows) + self._watermark_evidence()

    def _watermark_evidence(self) -> list[Evidence]:
        from coffre.exports.models import ExportRequest

        found = []
        exports = ExportRequest.objects.select_related("lab").in_bulk(list(self.watermark_rows))
        for export_id, rows in sorted(self.watermark_rows.items()):
            export = exports.get(export_id)
            if export is None:
                continue
            conclusive = rows >= 2 or self.strong[export_id] >= 1
            found.append(Evidence(
                kind="watermark", lab_id=export.lab_id, rows=rows,
                strength="conclusive" if conclusive else "strong",
                statement=(
                    f"{rows} row(s) of this file are watermark rows of export #{export.pk} "
                    f"of lab {export.lab.finess}: synthetic rows that were written into "
                    f"that export's file only. The file derives from that export (requested "
                    f"by {export.requested_by}, approved by {export.approved_by or '-'}, "
                    f"produced {_day(export.produced_at)}; its recipient is on its record). "
                    f"It does not show who disclosed it: the recipient, or anyone who had "
                    f"the file after it was fetched."
                    + ("" if conclusive else " One row matched: strong, not conclusive.")),
                detail={"export_id": export.pk, "finess": export.lab.finess,
                        "requested_by": export.requested_by,
                        "requested_at": _iso(export.requested_at),
                        "approved_by": export.approved_by or None,
                        "approved_role": export.approved_role or None,
                        "approved_os_user": export.approved_os_user or None,
                        "approved_at": _iso(export.approved_at),
                        "produced_at": _iso(export.produced_at),
                        "downloaded_at": _iso(export.downloaded_at),
                        # Not its purpose nor its recipient: they are sealed, and
                        # this detail is kept in clear in the breach record.
                        "fields": export.field_list(),
                        "period": [export.period_from.isoformat(),
                                   export.period_to.isoformat()]}))
        return found


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def _day(value) -> str:
    return value.date().isoformat() if value else "-"


def _canary_evidence(canary_rows: Counter[uuid.UUID]) -> list[Evidence]:
    """One piece of evidence per lab whose canaries are in the file."""
    from coffre.audit import canaries
    from coffre.tenancy.models import Lab

    if not canary_rows:
        return []
    records = {uuid.UUID(r["patient_id"]): r for r in canaries.planted()}
    per_lab: dict[int, list[tuple[uuid.UUID, str]]] = defaultdict(list)
    for pid in canary_rows:
        record = records.get(pid)
        if record is not None:
            per_lab[record["lab_id"]].append((pid, record["planted_at"]))
    labs = Lab.objects.in_bulk(list(per_lab))
    found = []
    for lab_id, planted in sorted(per_lab.items()):
        lab = labs[lab_id]
        latest = max(at for _, at in planted)
        rows = sum(canary_rows[pid] for pid, _ in planted)
        found.append(Evidence(
            kind="canary", lab_id=lab_id, rows=rows, strength="conclusive",
            statement=(
                f"{rows} row(s) of this file are {len(planted)} canary patient(s) of lab "
                f"{lab.finess} ({lab.name}), planted on {latest[:10]} at the latest: "
                f"they exist only in that lab's data. The file derives from a copy of "
                f"that lab's data made after {latest[:10]} (from the database, a backup "
                f"or an export: canaries do not tell which). It does not show who made "
                f"the copy."),
            detail={"finess": lab.finess, "canaries": len(planted),
                    "planted_from": min(at for _, at in planted), "planted_to": latest}))
    return found
