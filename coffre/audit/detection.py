"""Mass-reading detection: distinct patients read per account over sliding windows.

Above a soft threshold the lab's data-protection officers are alerted (alerts page and
email); above a hard threshold the account is locked (its web sessions stop working at
the next request) until a manager unlocks it. Thresholds are per lab (AuditSettings),
defaulting by role; the soft ones rise with the account's usual level (twice its busiest
hour of the last 30 days), the hard ones never do: a busy account that is stolen must
still be stopped.

An actor may also count in a shared budget (``Actor.shared``: the API clients one person
registered in one lab), checked, alerted and locked the same way under its own name, so
that ten clients do not read ten times as much as one.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from coffre.audit import alerts, log
from coffre.audit.models import AccessEvent, AccountLock, AlertKind, AuditSettings
from coffre.tenancy.access import one_row
from coffre.tenancy.actors import Actor
from coffre.tenancy.capabilities import require

Budget = tuple[str, frozenset[str]]  # (the name locks and alerts use, the persons counted)

READS = tuple(log.READ_ACTIONS)
WINDOWS = (("10_minutes", dt.timedelta(minutes=10)), ("hour", dt.timedelta(hours=1)))
# Alert texts are stored in the installation's language (French by default); they hold
# counts only.
WINDOW_LABELS = {"10_minutes": _("10 minutes"), "hour": _("une heure")}
DEFAULTS = {"soft_per_10_minutes": 60, "hard_per_10_minutes": 150,
            "soft_per_hour": 200, "hard_per_hour": 400, "export_approval_patients": 100}
# Roles that read many patients in normal work get more room.
ROLE_FACTOR = {"biologist": 1.5, "technician": 1.5, "dpo": 0.5, "platform_admin": 0.25}
# Counting in the database on every read would cost more than the read: each process
# asks the database every CHECK_EVERY reads of an account (the count covers every
# process), and at once when this process alone has seen the account reach a hard
# threshold. A reader is thus stopped at most CHECK_EVERY reads per server process past
# a threshold, over every window.
CHECK_EVERY = 10
LOCKS_TTL = 5.0  # seconds a process trusts its list of locked accounts
SETTINGS_TTL = 60.0
_usual_cache: dict[str, tuple[float, int]] = {}
_reads_since_check: dict[str, int] = {}
_recent: dict[str, dict[object, float]] = {}
_settings_cache: dict[int | None, tuple[float, AuditSettings | None]] = {}
_locked: tuple[float, frozenset[str]] | None = None


def clear_caches() -> None:
    global _locked
    for cache in (_usual_cache, _reads_since_check, _recent, _settings_cache):
        cache.clear()
    _locked = None


class AccountLocked(PermissionError):
    """The account is locked for mass reading; the message carries no patient data."""


@dataclass(frozen=True)
class Thresholds:
    soft: dict[str, int]
    hard: dict[str, int]


def _lab_settings(lab_id: int | None) -> AuditSettings | None:
    cached = _settings_cache.get(lab_id)
    if cached is None or time.monotonic() - cached[0] > SETTINGS_TTL:
        cached = (time.monotonic(), AuditSettings.objects.filter(lab_id=lab_id).first())
        _settings_cache[lab_id] = cached
    return cached[1]


def _configured(actor: Actor, name: str) -> int:
    own = getattr(_lab_settings(actor.lab_id), name, None)
    return own if own is not None else max(1, int(DEFAULTS[name] * ROLE_FACTOR.get(actor.role,
                                                                                1.0)))


def budgets(actor: Actor) -> list[Budget]:
    """The budgets the actor's reads count in: the person's own, and the shared one."""
    found = [(actor.person, frozenset({actor.person}))]
    if actor.shared is not None:
        found.append((actor.shared.name, actor.shared.members | {actor.person}))
    return found


def thresholds(actor: Actor, budget: Budget | None = None) -> Thresholds:
    name, people = budget or (actor.person, frozenset({actor.person}))
    hard = {w: _configured(actor, f"hard_per_{w}") for w, _ in WINDOWS}
    usual = usual_level(name, people)
    soft = {w: min(hard[w] - 1, max(_configured(actor, f"soft_per_{w}"), 2 * usual))
            for w, _ in WINDOWS}
    return Thresholds(soft, hard)


def usual_level(person: str, people: frozenset[str] | None = None) -> int:
    """The most distinct patients the person (or the ``people`` of a shared budget) read
    in one hour over the last 30 days (the current hour excluded); computed at most once
    an hour per process."""
    cached = _usual_cache.get(person)
    if cached and time.monotonic() - cached[0] < 3600:
        return cached[1]
    now = timezone.now()
    rows = (AccessEvent.objects
            .filter(person__in=people or [person], action__in=READS,
                    patient_id__isnull=False,
                    at__gte=now - dt.timedelta(days=30), at__lt=now - dt.timedelta(hours=1))
            .values_list("at", "patient_id"))
    per_hour: dict[tuple, set] = {}
    for at, patient_id in rows.iterator(chunk_size=5000):
        per_hour.setdefault((at.date(), at.hour), set()).add(patient_id)
    level = max((len(ids) for ids in per_hour.values()), default=0)
    _usual_cache[person] = (time.monotonic(), level)
    return level


def distinct_read(person: str | frozenset[str]) -> dict[str, int]:
    """Distinct patients read by the person (or these persons together) in each window
    (one indexed query)."""
    now = timezone.now()
    people = [person] if isinstance(person, str) else sorted(person)
    recent = AccessEvent.objects.filter(person__in=people, action__in=READS,
                                        patient_id__isnull=False,
                                        at__gte=now - max(span for _, span in WINDOWS))
    counts = recent.aggregate(**{
        name: Count("patient_id", distinct=True, filter=Q(at__gte=now - span))
        for name, span in WINDOWS})
    return {name: counts[name] for name, _ in WINDOWS}


def _locked_people() -> frozenset[str]:
    global _locked
    if _locked is None or time.monotonic() - _locked[0] > LOCKS_TTL:
        people = AccountLock.objects.filter(unlocked_at__isnull=True).values_list(
            "person", flat=True)
        _locked = (time.monotonic(), frozenset(people))
    return _locked[1]


def ensure_not_locked(actor: Actor) -> None:
    """Refuse a locked account, or an actor whose shared budget is locked. Web sessions
    of a locked user end at once (inactive user); other channels within LOCKS_TTL
    seconds, at once in the locking process."""
    locked = _locked_people()
    if actor.person in locked or (actor.shared is not None and actor.shared.name in locked):
        raise AccountLocked("this account is locked after unusual reading; a lab manager "
                            "must unlock it")


def _local_count(name: str, patient_ids: list) -> int:
    """Distinct patients this process saw the budget read in the last 10 minutes."""
    now = time.monotonic()
    seen = _recent.setdefault(name, {})
    for patient_id in patient_ids:
        seen[patient_id] = now
    recent = [pid for pid, at in seen.items() if now - at <= 600]
    if len(recent) < len(seen) // 2:
        _recent[name] = {pid: seen[pid] for pid in recent}
    return len(recent)


def _needs_count(actor: Actor, name: str, patient_ids: list) -> bool:
    """Whether to count the budget in the database now: every CHECK_EVERY reads, or at
    once when this process alone saw it reach the lowest hard threshold."""
    local = _local_count(name, patient_ids)
    hard = min(_configured(actor, f"hard_per_{w}") for w, _ in WINDOWS)
    done = _reads_since_check.get(name, 0) + 1
    if done < CHECK_EVERY and local < hard:
        _reads_since_check[name] = done
        return False
    _reads_since_check[name] = 0
    return True


def observe(actor: Actor, patient_ids: list) -> None:
    """Called after each logged read: alert, or lock and stop this request."""
    for budget in budgets(actor):
        _observe(actor, budget, patient_ids)


def _observe(actor: Actor, budget: Budget, patient_ids: list) -> None:
    name, people = budget
    if not _needs_count(actor, name, patient_ids):
        return
    counts = distinct_read(people)
    limits = thresholds(actor, budget)
    over_hard = [w for w, n in counts.items() if n >= limits.hard[w]]
    if over_hard:
        window = over_hard[0]
        lock(actor, _("%(count)s patients distincts lus en %(window)s (limite %(hard)s)") % {
            "count": counts[window], "window": WINDOW_LABELS[window],
            "hard": limits.hard[window]}, person=name)
        raise AccountLocked("this account has been locked after reading too many patients; "
                            "the data-protection officer has been alerted")
    over_soft = [w for w, n in counts.items() if n >= limits.soft[w]]
    if over_soft:
        window = over_soft[0]
        alerts.raise_once(actor.lab_id, AlertKind.MASS_READING, name,
                          _("%(count)s patients distincts lus en %(window)s (alerte à "
                            "%(soft)s, verrouillage à %(hard)s)") % {
                              "count": counts[window], "window": WINDOW_LABELS[window],
                              "soft": limits.soft[window], "hard": limits.hard[window]},
                          within=dt.timedelta(hours=1))


def lock(actor: Actor, reason: str, *, person: str = "") -> None:
    """Lock the actor's account, or ``person`` (the name of its shared budget). The lock
    records who answers for the actor (the registrant of an API client): they may not
    lift it."""
    global _locked
    person = person or actor.person
    answerable = actor.shared.answerable if actor.shared is not None else ""
    AccountLock.objects.create(person=person, lab_id=actor.lab_id, reason=reason,
                               answerable=answerable)
    _locked = None
    if actor.channel == "web" and person == actor.person:
        # Inactive users are refused by Django's auth backend on their next request,
        # which ends every session of the account at once.
        get_user_model().objects.filter(username=actor.person).update(is_active=False)
    alerts.raise_alert(actor.lab_id, AlertKind.ACCOUNT_LOCKED, person, reason)


def open_locks(lab_id: int) -> list[AccountLock]:
    """The locks a manager of the lab may lift, oldest first."""
    return list(AccountLock.objects.filter(lab_id=lab_id, unlocked_at__isnull=True)
                .order_by("locked_at"))


def open_locks_of(lab_id: int, persons: list[str]) -> dict[str, AccountLock]:
    """The lab's open locks of these persons, by person."""
    return {lock.person: lock for lock in AccountLock.objects.filter(
        lab_id=lab_id, unlocked_at__isnull=True, person__in=persons)}


def access_lock(actor: Actor, lock_id: int | str, *, open_only: bool = False
                ) -> AccountLock:
    """A lock of the actor's lab (not yet lifted with ``open_only``); RowNotFound else."""
    rows = AccountLock.objects.filter(lab_id=actor.lab_id)
    if open_only:
        rows = rows.filter(unlocked_at__isnull=True)
    return one_row(rows, lock_id, "lock")


class SelfUnlock(PermissionError):
    """Nobody lifts their own lock, nor that of the API clients they registered."""


def unlock(person: str, by: Actor, lab_id: int | None = None) -> int:
    """Lift the person's open locks (of one lab when given); returns how many. The web
    account is reactivated only when no lock of the person remains. Recorded in the log."""
    global _locked
    locks = AccountLock.objects.filter(person=person, unlocked_at__isnull=True)
    if lab_id is not None:
        locks = locks.filter(lab_id=lab_id)
    if by.person == person or locks.filter(answerable=by.person).exists():
        raise SelfUnlock("an account cannot be unlocked by the person it belongs to or "
                         "who answers for it")
    require(by, "lock.lift")
    lifted = locks.update(unlocked_by=by.person, unlocked_at=timezone.now())
    _locked = None
    if lifted:
        log.record(by, "unlock", [], kind="account")
        if not AccountLock.objects.filter(person=person, unlocked_at__isnull=True).exists():
            # A manager's deactivation outlives the lock (accounts.models.Deactivation).
            get_user_model().objects.filter(username=person, deactivation__isnull=True
                                            ).update(is_active=True)
    return lifted
