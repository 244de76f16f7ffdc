"""The DPO's breach pages: upload and record, the record with its deadline and counts,
the CNIL draft, the letters and emails; the lab manager views; other roles are refused
and another lab's breach does not exist."""

from __future__ import annotations

import datetime as dt
import re
import sys
import types
from pathlib import Path

import pytest
from django.conf import settings
from django.test.client import BOUNDARY, FakePayload, encode_multipart
from django.utils import timezone

from coffre import config
from coffre.accounts.models import Role
from coffre.audit.models import AccessEvent
from coffre.breach import notifications
from coffre.breach.models import Breach, Notification
from coffre.tenancy.actors import Actor
from tests.conftest import member
from tests.test_breach_record import people, scan_report
from tests.test_web_exports import (  # noqa: F401 - _home: a COFFRE_HOME per test
    _home,
    logged_in,
    text,
)

pytestmark = pytest.mark.django_db
LIST = "/violations/"
NEW = "/violations/nouvelle/"


@pytest.fixture
def staff(lab_a):
    return {role: member(f"{role}.a", lab_a, role) for role in
            (Role.SECRETARY, Role.TECHNICIAN, Role.BIOLOGIST, Role.LAB_MANAGER, Role.DPO)}


@pytest.fixture
def dpo_actor(lab_a, staff) -> Actor:
    return Actor("dpo.a", lab_a.id, Role.DPO, "web")


@pytest.fixture
def matched(actor_a):
    return people(actor_a, 3)


@pytest.fixture
def breach(lab_a, dpo_actor, matched) -> Breach:
    return notifications.record_breach(dpo_actor, lab_a, scan_report({lab_a: matched}),
                                       aware_at=timezone.now() - dt.timedelta(hours=5))


@pytest.fixture
def fake_scan(monkeypatch):
    """The scanner's entry point, replaced: it notes the files it was given (they must
    exist during the scan) and returns ``state["report"]``, or raises on "malformed"."""
    try:
        import coffre.breach.scan as module
    except ImportError:
        module = types.ModuleType("coffre.breach.scan")
        module.BreachScanError = type("BreachScanError", (ValueError,), {})
        monkeypatch.setitem(sys.modules, "coffre.breach.scan", module)
    state: dict = {"paths": [], "seen": []}

    def scan_files(paths, *, progress=None):
        state["paths"] += list(paths)
        state["seen"] += [(p.name, p.read_bytes()) for p in paths]
        if any(b"malformed" in p.read_bytes() for p in paths):
            raise module.BreachScanError("fuite.csv: line 3 is not valid CSV")
        return state["report"]

    monkeypatch.setattr(module, "scan_files", scan_files, raising=False)
    return state


def upload(name: str, content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content, content_type="text/csv")


def test_the_dpo_uploads_a_file_and_gets_a_breach_record(
        lab_a, staff, matched, fake_scan):
    fake_scan["report"] = scan_report({lab_a: matched})
    aware = (timezone.localtime() - dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    response = logged_in(staff[Role.DPO]).post(NEW, {
        "files": [upload("fuite.csv", b"nir;nom\n1;2\n"), upload("b.csv", b"x\n")],
        "aware_at": aware, "nature": "Trouvé sur un forum"}, follow=True)

    assert response.status_code == 200
    breach = Breach.objects.get()
    assert response.redirect_chain[-1][0] == f"/violations/{breach.pk}/"
    assert [name for name, _ in fake_scan["seen"]] == ["fuite.csv", "b.csv"]
    assert fake_scan["seen"][0][1] == b"nir;nom\n1;2\n"
    assert not any(p.exists() for p in fake_scan["paths"])  # deleted after the scan
    assert not any((config.home() / "tmp").iterdir())
    assert notifications.texts(breach)["nature"] == "Trouvé sur un forum"
    assert breach.notifications.filter(kind="patient").count() == 3
    page = text(response)
    assert re.search(r"(69|70) h \d\d min restantes", page)
    assert "Patients du laboratoire" in page


def test_a_malformed_file_is_refused_clearly_and_records_nothing(lab_a, staff, fake_scan):
    response = logged_in(staff[Role.DPO]).post(NEW, {
        "files": [upload("fuite.csv", b"malformed\n")],
        "aware_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M")})
    assert response.status_code == 400
    assert "Fichier illisible : fuite.csv: line 3 is not valid CSV" in text(response)
    assert not Breach.objects.exists() and not Notification.objects.exists()
    assert not any(p.exists() for p in fake_scan["paths"])


class CountedBody(FakePayload):
    """The request body as the server reads it, counting the bytes read."""

    read_bytes = 0

    def read(self, size=-1, /):
        data = super().read(size)
        self.read_bytes += len(data)
        return data


def post_body(client, fields: dict) -> tuple:
    """A multipart POST whose reading is counted; (response, bytes of the body read,
    bytes sent)."""
    body = encode_multipart(BOUNDARY, fields)
    counted = CountedBody(body)
    response = client.post(NEW, body, content_type=f"multipart/form-data; boundary={BOUNDARY}",
                           **{"wsgi.input": counted})
    return response, counted.read_bytes, len(body)


def test_a_file_over_the_size_cap_stops_the_upload_while_it_is_read(
        lab_a, staff, fake_scan, monkeypatch):
    from coffre.breach import uploads
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 3 * 1024 * 1024)
    spool = Path(settings.FILE_UPLOAD_TEMP_DIR)  # where Django writes uploads over 2.5 MB
    spooled = set(spool.iterdir())
    # 3.5 MB declared: within the cap and the form's allowance, so the body is read (and
    # spooled to a temporary file, past 2.5 MB)...
    response, read, sent = post_body(logged_in(staff[Role.DPO]), {
        "files": [upload("grand.csv", b"0123456789" * 350_000)],
        "aware_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M")})
    assert response.status_code == 413
    assert "Le fichier grand.csv dépasse la taille maximale de 3 Mo" in text(response)
    # ... and stops within a chunk (64 KiB) past the cap, the rest never read.
    assert read <= 3 * 1024 * 1024 + 2 * 64 * 1024 < sent
    assert fake_scan["paths"] == [] and not Breach.objects.exists()
    assert set(spool.iterdir()) == spooled  # nothing left behind
    # Two files under the cap alone but over it together: the upload as a whole.
    response, read, _ = post_body(logged_in(staff[Role.DPO]), {
        "files": [upload("a.csv", b"x" * 2_000_000), upload("b.csv", b"y" * 2_000_000)],
        "aware_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M")})
    assert response.status_code == 413 and "tous les fichiers ensemble" in text(response)


def test_a_request_declaring_more_than_the_cap_is_refused_unread(lab_a, staff, fake_scan,
                                                                 monkeypatch):
    from coffre.breach import uploads
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 100_000)
    monkeypatch.setattr(uploads, "FORM_BYTES", 1000)  # the request declares 300,000 bytes
    response, read, _ = post_body(logged_in(staff[Role.DPO]), {
        "files": [upload("grand.csv", b"0123456789" * 30_000)],
        "aware_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M")})
    assert response.status_code == 413 and read == 0
    assert "L'envoi dépasse la taille maximale" in text(response)
    assert fake_scan["paths"] == [] and not Breach.objects.exists()


def test_hostile_files_get_a_french_error_and_never_a_500(lab_a, staff, tmp_path,
                                                         monkeypatch):
    """The real scanner: a JSON nested past Python's recursion limit, and a workbook
    whose shared-strings table is over the bound."""
    from tests.test_breach_scan import _strings, _with_shared_strings

    deep = 100_000
    nested = ("[" + '{"a":' * deep + "1" + "}" * deep + "]").encode()
    client = logged_in(staff[Role.DPO])
    client.raise_request_exception = False
    aware = timezone.localtime().strftime("%Y-%m-%dT%H:%M")
    response = client.post(NEW, {"files": [upload("imbrique.json", nested)], "aware_at": aware})
    assert response.status_code == 400
    assert ("Le fichier imbrique.json imbrique ses données JSON sur plus de 64 niveaux"
            in text(response))
    from coffre.breach import readers
    monkeypatch.setattr(readers, "MAX_SHARED_STRINGS", 100)
    book = _with_shared_strings(tmp_path, "classeur.xlsx", _strings(500)).read_bytes()
    response = client.post(NEW, {"files": [upload("classeur.xlsx", book)], "aware_at": aware})
    assert response.status_code == 400
    assert "La table des textes partagés du classeur classeur.xlsx est trop grande" in text(
        response)
    assert not Breach.objects.exists()


def test_an_awareness_time_in_the_future_is_refused(lab_a, staff, fake_scan):
    future = (timezone.localtime() + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    response = logged_in(staff[Role.DPO]).post(NEW, {
        "files": [upload("a.csv", b"x\n")], "aware_at": future})
    assert response.status_code == 400 and "dans le futur" in text(response)
    assert fake_scan["paths"] == []


def test_the_detail_page_shows_deadline_counts_categories_and_drafts(
        lab_a, staff, breach):
    page = text(logged_in(staff[Role.DPO]).get(f"/violations/{breach.pk}/"))
    assert re.search(r"(66|67) h \d\d min restantes", page)
    assert "numéro de sécurité sociale (NIR)" in page
    assert "3 patients" in page and "0 / 3" in page
    assert f"/violations/{breach.pk}/courriers/" in page
    cnil = text(logged_in(staff[Role.DPO]).get(f"/violations/{breach.pk}/cnil/"))
    assert "3 patient(s) concerné(s)" in cnil and "1. Responsable du traitement" in cnil


def test_the_lab_manager_views_but_neither_reads_patients_nor_edits(lab_a, staff, breach):
    client = logged_in(staff[Role.LAB_MANAGER])
    assert client.get(LIST).status_code == 200
    page = text(client.get(f"/violations/{breach.pk}/"))
    assert "réservé au DPO" in page and 'name="nature"' not in page
    assert client.get(f"/violations/{breach.pk}/courriers/").status_code == 403
    assert client.get(f"/violations/{breach.pk}/courriels/").status_code == 403
    assert client.get(NEW).status_code == 403
    assert client.post(f"/violations/{breach.pk}/envois/",
                       {"target": "cnil", "channel": "online"}).status_code == 403
    assert not AccessEvent.objects.filter(person="lab_manager.a", action="notify").exists()


@pytest.mark.parametrize("role", [Role.SECRETARY, Role.TECHNICIAN, Role.BIOLOGIST])
def test_care_roles_are_refused_every_breach_page(lab_a, staff, breach, role):
    client = logged_in(staff[role])
    for url in (LIST, NEW, f"/violations/{breach.pk}/", f"/violations/{breach.pk}/cnil/",
                f"/violations/{breach.pk}/courriers/"):
        assert client.get(url).status_code == 403, url


def test_another_labs_breach_is_not_found(lab_a, lab_b, staff, actor_b):
    member("dpo.b", lab_b, Role.DPO)
    theirs = notifications.record_breach(
        Actor("dpo.b", lab_b.id, Role.DPO, "web"), lab_b,
        scan_report({lab_b: people(actor_b, 1, prefix="Autre")}))
    client = logged_in(staff[Role.DPO])
    for suffix in ("", "cnil/", "courriers/", "courriels/"):
        assert client.get(f"/violations/{theirs.pk}/{suffix}").status_code == 404
    assert client.post(f"/violations/{theirs.pk}/envois/",
                       {"target": "cnil", "channel": "online"}).status_code == 404
    listing = text(client.get(LIST))
    assert f"/violations/{theirs.pk}/" not in listing
    assert "Aucune violation enregistrée" in listing


def test_the_dpo_downloads_letters_reads_emails_and_marks_them_sent(
        lab_a, staff, breach, matched):
    client = logged_in(staff[Role.DPO])
    batch = client.get(f"/violations/{breach.pk}/courriers/")
    assert batch["Content-Type"] == "application/pdf" and batch.content.startswith(b"%PDF")
    one = client.get(f"/violations/{breach.pk}/courriers/{matched[1].id}/")
    assert one.status_code == 200
    mails = text(client.get(f"/violations/{breach.pk}/courriels/"))
    assert "patient0@example.org" in mails and "patient2@example.org" in mails
    assert "Ce que nous vous conseillons".upper() in mails

    client.post(f"/violations/{breach.pk}/envois/", {"target": "cnil", "channel": "online"})
    client.post(f"/violations/{breach.pk}/envois/",
                {"target": str(matched[0].id), "channel": "email"})
    cnil = breach.notifications.get(kind="cnil")
    assert cnil.sent_by == "dpo.a" and cnil.sent_at is not None
    assert breach.notifications.get(patient_id=matched[0].id).channel == "email"
    page = text(client.get(f"/violations/{breach.pk}/"))
    assert "notifiée dans les délais" in page and "1 / 3" in page


def test_a_letter_for_a_patient_outside_the_breach_is_not_found(
        lab_a, staff, breach, actor_a):
    outsider = people(actor_a, 1, prefix="Dehors")[0]
    client = logged_in(staff[Role.DPO])
    assert client.get(f"/violations/{breach.pk}/courriers/{outsider.id}/").status_code == 404
    assert not AccessEvent.objects.filter(action="notify", patient_id=outsider.id).exists()


def test_the_dpo_edits_the_texts_and_the_cnil_draft(lab_a, staff, breach):
    client = logged_in(staff[Role.DPO])
    client.post(f"/violations/{breach.pk}/textes/", {
        "nature": "Extraction publiée sur un forum", "consequences": "Hameçonnage",
        "measures_taken": "Plainte déposée", "measures_proposed": "Audit",
        "dpo_contact": "dpo@labo-a.example", "delay_reasons": ""})
    breach.refresh_from_db()
    assert notifications.texts(breach)["dpo_contact"] == "dpo@labo-a.example"
    assert "Plainte déposée" in notifications.cnil_text(breach)
    client.post(f"/violations/{breach.pk}/cnil/", {"body": "Version finale relue"})
    assert text(client.get(f"/violations/{breach.pk}/cnil/")).count("Version finale relue")
    assert AccessEvent.objects.filter(person="dpo.a", action="update",
                                      kind="breach").exists()


def test_the_nav_shows_violations_to_the_dpo_and_manager_only(lab_a, staff):
    assert "/violations/" in text(logged_in(staff[Role.DPO]).get(LIST))
    home = text(logged_in(staff[Role.SECRETARY]).get("/patients/"))
    assert 'href="/violations/"' not in home


def test_a_batch_too_large_for_the_web_is_sent_to_the_cli(lab_a, staff, breach, monkeypatch):
    from coffre.breach import views
    monkeypatch.setattr(views, "WEB_BATCH_MAX", 2)
    client = logged_in(staff[Role.DPO])
    response = client.get(f"/violations/{breach.pk}/courriers/", follow=True)
    assert "coffre breach drafts" in text(response)
    assert not AccessEvent.objects.filter(action="notify").exists()


def test_the_dpo_marks_the_drafts_reviewed(lab_a, staff, breach):
    client = logged_in(staff[Role.DPO])
    client.post(f"/violations/{breach.pk}/relu/", {"target": "cnil"})
    client.post(f"/violations/{breach.pk}/relu/", {"target": "letters"})
    assert set(breach.notifications.values_list("reviewed_by", flat=True)) == {"dpo.a"}
    assert AccessEvent.objects.filter(person="dpo.a", action="review").count() == 2
    assert logged_in(staff[Role.LAB_MANAGER]).post(
        f"/violations/{breach.pk}/relu/", {"target": "cnil"}).status_code == 403
