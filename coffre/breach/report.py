"""What a scan of a leaked file found: the contract between the scanner and the
breach record (coffre.breach.scan fills it, coffre.breach.notifications reads it).

It holds counts, column guesses, internal patient ids and evidence, never a value read
from the file or the database: it may be stored and shown as is.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field

# How a row was tied to a patient, strongest first.
NIR = "nir"                # a NIR with a valid key equal to the patient's
NAME_BIRTH = "name_birth"  # family name (birth or used) and birth date
CONTACT = "contact"        # phone or email alone
CONFIDENCES = (NIR, NAME_BIRTH, CONTACT)

# Categories of data a file may carry (GDPR art. 33 asks for them).
CATEGORIES = ("identity", "nir", "contact", "address", "birth_date", "health",
              "credentials", "insurance", "prescriber", "other")


@dataclass(frozen=True)
class ColumnGuess:
    file: str          # the file's name, not its path
    column: str        # the header as found, or "#3" when there is none
    kind: str          # nir, email, phone, birth_date, family_name, given_name, ...
    category: str      # one of CATEGORIES
    share: float       # fraction of non-empty cells that look like `kind`


@dataclass(frozen=True)
class LabImpact:
    lab_id: int
    finess: str
    name: str
    patients: int                      # distinct patients matched
    by_confidence: dict[str, int]      # CONFIDENCES -> distinct patients at that level


@dataclass(frozen=True)
class Evidence:
    kind: str          # "canary" or "watermark"
    lab_id: int | None
    rows: int          # rows of the file that carry it
    strength: str      # "conclusive", "strong" or "weak", explained in `statement`
    statement: str     # what the evidence supports, and no more
    detail: dict = field(default_factory=dict)  # export id, requester, approver, dates...


@dataclass
class ScanReport:
    files: list[dict]                  # {"name", "sha256", "bytes", "format", "rows"}
    rows_read: int
    rows_matched: int
    columns: list[ColumnGuess]
    categories: list[str]              # subset of CATEGORIES, in that order
    labs: list[LabImpact]
    evidence: list[Evidence]
    # internal patient id -> strongest confidence; never shown with a value
    matches: dict[uuid.UUID, str] = field(default_factory=dict)

    def patients_affected(self) -> int:
        return len(self.matches)

    def to_dict(self) -> dict:
        """JSON-ready, for storage in the breach record and `coffre breach scan --json`."""
        data = asdict(self)
        data["matches"] = {str(pid): level for pid, level in self.matches.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ScanReport:
        return cls(files=list(data["files"]), rows_read=data["rows_read"],
                   rows_matched=data["rows_matched"],
                   columns=[ColumnGuess(**c) for c in data["columns"]],
                   categories=list(data["categories"]),
                   labs=[LabImpact(**lab) for lab in data["labs"]],
                   evidence=[Evidence(**e) for e in data["evidence"]],
                   matches={uuid.UUID(pid): level
                            for pid, level in data.get("matches", {}).items()})
