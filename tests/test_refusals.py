"""Refusals: each has a stable code and a message in French and in English; a page says
it in the language it is asked in, the CLI in English."""

from __future__ import annotations

import datetime as dt
import html
from collections import defaultdict

import pytest
from django.test import Client
from django.utils import translation

import coffre.exports.services
import coffre.identity.access
import coffre.labwork.analyser
import coffre.labwork.orders
import coffre.labwork.workflow  # noqa: F401 - each module declares its reasons on import
from coffre.accounts.models import Role
from coffre.exports import services
from coffre.labwork import workflow
from coffre.refusals import REASONS, Reason, Refusal, english, reason
from coffre.vault import new_recipient_identity
from tests.conftest import make_nir, member, second_factor_done

pytestmark = pytest.mark.django_db


def rendered(why: Reason, language: str) -> str:
    with translation.override(language):
        return str(why.message) % defaultdict(lambda: "x")


@pytest.mark.parametrize("code", sorted(REASONS))
def test_each_refusal_is_said_in_french_and_in_english(code):
    why = REASONS[code]
    french, english_text = rendered(why, "fr"), rendered(why, "en")
    assert french.strip() and english_text.strip()
    assert french != english_text, f"{code} has no English translation"


def test_the_reasons_of_every_service_are_declared():
    prefixes = {code.split(".")[0] for code in REASONS}
    assert {"search", "export", "order", "workflow", "analyser"} <= prefixes


def test_a_code_is_declared_once():
    with pytest.raises(ValueError, match="declared twice"):
        reason("export.second_person", "encore")


def test_a_refusal_renders_its_parameters_in_the_active_language():
    refused = workflow.WorkflowError(workflow.NOT_OPEN_FOR_ENTRY,
                                     state=workflow.S.RECEIVED.label)
    with translation.override("fr"):
        assert str(refused) == "pas ouvert à la saisie (Reçu)"
    assert refused.render("en") == "not open for entry (Received)"
    assert english(refused) == refused.render("en") and english(ValueError("x")) == "x"
    assert refused.code == "workflow.not_open_for_entry" and isinstance(refused, ValueError)


def test_a_batch_refusal_names_each_row_in_the_language_it_is_read_in():
    rows = [("Sodium (B1)", Refusal(workflow.NOT_A_NUMBER))]
    refused = workflow.WorkflowError(workflow.ENTRY_REFUSED, rows,
                                     detail=workflow._Rows(rows))
    assert refused.render("fr") == ("Saisie des résultats refusée, rien n'a été modifié : "
                                    "Sodium (B1): la valeur saisie n'est pas un nombre")
    assert refused.render("en") == ("result entry refused, nothing changed: Sodium (B1): "
                                    "the value typed is not a number")


# -- end to end through the pages, in French and in English ----------------------------

def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    second_factor_done(client)
    return client


def shown(response) -> str:
    assert response.status_code in (200, 400), response.status_code
    return html.unescape(response.content.decode())


@pytest.mark.parametrize(("language", "message"), [
    ("fr", "NIR : la clé de contrôle (2 derniers chiffres) ne correspond pas"),
    ("en", "NIR: the check key"),
])
def test_a_bad_search_is_refused_in_the_pages_language(lab_a, language, message):
    client = client_of(member("alice", lab_a, Role.SECRETARY))
    nir = make_nir("F", 1985, 3)
    wrong_key = nir[:13] + ("01" if nir[13:] == "00" else "00")
    page = shown(client.post("/patients/", {"nir": wrong_key}, HTTP_ACCEPT_LANGUAGE=language))
    assert message in page


@pytest.mark.parametrize(("language", "message"), [
    ("fr", "Code d'analyse inconnu : ZZZ"),
    ("en", "Unknown test code: ZZZ"),
])
def test_an_unknown_test_code_is_refused_in_the_pages_language(staff, patient, language,
                                                               message):
    from django.contrib.auth import get_user_model

    client = client_of(get_user_model().objects.get(username=staff.secretary.person))
    page = shown(client.post(f"/patients/{patient.id}/demandes/nouvelle/",
                             {"quick_codes": "NFS ZZZ"}, HTTP_ACCEPT_LANGUAGE=language))
    assert message in page


@pytest.mark.parametrize(("language", "message"), [
    ("fr", "Vous avez demandé cet export : il doit être approuvé par une autre personne."),
    ("en", "You requested this export: another person must approve it."),
])
def test_the_four_eyes_refusal_is_said_in_the_pages_language(lab_a, tmp_path, monkeypatch,
                                                             language, message):
    from coffre import config

    monkeypatch.setenv("COFFRE_KEY_FILE", str(config.key_file()))
    monkeypatch.setenv("COFFRE_HOME", str(tmp_path / "home"))
    manager = member("maud", lab_a, Role.LAB_MANAGER)
    today = dt.date.today()
    export = services.request_export(
        lab_a, purpose="Étude", recipient="CHU", recipient_key=new_recipient_identity()[1],
        fields="birth_date", period_from=today, period_to=today, requested_by="maud")
    page = shown(client_of(manager).get(f"/exports/{export.pk}/",
                                        HTTP_ACCEPT_LANGUAGE=language))
    assert message in page
