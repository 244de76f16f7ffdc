"""Patient portal: activation with the receipt code and birth date, and a patient sees
their own published results only."""

from __future__ import annotations

import pytest

from coffre.identity.access import create_patient
from coffre.labwork import access
from coffre.portal import activation, services
from coffre.portal.activation import Activation, ActivationRefused
from coffre.portal.models import ActivationCode, PatientAccount
from tests.conftest import STAFF_PASSWORD, make_nir, patient_row
from tests.lab_helpers import order_for, published

BIRTH = "14/03/1985"




def _activate(code: str, birth: str = BIRTH, username: str = "claire.m85"):
    return activation.activate(Activation(code, birth, username, STAFF_PASSWORD))


def test_a_patient_activates_with_the_code_and_birth_date(staff, patient):
    code = activation.issue_code(staff.secretary, patient.id)
    user = _activate(code.lower().replace("-", " "))
    account = PatientAccount.objects.get(user=user)
    assert account.patient_id == patient.id
    assert user.check_password(STAFF_PASSWORD)
    with pytest.raises(ActivationRefused):
        _activate(code, username="second.try")


def test_the_code_is_kept_as_a_hash_only(staff, patient):
    code = activation.issue_code(staff.secretary, patient.id)
    row = ActivationCode.objects.get()
    secret = code.split("-")[1]
    assert secret not in row.secret_hash and row.secret_hash.startswith("argon2")


def test_a_wrong_birth_date_is_refused_like_a_wrong_code_and_burns_the_code(staff, patient):
    code = activation.issue_code(staff.secretary, patient.id)
    refusals = set()
    for _ in range(activation.MAX_FAILURES):
        with pytest.raises(ActivationRefused) as refused:
            _activate(code, birth="15/03/1985")
        refusals.add(str(refused.value))
    with pytest.raises(ActivationRefused) as wrong_code:
        _activate(code[:-1] + ("0" if code[-1] != "0" else "1"))
    assert refusals == {str(wrong_code.value)}
    with pytest.raises(ActivationRefused):
        _activate(code)  # burnt after MAX_FAILURES
    assert not PatientAccount.objects.exists()


@pytest.fixture
def argon2_work(monkeypatch) -> list[str]:
    """Each Argon2 computation of the configured password hasher (a hash or a
    verification), noted by wrapping its real methods."""
    from django.contrib.auth.hashers import get_hasher

    hasher = type(get_hasher())
    done: list[str] = []

    def noting(name: str):
        real = getattr(hasher, name)

        def noted(self, *args, **kwargs):
            done.append(name)
            return real(self, *args, **kwargs)
        return noted

    for name in ("encode", "verify"):
        monkeypatch.setattr(hasher, name, noting(name))
    return done


def _other(secret: str) -> str:
    return secret[:-1] + ("0" if secret[-1] != "0" else "1")


def test_an_unknown_code_costs_the_same_argon2_work_as_a_known_one(staff, patient,
                                                                   argon2_work):
    """The answer's time must not tell which codes exist: one Argon2 computation (a
    verification for a known code, a hash with the same parameters otherwise), whether
    the public part is known, unknown or expired, and the same answer."""
    code = activation.issue_code(staff.secretary, patient.id)
    public, secret = code.split("-")
    unknown = "ZZZZZZ" if public != "ZZZZZZ" else "YYYYYY"
    expired = activation.issue_code(staff.secretary, create_patient(
        staff.secretary, patient_row(nir=make_nir("M", 1970, 5), sex="M",
                                     birth_name="Durand", used_name="", first_names="Marc",
                                     birth_date="1970-05-02")).id)
    ActivationCode.objects.filter(public_id=expired[:6]).update(expires_at="2000-01-01T00:00Z")
    answers = {}
    for name, typed in (("unknown", f"{unknown}-{secret}"), ("known", f"{public}-{_other(secret)}"),
                        ("expired", expired)):
        argon2_work.clear()
        with pytest.raises(ActivationRefused) as refused:
            _activate(typed)
        answers[name] = (len(argon2_work), str(refused.value))
    assert answers["unknown"] == answers["known"] == answers["expired"]
    assert answers["known"][0] == 1


def test_a_stranger_guessing_secrets_cannot_burn_the_patients_code(staff, patient):
    code = activation.issue_code(staff.secretary, patient.id)
    public, secret = code.split("-")
    guesses = [g for g in (f"{n:010d}" for n in range(20)) if g != secret]
    for n, guess in enumerate(guesses[:3 * activation.MAX_FAILURES]):  # many addresses
        with pytest.raises(ActivationRefused):
            activation.activate(Activation(f"{public}-{guess}", BIRTH, "intrus.x",
                                           STAFF_PASSWORD), address=f"203.0.113.{n}")
    assert ActivationCode.objects.get().failures == 0
    assert _activate(code)  # the patient's code still works


def test_one_address_is_stopped_before_any_argon2_work(staff, patient, argon2_work,
                                                       settings):
    settings.COFFRE_ACTIVATION_ADDRESS_ATTEMPTS = 3
    code = activation.issue_code(staff.secretary, patient.id)
    public, secret = code.split("-")
    for _ in range(3):
        with pytest.raises(ActivationRefused) as refused:
            activation.activate(Activation(f"{public}-{_other(secret)}", BIRTH, "claire.m85",
                                           STAFF_PASSWORD), address="203.0.113.7")
        assert not isinstance(refused.value, activation.TooManyAttempts)
    argon2_work.clear()
    with pytest.raises(activation.TooManyAttempts) as stopped:
        activation.activate(Activation(code, BIRTH, "claire.m85", STAFF_PASSWORD),
                            address="203.0.113.7")
    assert argon2_work == [] and 0 < stopped.value.retry_after <= 15 * 60
    assert activation.activate(Activation(code, BIRTH, "claire.m85", STAFF_PASSWORD),
                               address="198.51.100.9")


def test_a_weak_password_is_refused_and_the_code_still_works(staff, patient):
    code = activation.issue_code(staff.secretary, patient.id)
    with pytest.raises(ActivationRefused) as refused:
        activation.activate(Activation(code, BIRTH, "claire.m85", "azerty123"))
    assert refused.value.problems
    assert _activate(code)


def test_a_new_code_replaces_the_previous_one(staff, patient):
    first = activation.issue_code(staff.secretary, patient.id)
    second = activation.issue_code(staff.secretary, patient.id)
    with pytest.raises(ActivationRefused):
        _activate(first)
    assert _activate(second)


def test_a_patient_sees_only_their_published_results(staff, patient):
    other = create_patient(staff.secretary, patient_row(
        nir=make_nir("M", 1970, 5), sex="M", birth_name="Durand", used_name="",
        first_names="Marc", birth_date="1970-05-02"))
    mine = published(staff, patient.id, K="4.4")
    pending = order_for(staff.secretary, patient.id, "NA")
    theirs = published(staff, other.id, K="5.0")
    account = PatientAccount.objects.get(
        user=_activate(activation.issue_code(staff.secretary, patient.id)))
    assert [p.order.id for p in services.published_orders(account)] == [mine.id]
    view = services.patient_order(account, mine.id)
    assert [v.display_value for v in view.results] == ["4,4"]
    for foreign in (theirs.id, pending.id, "not-a-uuid"):
        with pytest.raises(access.OrderNotFound):
            services.patient_order(account, foreign)
    name, content = services.patient_report(account, mine.id)
    assert content.startswith(b"%PDF") and mine.number in name


def test_a_patient_sees_who_read_their_record(staff, patient):
    published(staff, patient.id, K="4.4")
    account = PatientAccount.objects.get(
        user=_activate(activation.issue_code(staff.secretary, patient.id)))
    people = {entry.person for entry in services.access_log(account)}
    assert {staff.secretary.person, staff.biologist.person} <= people


def test_the_receipt_carries_a_code_until_the_patient_has_an_account(staff, patient):
    import io

    from pypdf import PdfReader

    from coffre.portal.receipt import receipt_pdf

    order = order_for(staff.secretary, patient.id, "K")
    _, content = receipt_pdf(staff.secretary, order.id, "https://resultats.example.fr")
    text = PdfReader(io.BytesIO(content)).pages[0].extract_text()
    code = next(line for line in text.splitlines() if line.count("-") == 1
                and len(line.strip()) == 17).strip()
    _activate(code)
    _, again = receipt_pdf(staff.secretary, order.id, "https://resultats.example.fr")
    assert code not in PdfReader(io.BytesIO(again)).pages[0].extract_text()
