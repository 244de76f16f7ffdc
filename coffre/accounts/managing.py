"""A lab manager's work on the staff accounts of their lab.

Every function takes the acting :class:`~coffre.tenancy.actors.Actor` and works inside
``actor.lab_id`` only: a membership of another lab is "not found"
(:class:`NoSuchMembership`), never "forbidden", so its existence is not confirmed. Only a
lab manager may act (:class:`NotAllowed`), never on their own account
(:class:`OwnAccount`) nor on a platform administrator's. Every change is recorded in the
access log (``kind="account"``), with the account concerned in the sealed purpose and
never a password.

A person may work for several labs, but has one authenticator, one login lock and one
"active" flag: a second-factor reset (which also ends all their sessions), a login-lock
release and a reactivation change their access to every one of those labs. For a person
who also works elsewhere such a change is made only once a manager of each of their labs
has asked for it (:func:`_every_lab_agrees`); until then it is a recorded request. Role
changes and membership removals touch this lab's membership only; a deactivation is
refused for such a person (they are removed from this lab instead); a mass-reading lock
is the lab's where the reading happened, and only that lab lifts it.

One account per person (CNIL sanction of 2022: accounts shared by several employees):
a generic username ("accueil", "labo"...) is refused, and a person who already works for
another lab of the same group gets a membership in this lab, not a second account.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from coffre.accounts import mfa, sessions, temporary
from coffre.accounts.locks import LoginLock, login_locks
from coffre.accounts.models import (
    Deactivation,
    Membership,
    PersonWideRequest,
    Role,
    TotpDevice,
)
from coffre.audit import log
from coffre.audit.models import AccountLock
from coffre.tenancy.access import RowNotFound, one_row
from coffre.tenancy.actors import LabActor
from coffre.tenancy.capabilities import ASSIGNABLE, may
from coffre.tenancy.models import Lab

ROLE_CHOICES = [(role, Role(role).label) for role in ASSIGNABLE]
# Names of a desk, a team or a function rather than of a person: the shared-account smell.
GENERIC_NAMES = frozenset({
    "accueil", "admin", "administrateur", "administration", "biologiste", "commun",
    "compte", "direction", "equipe", "garde", "guest", "infirmier", "infirmiere",
    "interim", "invite", "labo", "laboratoire", "nuit", "paillasse", "prelevement",
    "reception", "remplacant", "root", "secretaire", "secretariat", "stagiaire",
    "standard", "technicien", "test", "user", "utilisateur",
})
# Changes that reach every lab of the person, with how long a manager's request for one
# waits for the managers of the person's other labs. A login lock ends by itself after
# the cool-off: a request to lift it is about that lock only.
PERSON_WIDE = ("mfa_reset", "login_unlock", "account_reactivate")
REQUEST_LIFETIME = timedelta(hours=24)
PERSON_WIDE_LABELS = {
    "mfa_reset": _("réinitialisation de la double authentification"),
    "login_unlock": _("levée du blocage de connexion"),
    "account_reactivate": _("réactivation du compte"),
}
PASSWORD_LENGTH = 16
# No look-alikes (0/O, 1/l/I) for a password read from a screen and typed once.
PASSWORD_ALPHABETS = ("abcdefghijkmnpqrstuvwxyz", "ABCDEFGHJKLMNPQRSTUVWXYZ", "23456789",
                      "#%+=?*-_")


class AccountError(Exception):
    """A refused change; the message is for the manager (no other lab's data in it)."""

    message = _("Cette opération n'est pas possible.")

    def __init__(self, message: str | None = None) -> None:
        super().__init__(str(message or self.message))


class NoSuchMembership(AccountError, RowNotFound):
    message = _("Ce compte n'existe pas dans ce laboratoire.")


class NotAllowed(AccountError):
    message = _("Seul le responsable du laboratoire peut gérer les comptes.")


class OwnAccount(AccountError):
    message = _("Vous ne pouvez pas modifier votre propre compte ; demandez-le à un autre "
                "responsable.")


class GenericUsername(AccountError):
    message = _("Cet identifiant désigne un poste ou un service, pas une personne. Un "
                "compte par personne : utilisez par exemple prenom.nom.")


class UsernameTaken(AccountError):
    message = _("Cet identifiant est déjà pris.")


class BadRole(AccountError):
    message = _("Ce rôle ne peut pas être attribué ici.")


class WorksElsewhere(AccountError):
    message = _("Cette personne travaille aussi pour un autre laboratoire : retirez-la de "
                "ce laboratoire au lieu de désactiver son compte.")


@dataclass(frozen=True)
class MemberRow:
    membership: Membership
    username: str
    full_name: str
    role: str
    active: bool
    second_factor: bool
    last_login: datetime | None
    login_lock: LoginLock | None
    reading_lock: AccountLock | None
    works_elsewhere: bool = False  # person-wide changes need their other labs' managers
    asked_elsewhere: tuple[str, ...] = ()  # person-wide changes another lab asked for
    awaiting: tuple[str, ...] = ()  # asked by this lab, waiting for the others

    @property
    def managed(self) -> bool:
        """Whether the manager may change this account (not a platform administrator)."""
        return self.membership.role != Role.PLATFORM_ADMIN


@dataclass(frozen=True)
class Created:
    membership: Membership
    password: str | None  # the temporary password, to show once; None for a new lab only


# --- reads ---------------------------------------------------------------------------

def _require_manager(actor: LabActor) -> None:
    if not may(actor, "accounts.manage") or actor.lab_id is None:
        raise NotAllowed


def lab_members(actor: LabActor) -> list[MemberRow]:
    """The lab's members with their state: second factor, last login, locks."""
    _require_manager(actor)
    members = list(Membership.objects.filter(lab_id=actor.lab_id).select_related("user")
                   .order_by("user__username"))
    users = [m.user_id for m in members]
    enrolled = set(TotpDevice.objects.filter(user_id__in=users, confirmed=True)
                   .values_list("user_id", flat=True))
    logins = {lock.username: lock for lock in login_locks(actor.lab_id)}
    usernames = [m.user.username for m in members]
    readings = {lock.person: lock for lock in AccountLock.objects.filter(
        lab_id=actor.lab_id, person__in=usernames, unlocked_at__isnull=True)}
    elsewhere = set(Membership.objects.filter(user_id__in=users).exclude(
        lab_id=actor.lab_id).values_list("user_id", flat=True))
    asked: dict[int, dict[str, set[int]]] = {}
    for request in _live_requests(PersonWideRequest.objects.filter(user_id__in=users)):
        asked.setdefault(request.user_id, {}).setdefault(request.action, set()).add(
            request.lab_id)
    rows = []
    for m in members:
        by_action = asked.get(m.user_id, {})
        rows.append(MemberRow(
            m, m.user.username, m.user.get_full_name(), m.get_role_display(),
            m.user.is_active, m.user_id in enrolled, m.user.last_login,
            logins.get(m.user.username), readings.get(m.user.username),
            works_elsewhere=m.user_id in elsewhere,
            asked_elsewhere=tuple(str(PERSON_WIDE_LABELS[a]) for a, labs in by_action.items()
                                  if actor.lab_id not in labs),
            awaiting=tuple(str(PERSON_WIDE_LABELS[a]) for a, labs in by_action.items()
                           if actor.lab_id in labs)))
    return rows


def access_membership(actor: LabActor, membership_id: int) -> Membership:
    """A membership of the actor's lab, that the actor may change; raises otherwise."""
    _require_manager(actor)
    try:
        membership = one_row(Membership.objects.filter(lab_id=actor.lab_id)
                             .select_related("user"), membership_id, "membership")
    except RowNotFound:
        raise NoSuchMembership from None
    if membership.user.get_username() == actor.person:
        raise OwnAccount
    if membership.role == Role.PLATFORM_ADMIN:
        raise NotAllowed
    return membership


# --- checks --------------------------------------------------------------------------

def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def check_username(username: str) -> str:
    """The username, stripped; raises GenericUsername for a desk or team name (any part:
    "accueil2", "labo.nord", "secretariat-nuit") or ValidationError for bad characters."""
    username = (username or "").strip()
    if not username:
        raise ValidationError(_("L'identifiant est obligatoire."))
    get_user_model().username_validator(username)
    folded = _fold(username)
    parts = [p for p in re.split(r"[\W_\d]+", folded) if p]
    if not parts or folded.replace(" ", "") in GENERIC_NAMES or any(
            p in GENERIC_NAMES for p in parts):
        raise GenericUsername
    return username


def _check_role(role: str) -> str:
    if role not in ASSIGNABLE:
        raise BadRole
    return role


def new_temporary_password(username: str = "", lab_names: tuple[str, ...] = ()) -> str:
    """A random 16-character password (about 100 bits) that meets the CNIL rule
    (``coffre.accounts.passwords``): every character class, no sequence or word."""
    from coffre.accounts.passwords import password_problems

    pool = "".join(PASSWORD_ALPHABETS)
    while True:
        chars = [secrets.choice(alphabet) for alphabet in PASSWORD_ALPHABETS]
        chars += [secrets.choice(pool) for _ in range(PASSWORD_LENGTH - len(chars))]
        secrets.SystemRandom().shuffle(chars)
        password = "".join(chars)
        if not password_problems(password, username=username, lab_names=lab_names):
            return password


def _record(actor: LabActor, action: str, username: str, detail: str = "",
            outcome: str = "ok") -> None:
    """The entry names the account concerned in its sealed purpose, never a password."""
    target = f"compte {username}" + (f" ; {detail}" if detail else "")
    log.record(actor, action, [], kind="account", purpose=target, outcome=outcome)


# --- changes that reach every lab of the person ----------------------------------------

def _lifetime(action: str) -> timedelta:
    return settings.AXES_COOLOFF_TIME if action == "login_unlock" else REQUEST_LIFETIME


def _live_requests(requests):
    """The requests not yet lapsed (each action has its own lifetime)."""
    now = timezone.now()
    return [r for r in requests if r.at >= now - _lifetime(r.action)]


def _every_lab_agrees(actor: LabActor, user, action: str) -> bool:
    """Whether a person-wide change may be made now: the person works for this lab only,
    or a manager of each of their labs has asked for it (this one included) within its
    lifetime. Otherwise this lab's request is recorded, logged, and False returned.
    Call inside the change's transaction."""
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()  # one at a time
    labs = set(Membership.objects.filter(user=user).values_list("lab_id", flat=True))
    if labs <= {actor.lab_id}:
        return True
    PersonWideRequest.objects.update_or_create(
        user=user, action=action, lab_id=actor.lab_id,
        defaults={"by": actor.person, "at": timezone.now()})
    requests = PersonWideRequest.objects.filter(user=user, action=action)
    if labs <= {r.lab_id for r in _live_requests(requests)}:
        requests.delete()
        return True
    _record(actor, action, user.username, "en attente des responsables de ses autres "
            "laboratoires", outcome="pending")
    return False


# --- changes -------------------------------------------------------------------------

def _same_person(user, first_name: str, last_name: str) -> bool:
    return (_fold(user.first_name.strip()) == _fold(first_name.strip())
            and _fold(user.last_name.strip()) == _fold(last_name.strip()))


@transaction.atomic
def do_create_account(actor: LabActor, username: str, first_name: str, last_name: str,
                      role: str) -> Created:
    """A new account with a temporary password (shown once), or, for a person who
    already works for another lab of the same group (same username and names), a
    membership of this lab. At the first login the person replaces the temporary
    password, then enrolls the second factor (``accounts.temporary``)."""
    _require_manager(actor)
    username = check_username(username)
    role = _check_role(role)
    first_name, last_name = first_name.strip(), last_name.strip()
    if not first_name or not last_name:
        raise ValidationError(_("Le prénom et le nom sont obligatoires."))
    lab = Lab.objects.get(pk=actor.lab_id)
    existing = get_user_model().objects.filter(username__iexact=username).first()
    if existing is not None:
        in_group = lab.group_id is not None and Membership.objects.filter(
            user=existing, lab__group_id=lab.group_id).exists()
        here = Membership.objects.filter(user=existing, lab_id=lab.pk).exists()
        if here or not in_group or not _same_person(existing, first_name, last_name):
            raise UsernameTaken
        membership = Membership.objects.create(user=existing, lab=lab, role=role)
        _record(actor, "membership_add", existing.username, f"rôle {role}")
        return Created(membership, None)
    user = get_user_model()(username=username, first_name=first_name, last_name=last_name)
    password = new_temporary_password(username, (lab.name,))
    validate_password(password, user)
    user.set_password(password)
    user.save()
    temporary.mark(user, issued_by=actor.person)
    membership = Membership.objects.create(user=user, lab=lab, role=role)
    _record(actor, "account_create", username, f"rôle {role}")
    return Created(membership, password)


@transaction.atomic
def do_change_role(actor: LabActor, membership_id: int, role: str) -> Membership:
    membership = access_membership(actor, membership_id)
    role = _check_role(role)
    previous = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    _record(actor, "role_change", membership.user.username, f"{previous} -> {role}")
    return membership


@transaction.atomic
def do_remove_membership(actor: LabActor, membership_id: int) -> None:
    """The person no longer works for this lab. An account left with no lab is
    deactivated and its sessions end; one that works elsewhere keeps its other labs
    (its sessions acting for this lab lose access at their next request)."""
    membership = access_membership(actor, membership_id)
    user = membership.user
    membership.delete()
    _record(actor, "membership_remove", user.username)
    if not Membership.objects.filter(user=user).exists():
        user.is_active = False
        user.save(update_fields=["is_active"])
        sessions.end_all_sessions(user)


@transaction.atomic
def do_deactivate(actor: LabActor, membership_id: int) -> None:
    """The account can no longer log in, and its open sessions end. Refused for a person
    who also works for another lab (the manager of this lab removes the membership)."""
    membership = access_membership(actor, membership_id)
    user = membership.user
    if Membership.objects.filter(user=user).exclude(lab_id=actor.lab_id).exists():
        raise WorksElsewhere
    user.is_active = False
    user.save(update_fields=["is_active"])
    Deactivation.objects.update_or_create(user=user, defaults={"by": actor.person})
    sessions.end_all_sessions(user)
    _record(actor, "account_deactivate", user.username)


@transaction.atomic
def do_reactivate(actor: LabActor, membership_id: int) -> bool:
    """The account can log in again (in every lab of the person). Returns False when it
    waits for the managers of the person's other labs (:func:`_every_lab_agrees`)."""
    membership = access_membership(actor, membership_id)
    user = membership.user
    if AccountLock.objects.filter(person=user.username, unlocked_at__isnull=True).exists():
        raise AccountError(_("Ce compte est verrouillé pour lecture massive : "
                             "déverrouillez-le depuis la page des alertes."))
    if not _every_lab_agrees(actor, user, "account_reactivate"):
        return False
    user.is_active = True
    user.save(update_fields=["is_active"])
    Deactivation.objects.filter(user=user).delete()
    _record(actor, "account_reactivate", user.username)
    return True


@transaction.atomic
def do_reset_second_factor(actor: LabActor, membership_id: int) -> bool:
    """Remove the person's authenticator and recovery codes (lost phone) and end all
    their sessions: the next login enrolls a new authenticator. Returns False when it
    waits for the managers of the person's other labs."""
    membership = access_membership(actor, membership_id)
    if not _every_lab_agrees(actor, membership.user, "mfa_reset"):
        return False
    mfa.reset(membership.user)
    sessions.end_all_sessions(membership.user)
    _record(actor, "mfa_reset", membership.user.username)
    return True


@transaction.atomic
def do_clear_login_lock(actor: LabActor, membership_id: int) -> bool:
    """Forget the account's failed logins, wrong passwords and second-factor codes alike
    (django-axes), lifting its lock. Failures counted against an address stay. Returns
    False when it waits for the managers of the person's other labs."""
    from axes.utils import reset

    membership = access_membership(actor, membership_id)
    if not _every_lab_agrees(actor, membership.user, "login_unlock"):
        return False
    reset(username=membership.user.username)
    _record(actor, "login_unlock", membership.user.username)
    return True

