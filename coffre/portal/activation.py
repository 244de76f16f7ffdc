"""Patient portal activation: a one-time code printed on the sample receipt, and the
patient's birth date.

The code reads ``PUBLIC-SECRET`` (e.g. ``K7QF3M-X2RTB9HPZA``): the public part finds the
row, the secret part (50 bits) is checked against its Argon2id hash. A code expires
after ``CODE_DAYS`` days and serves once. Every refusal looks the same, and takes the
same time: an unknown, expired or used code costs the same Argon2 computation as a
known one, so the answer's time does not tell which public parts exist.

Tries are limited in two places:

* per address (``COFFRE_ACTIVATION_ADDRESS_ATTEMPTS`` attempts per
  ``COFFRE_ACTIVATION_WINDOW_MINUTES``), counted before any work, so a stranger can
  neither probe many codes nor make the server hash for them;
* per code, only the wrong birth dates given with the right secret: whoever reaches
  that point holds the receipt, and ``MAX_FAILURES`` of them burn the code (a found or
  stolen receipt does not let its holder search the birth date). A wrong secret is
  not counted against the code: guessing 50 bits is out of reach anyway, and counting
  it would let anyone who learns the public part lock the patient out of their code.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password, make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from coffre.audit import log
from coffre.identity import french
from coffre.identity.access import patients_for
from coffre.identity.models import Patient
from coffre.identity.registry import open_patient
from coffre.portal.models import ActivationCode, PatientAccount
from coffre.tenancy.actors import LabActor
from coffre.tenancy.capabilities import PATIENT, require

logger = logging.getLogger("coffre.portal")
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
PUBLIC_LENGTH = 6
SECRET_LENGTH = 10  # 50 bits
CODE_DAYS = 90
MAX_FAILURES = 5
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{5,39}$")


class ActivationRefused(Exception):
    """The code, the birth date or the account details were not accepted; the
    message is safe to show (it never says which of code or birth date was wrong)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class TooManyAttempts(ActivationRefused):
    """This address has made too many attempts; ``retry_after`` seconds to wait."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many activation attempts from this address; try again later")
        self.retry_after = retry_after


def _random(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def normalize_code(text: str) -> str:
    """What a person types: any case, spaces or dashes, O for 0, I or L for 1."""
    cleaned = re.sub(r"[\s-]", "", text.upper()).translate(str.maketrans("OIL", "011"))
    return cleaned


def portal_actor(user_name: str, lab_id: int) -> LabActor:
    return LabActor(person=user_name, lab_id=lab_id, role=PATIENT, channel="portal")


def issue_code(actor: LabActor, patient_id: uuid.UUID, *, now: dt.datetime | None = None
               ) -> str:
    """A new code for a patient of the actor's lab (earlier unused ones stop working).
    Returned in clear once, to be printed on the receipt; only its hash is kept."""
    require(actor, "specimen.receive")
    if not patients_for(actor).filter(id=patient_id).exists():
        raise LookupError("no such patient")
    now = now or timezone.now()
    secret = _random(SECRET_LENGTH)
    with transaction.atomic():
        ActivationCode.objects.filter(patient_id=patient_id, used_at__isnull=True).update(
            used_at=now)
        for _attempt in range(5):
            public = _random(PUBLIC_LENGTH)
            try:
                with transaction.atomic():
                    ActivationCode.objects.create(
                        lab_id=actor.lab_id, patient_id=patient_id, public_id=public,
                        secret_hash=make_password(secret), created_at=now,
                        expires_at=now + dt.timedelta(days=CODE_DAYS))
                break
            except IntegrityError:
                continue
    log.record(actor, "create", [patient_id], kind="portal_code")
    return f"{public}-{secret}"


def has_account(patient_id: uuid.UUID) -> bool:
    return PatientAccount.objects.filter(patient_id=patient_id).exists()


@dataclass(frozen=True)
class Activation:
    code: str
    birth_date: str
    username: str
    password: str


def _refused() -> ActivationRefused:
    return ActivationRefused("code or birth date not recognised, or code expired")


def _check_account_details(username: str, password: str) -> list[str]:
    problems = []
    if not USERNAME.match(username):
        problems.append("the login must be 6 to 40 lowercase letters, digits, '.', '_' "
                        "or '-', starting with a letter or digit")
    elif get_user_model().objects.filter(username=username).exists():
        problems.append("this login is taken, choose another")
    try:
        validate_password(password, get_user_model()(username=username))
    except ValidationError as exc:
        problems.extend(exc.messages)
    return problems


def activate(request: Activation, *, address: str = "", now: dt.datetime | None = None):
    """Create the patient's portal account, or raise ActivationRefused (TooManyAttempts
    past this address's limit, before any work). The code is spent only when the
    account is created. ``address`` is the client's (the web's; empty from code that
    has none, which no address limit applies to)."""
    now = now or timezone.now()
    if address:
        _count_attempt(address)
    code = normalize_code(request.code)
    username = request.username.strip().lower()
    try:
        birth_date = french.clean_typed_birth_date(request.birth_date).isoformat()
    except french.InvalidValue:
        raise ActivationRefused("the birth date is not a valid date (JJ/MM/AAAA)") from None
    if len(code) != PUBLIC_LENGTH + SECRET_LENGTH:
        raise _refused()  # the format is public: nothing to learn from a quick answer
    secret = code[PUBLIC_LENGTH:]
    with transaction.atomic():
        row = (ActivationCode.objects.select_for_update()
               .filter(public_id=code[:PUBLIC_LENGTH], used_at__isnull=True,
                       expires_at__gt=now).first())
        if row is None:
            make_password(secret)  # the Argon2 work a known code costs: same answer time
            raise _refused()
        if not check_password(secret, row.secret_hash):
            raise _refused()  # not counted against the code (see the module's note)
        if not _birth_date_matches(row.patient_id, birth_date):
            _count_birth_date_failure(row, now)  # committed: this block ends normally
            matches = False
        else:
            matches = True
            user = _create_account(row, username, request.password, now)
    if not matches:
        raise _refused()
    log.record(portal_actor(username, row.lab_id), "create", [row.patient_id], kind="portal")
    return user


def _count_attempt(address: str) -> None:
    from coffre.apiclients.services import Throttled, count_hit

    window = settings.COFFRE_ACTIVATION_WINDOW_MINUTES * 60
    try:
        count_hit("portal-activation", address, settings.COFFRE_ACTIVATION_ADDRESS_ATTEMPTS,
                  window)
    except Throttled as throttled:
        logger.warning("portal activation: too many attempts from %s", address)
        raise TooManyAttempts(throttled.retry_after) from None


def _create_account(row: ActivationCode, username: str, password: str, now: dt.datetime):
    problems = _check_account_details(username, password)
    if problems:
        raise ActivationRefused("; ".join(problems), problems)
    if PatientAccount.objects.filter(patient_id=row.patient_id).exists():
        raise ActivationRefused("this patient already has a portal account")
    user = get_user_model().objects.create_user(username, password=password)
    PatientAccount.objects.create(user=user, lab_id=row.lab_id, patient_id=row.patient_id)
    row.used_at = now
    row.save(update_fields=["used_at"])
    return user


def _birth_date_matches(patient_id: uuid.UUID, birth_date: str) -> bool:
    patient = Patient.unscoped.filter(id=patient_id, data_key__isnull=False).first()
    return patient is not None and open_patient(patient, ["birth_date"]).birth_date == birth_date


def _count_birth_date_failure(row: ActivationCode, now: dt.datetime) -> None:
    failures = row.failures + 1
    burnt = failures >= MAX_FAILURES
    ActivationCode.objects.filter(pk=row.pk).update(failures=failures,
                                                    used_at=now if burnt else None)
    if burnt:
        # The receipt's holder did not know the birth date: a found or stolen receipt?
        logger.warning("portal activation code %s of lab %s burnt after %s wrong birth "
                       "dates", row.pk, row.lab_id, failures)
