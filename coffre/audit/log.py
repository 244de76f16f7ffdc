"""Recording access to patient data. The one place where reads are logged.

Entries carry ids, never readable values: the patient by internal id, the action, the
kind of data, the outcome; a purpose (break-the-glass reason) is sealed. Every entry is
chained (coffre.audit.chain); reads then feed the observers registered with
``on_read``: the canary check and the mass-reading detection (coffre.audit.apps), which
raise alerts and so sit above this module.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

from django.utils import timezone

from coffre.audit import chain
from coffre.tenancy.actors import Actor
from coffre.vault import context

READ_ACTIONS = frozenset({"read", "search", "export", "print"})

ReadObserver = Callable[[Actor, list[uuid.UUID]], None]
_READ_OBSERVERS: list[ReadObserver] = []


def on_read(observer: ReadObserver) -> None:
    """``observer(actor, patient ids)`` after each read is chained, in the order
    registered."""
    if observer not in _READ_OBSERVERS:
        _READ_OBSERVERS.append(observer)


def seal_text(text: str, where: str) -> bytes:
    """Free text kept in the audit tables (a reason, a comment) is sealed."""
    return chain.audit_key().seal(text, context("audit", where)) if text else b""


def open_text(blob: bytes, where: str) -> str:
    return chain.audit_key().open(bytes(blob), context("audit", where)) if blob else ""


def record(actor: Actor, action: str, patient_ids: Iterable[uuid.UUID | None], *,
           kind: str = "identity", outcome: str = "ok", purpose: str = "") -> None:
    """One entry per patient touched (one with no patient for an empty search)."""
    ids = list(patient_ids) or [None]
    entry = {"at": timezone.now(), "person": actor.person, "role": actor.role,
             "channel": actor.channel, "lab_id": actor.lab_id, "action": action,
             "kind": kind, "address": actor.address, "outcome": outcome,
             "purpose": seal_text(purpose, "purpose")}
    chain.append([{**entry, "patient_id": pid} for pid in ids])
    read = [pid for pid in ids if pid is not None]
    if action in READ_ACTIONS and read and outcome in {"ok", "break_glass"}:
        for observe in _READ_OBSERVERS:
            observe(actor, read)
