"""Short-lived break-the-glass grants kept in a web session.

A break-the-glass search with a written reason grants its results for 15 minutes; each
opening of such a record calls ``access.break_glass_access`` again with that reason, so
every view is logged and alerted. The reason is sealed in the session (sessions live in
the database, and a reason can describe the patient's situation).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterable, MutableMapping

from coffre.audit.log import open_text, seal_text
from coffre.vault import DecryptionError

SESSION_KEY = "break_glass_grants"
GRANT_SECONDS = 15 * 60
_WHERE = "break-glass-grant"


def grant(session: MutableMapping, lab_id: int, patient_ids: Iterable[uuid.UUID],
          reason: str, now: float | None = None) -> None:
    """Allow the acting lab to reopen these patients with this reason for a while."""
    now = time.time() if now is None else now
    grants = {pid: g for pid, g in session.get(SESSION_KEY, {}).items() if g[0] > now}
    sealed = base64.b64encode(seal_text(reason, _WHERE)).decode()
    for patient_id in patient_ids:
        grants[str(patient_id)] = [now + GRANT_SECONDS, lab_id, sealed]
    session[SESSION_KEY] = grants


def granted_reason(session: MutableMapping, lab_id: int, patient_id: uuid.UUID,
                   now: float | None = None) -> str | None:
    """The reason of a live grant for this patient and acting lab, or None."""
    now = time.time() if now is None else now
    found = session.get(SESSION_KEY, {}).get(str(patient_id))
    if not found or found[0] <= now or found[1] != lab_id:
        return None
    try:
        return open_text(base64.b64decode(found[2]), _WHERE)
    except DecryptionError:  # sealed under an audit key version retired since
        return None
