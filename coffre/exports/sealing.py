"""The sealed free text of an export request: its purpose and its recipient, which people
fill with names and diagnoses ("dossier de Mme X, suivi VIH", "Dr Y pour M. Z").

Sealed with the installation key "export-text" (wrapped by the master key, re-wrapped by
`coffre keys rotate --master`), bound to the table, the column and the request's id, and
padded so a short text and a long one look alike up to the minimum: a copy of the
database reads neither, and a value moved to another request does not open. Kept apart
from the services so the migration that sealed the clear columns uses the same code.
"""

from __future__ import annotations

from coffre.vault import context

KEY_PURPOSE = "export-text"
TABLE = "exports_exportrequest"
# The sealed columns and their minimum padded size (bytes).
SEALED = {"purpose": 256, "recipient": 128}


def _key():
    from coffre.keyring import services as keyring

    return keyring.installation_key(KEY_PURPOSE)


def ensure_key() -> None:
    """Create the key now if needed, outside any transaction: a key created inside one
    that rolls back would stay cached in this process while its row is gone."""
    _key()


def seal(column: str, export_id: int, text: str) -> bytes:
    return _key().seal(text, context(TABLE, column, export_id), SEALED[column])


def open_text(column: str, export_id: int, blob: bytes) -> str:
    return _key().open(bytes(blob), context(TABLE, column, export_id)) if bytes(blob) else ""


def register_sealed() -> None:
    """The sealed texts, for `coffre keys rotate|retire --installation` (the watermark
    fingerprints that need a version of the "exports" key: coffre.exports.apps)."""
    from coffre.keyring.installation import SealedColumn, register

    for column, min_size in SEALED.items():
        register(SealedColumn(KEY_PURPOSE, "exports.ExportRequest", column,
                              lambda row, column=column: context(TABLE, column, row.pk),
                              min_size=min_size))
