"""The DPO's breach pages in a real browser: the list, the record with its deadline and
counts, the CNIL draft, and the letters PDF (rendered to an image for a look)."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess

import pytest
from django.utils import timezone

from coffre.accounts.models import Role
from coffre.breach import notifications
from coffre.breach.report import Evidence
from coffre.tenancy.actors import Actor
from tests.browser.helpers import SHOTS, inline_code, log_in, shoot
from tests.conftest import member
from tests.test_breach_record import people, scan_report

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_dpo_sees_the_deadline_and_counts_and_downloads_the_letters(
        open_page, lab_a, actor_a, tmp_path):
    member("dpo-browser", lab_a, Role.DPO)
    dpo = Actor("dpo-browser", lab_a.id, Role.DPO, "web")
    report = scan_report({lab_a: people(actor_a, 3)})
    report.evidence.append(Evidence(
        "watermark", lab_a.id, 2, "conclusive",
        "Le fichier contient 2 lignes filigranes de l'export n° 12 (demandé par "
        "m.durand, approuvé par dpo-browser le 02/11/2026) : il provient de cet export.",
        {"export_id": 12}))
    breach = notifications.record_breach(
        dpo, lab_a, report, aware_at=timezone.now() - dt.timedelta(hours=10),
        values={"dpo_contact": "Délégué à la protection des données, dpo@labo-a.example, "
                               "02 99 00 00 00"})

    page = open_page()
    log_in(page, "dpo-browser")
    page.get_by_role("link", name="Violations").click()
    page.wait_for_url("**/violations/")
    shoot(page, "breach-01-list")
    page.get_by_role("link", name=str(breach.pk), exact=True).click()
    page.wait_for_url(f"**/violations/{breach.pk}/")
    deadline = page.locator("dd.deadline").inner_text()
    assert re.search(r"(61|62) h \d\d min restantes", deadline), deadline
    assert page.locator("dd.rows-read").inner_text() == str(report.rows_read)
    assert page.locator("dd.patients").inner_text() == "3"
    assert page.get_by_text("numéro de sécurité sociale (NIR)").first.is_visible()
    assert page.get_by_text("filigranes de l'export n° 12").is_visible()
    found = inline_code(page)
    assert (found["scripts"], found["styles"], found["handlers"]) == (0, 0, 0)
    shoot(page, "breach-02-detail")

    page.get_by_role("link", name="Voir le projet de notification").click()
    page.wait_for_url(f"**/violations/{breach.pk}/cnil/")
    assert "3 patient(s) concerné(s)" in page.locator("textarea").input_value()
    shoot(page, "breach-03-cnil")

    page.goto(f"/violations/{breach.pk}/")
    with page.expect_download() as download:
        page.get_by_role("link", name="Tous les courriers (PDF)").click()
    pdf = tmp_path / "courriers.pdf"
    download.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-png", "-r", "70", "-f", "1", "-l", "1", str(pdf),
                        str(SHOTS / "breach-04-letter")], check=True)


def test_the_dpo_uploads_a_leaked_csv_and_lands_on_its_breach_record(
        open_page, lab_a, actor_a, tmp_path):
    from coffre.breach.models import Breach

    member("dpo-upload", lab_a, Role.DPO)
    leaked = people(actor_a, 3)
    leak = tmp_path / "export_labo.csv"
    leak.write_text("nss;nom;prenom;ddn\n" + "".join(
        f"{p.nir};{p.birth_name};{p.first_names};{p.birth_date}\n" for p in leaked),
        encoding="latin-1")

    page = open_page()
    log_in(page, "dpo-upload")
    page.goto("/violations/nouvelle/")
    page.get_by_label("Fichier(s) trouvé(s)").set_input_files(str(leak))
    page.get_by_label("Nature de la violation").fill("Fichier signalé par un journaliste")
    shoot(page, "breach-00-upload")
    page.get_by_role("button", name="Analyser et enregistrer la violation").click()
    breach = Breach.objects.get()
    page.wait_for_url(f"**/violations/{breach.pk}/")
    assert page.locator("dd.patients").inner_text() == "3"
    assert page.locator("dd.rows-read").inner_text() == "3"
    assert "export_labo.csv" in page.locator("dl.breach-counts").inner_text()
    from coffre import config
    assert not any((config.home() / "tmp").glob("scan-*"))  # the upload is gone
