"""The breach record made from a scan, its sealed text, its deadline and its drafts: the
CNIL notification and the letters and emails to the matched patients only."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from coffre.audit.models import AccessEvent, AccountLock
from coffre.breach import letters, notifications
from coffre.breach.models import Breach, BreachStatus, Notification
from coffre.breach.report import ColumnGuess, Evidence, LabImpact, ScanReport
from coffre.identity.access import create_patient
from coffre.tenancy.actors import Actor
from tests.conftest import make_nir, member, patient_row

SECRET_NATURE = "Fichier trouvé chez Maëlys Quéméneur, suivi VIH mentionné"


def people(actor: Actor, count: int, prefix: str = "Patient") -> list:
    """``count`` patients of the actor's lab, each with distinct identity values."""
    made = []
    for i in range(count):
        made.append(create_patient(actor, patient_row(
            nir=make_nir("F", 1960 + i % 40, 1 + i % 12, serial=f"{100 + i:03d}"),
            birth_name=f"{prefix}{chr(65 + i % 26)}{chr(65 + i // 26 % 26)}",
            used_name="", first_names=f"Prénom{i}",
            birth_date=f"{1960 + i % 40}-{1 + i % 12:02d}-10",
            phone=f"06 {10 + i // 100:02d} {i % 100:02d} 00 01",
            email=f"patient{i}@example.org" if i % 2 == 0 else "")))
    return made


def scan_report(matched: dict, categories=("identity", "nir", "contact", "health"),
                evidence: list[Evidence] | None = None) -> ScanReport:
    """A scan report as coffre.breach.scan makes it: ``matched`` maps a lab to the
    records of its patients found in the file."""
    labs = [LabImpact(lab_id=lab.id, finess=lab.finess, name=lab.name, patients=len(recs),
                      by_confidence={"nir": len(recs), "name_birth": 0, "contact": 0})
            for lab, recs in matched.items()]
    matches = {r.id: "nir" for recs in matched.values() for r in recs}
    return ScanReport(
        files=[{"name": "fuite.csv", "sha256": "0" * 64, "bytes": 1234, "format": "csv",
                "rows": len(matches) + 3}],
        rows_read=len(matches) + 3, rows_matched=len(matches),
        columns=[ColumnGuess("fuite.csv", "#1", "nir", "nir", 1.0)],
        categories=list(categories), labs=labs, evidence=evidence or [], matches=matches)


@pytest.fixture
def dpo_a(lab_a) -> Actor:
    member("dpo-a", lab_a, "dpo")
    return Actor("dpo-a", lab_a.id, "dpo", "web")


@pytest.fixture
def leak(lab_a, lab_b, actor_a, actor_b):
    """Lab A: 3 patients in the file, 1 not; lab B: 2 in the file."""
    mine = people(actor_a, 4)
    theirs = people(actor_b, 2, prefix="Autre")
    return mine[:3], mine[3], theirs, scan_report({lab_a: mine[:3], lab_b: theirs})


def test_a_record_keeps_only_its_labs_part_and_drafts_one_letter_per_matched_patient(
        lab_a, dpo_a, leak):
    matched, _unmatched, _theirs, report = leak
    breach = notifications.record_breach(dpo_a, lab_a, report)

    stored = notifications.stored_report(breach)
    assert set(stored.matches) == {p.id for p in matched}
    assert [lab.lab_id for lab in stored.labs] == [lab_a.id]
    assert stored.rows_read == report.rows_read
    notes = Notification.objects.filter(breach=breach)
    assert notes.filter(kind="cnil").count() == 1
    assert set(notes.filter(kind="patient").values_list("patient_id", flat=True)) == {
        p.id for p in matched}
    assert breach.status == BreachStatus.DRAFT
    assert AccessEvent.objects.filter(person="dpo-a", action="create", kind="breach").exists()


def test_the_cnil_draft_states_counts_categories_and_the_deadline(lab_a, dpo_a, leak):
    report = leak[3]
    report.evidence.append(Evidence("watermark", lab_a.id, 2, "conclusive",
                                    "2 row(s) of this file are watermark rows of export #7",
                                    {"export_id": 7, "finess": lab_a.finess,
                                     "requested_by": "m.durand", "approved_by": "dpo-a",
                                     "produced_at": "2026-11-02T10:00:00+00:00",
                                     "recipient": "CHU de Rennes"}))
    report.evidence.append(Evidence("canary", lab_a.id, 1, "conclusive", "1 row(s) ...",
                                    {"finess": lab_a.finess, "canaries": 1,
                                     "planted_to": "2026-10-01T08:00:00+00:00"}))
    report.evidence.append(Evidence("watermark", None, 1, "weak", "An unknown statement."))
    aware = timezone.now() - dt.timedelta(hours=10)
    breach = notifications.record_breach(dpo_a, lab_a, report, aware_at=aware,
                                         values={"dpo_contact": "dpo@labo-a.example"})
    text = notifications.cnil_text(breach)

    assert "3 patient(s) concerné(s)" in text
    assert f"lignes lues : {report.rows_read}" in text
    for label in ("numéro de sécurité sociale (NIR)", "données de santé"):
        assert label in text
    assert "dpo@labo-a.example" in text
    assert ("- [concluant] 2 ligne(s) du fichier sont des lignes filigranes de l'export "
            "n° 7") in text
    assert "demandé par m.durand, approuvé par dpo-a, produit le 02/11/2026" in text
    assert "1 patient(s) sentinelle(s)" in text and "le 01/10/2026" in text
    assert "- [faible] An unknown statement." in text  # no details: the scanner's words
    assert "Laboratoire B" not in text  # another lab's impact is not this record's
    assert "61 h" in text and "restantes" in text
    assert "Motifs du retard" not in text


def test_the_deadline_is_72_hours_after_awareness_and_late_after_it(lab_a, dpo_a, leak):
    aware = timezone.now() - dt.timedelta(hours=80)
    breach = notifications.record_breach(dpo_a, lab_a, leak[3], aware_at=aware)
    now = aware + dt.timedelta(hours=71, minutes=30)
    early = notifications.deadline(breach, now)
    assert early.due == aware + dt.timedelta(hours=72)
    assert not early.late and early.text == "0 h 30 min restantes"

    late = notifications.deadline(breach, aware + dt.timedelta(hours=75, minutes=5))
    assert late.late and late.text == "en retard de 3 h 05 min"
    assert "Motifs du retard (article 33, paragraphe 1)" in notifications.cnil_text(breach)

    cnil = breach.notifications.get(kind="cnil")
    notifications.mark_sent(dpo_a, [cnil], "online")
    done = notifications.deadline(breach)
    assert done.late and done.text.startswith("notifiée avec 8 h")
    breach.refresh_from_db()
    assert breach.status == BreachStatus.NOTIFIED


def test_a_cnil_notice_sent_in_time_is_not_late(lab_a, dpo_a, leak):
    breach = notifications.record_breach(dpo_a, lab_a, leak[3])
    notifications.mark_sent(dpo_a, [breach.notifications.get(kind="cnil")], "online")
    done = notifications.deadline(breach, timezone.now() + dt.timedelta(days=10))
    assert not done.late and done.text == "notifiée dans les délais"


def test_an_awareness_time_in_the_future_is_refused(lab_a, dpo_a, leak):
    with pytest.raises(notifications.BreachError, match="future"):
        notifications.record_breach(dpo_a, lab_a, leak[3],
                                    aware_at=timezone.now() + dt.timedelta(days=1))
    assert not Breach.objects.exists()


def test_free_text_is_sealed_in_the_database_row(lab_a, dpo_a, leak):
    breach = notifications.record_breach(dpo_a, lab_a, leak[3],
                                         values={"nature": SECRET_NATURE})
    notifications.edit_cnil_text(dpo_a, breach, "Texte revu : " + SECRET_NATURE)
    with connection.cursor() as cursor:
        cursor.execute("SELECT nature, consequences, measures_taken FROM breach_breach")
        row = cursor.fetchone()
        cursor.execute("SELECT body FROM breach_notification WHERE kind = 'cnil'")
        body = cursor.fetchone()[0]
    raw = b"".join(bytes(v) for v in row) + bytes(body)
    for fragment in ("Quéméneur", "VIH", "hameçonnage", "Texte revu"):
        assert fragment.encode() not in raw
    assert notifications.texts(breach)["nature"] == SECRET_NATURE
    assert notifications.cnil_text(breach).startswith("Texte revu : ")
    notifications.edit_cnil_text(dpo_a, breach, "")  # back to the generated draft
    assert notifications.cnil_text(breach).startswith("NOTIFICATION")


def test_letters_and_emails_go_only_to_matched_patients_and_each_read_is_logged(
        lab_a, dpo_a, leak):
    matched, unmatched, _theirs, report = leak
    breach = notifications.record_breach(dpo_a, lab_a, report)
    people_read = letters.addressees(dpo_a, breach)

    assert [p.patient_id for p in people_read] == sorted((p.id for p in matched), key=str)
    names = {p.name for p in people_read}
    assert "Prénom0 PATIENTAA" in names
    assert not any(unmatched.birth_name.upper() in n for n in names)
    logged = AccessEvent.objects.filter(person="dpo-a", action="notify")
    assert set(logged.values_list("patient_id", flat=True)) == {p.id for p in matched}
    assert set(logged.values_list("kind", flat=True)) == {"breach_letter"}

    mails = letters.emails(dpo_a, breach)
    assert len(mails) == 2  # patients 0 and 2 have an email, patient 1 has none
    text = mails[0][1]
    assert text.startswith("Objet : Information sur une violation")
    assert "numéro de sécurité sociale (NIR)" in text and "hameçonnage" in text
    assert unmatched.birth_name not in "".join(t for _, t in mails)

    pdf = letters.letters_pdf(dpo_a, breach)
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page\n") >= 3


def test_another_labs_dpo_cannot_read_the_letters(lab_a, lab_b, dpo_a, leak):
    breach = notifications.record_breach(dpo_a, lab_a, leak[3])
    with pytest.raises(PermissionError):
        letters.addressees(Actor("dpo-b", lab_b.id, "dpo", "web"), breach)


def test_five_hundred_letters_do_not_lock_the_dpo(lab_a, dpo_a, actor_a):
    many = people(actor_a, 500)
    breach = notifications.record_breach(dpo_a, lab_a, scan_report({lab_a: many}))
    assert len(letters.addressees(dpo_a, breach)) == 500
    assert not AccountLock.objects.exists()
    # The DPO's next ordinary read is not refused either.
    from coffre.identity.access import access_patient
    assert access_patient(dpo_a, many[0].id).id == many[0].id


def test_canaries_in_the_file_get_no_letter(lab_a, dpo_a, actor_a, monkeypatch):
    from coffre.audit import canaries
    matched = people(actor_a, 2)
    monkeypatch.setattr(canaries, "canary_ids", lambda: frozenset({matched[0].id}))
    breach = notifications.record_breach(dpo_a, lab_a, scan_report({lab_a: matched}))
    assert list(breach.notifications.filter(kind="patient")
                .values_list("patient_id", flat=True)) == [matched[1].id]


def test_a_failure_leaves_no_partial_record(lab_a, dpo_a, leak, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Notification.objects, "bulk_create", broken)
    with pytest.raises(RuntimeError):
        notifications.record_breach(dpo_a, lab_a, leak[3])
    assert not Breach.objects.exists() and not Notification.objects.exists()


def test_a_malformed_file_leaves_no_record(lab_a, dpo_a, tmp_path):
    scan = pytest.importorskip("coffre.breach.scan")
    bad = tmp_path / "fuite.xlsx"
    bad.write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(scan.BreachScanError):
        notifications.scan_and_record(dpo_a, lab_a, [bad])
    assert not Breach.objects.exists()


def test_marking_patients_sent_records_who_and_when(lab_a, dpo_a, leak):
    breach = notifications.record_breach(dpo_a, lab_a, leak[3])
    notes = letters.patient_notes(breach)
    assert notifications.mark_sent(dpo_a, notes[:2], "letter") == 2
    assert notifications.mark_sent(dpo_a, notes[:2], "email") == 0  # already sent
    sent = Notification.objects.filter(sent_by="dpo-a")
    assert sent.count() == 2 and all(n.sent_at and n.channel == "letter" for n in sent)
    assert AccessEvent.objects.filter(action="notified",
                                      patient_id=notes[0].patient_id).count() == 1
    with pytest.raises(notifications.BreachError):
        notifications.mark_sent(dpo_a, notes, "pigeon")


def test_a_breach_of_another_lab_is_not_found(lab_a, lab_b, dpo_a, leak):
    breach = notifications.record_breach(dpo_a, lab_a, leak[3])
    dpo_b = Actor("dpo-b", lab_b.id, "dpo", "web")
    with pytest.raises(notifications.BreachError):
        notifications.access_breach(dpo_b, breach.pk)
    with pytest.raises(notifications.BreachError):
        notifications.access_breach(dpo_a, "nope")
    assert notifications.access_breach(dpo_a, str(breach.pk)) == breach


def test_no_patient_value_is_in_the_stored_report(lab_a, dpo_a, leak):
    breach = notifications.record_breach(dpo_a, lab_a, leak[3])
    stored = str(Breach.objects.values_list("report", flat=True).get(pk=breach.pk))
    for record in leak[0]:
        assert record.birth_name not in stored and record.nir not in stored
    assert str(uuid.UUID(str(leak[0][0].id))) in stored


def run_cli(*argv: str) -> int:
    from coffre.cli import COMMANDS, parser

    args = parser().parse_args(["breach", *argv])  # registers the handlers first
    return COMMANDS["breach"](args)


def test_the_cli_records_lists_and_writes_the_drafts(lab_a, dpo_a, leak, tmp_path, capsys,
                                                     monkeypatch):
    import json

    from coffre.cli import BadInput
    matched, unmatched, _theirs, report = leak
    monkeypatch.setattr(notifications, "run_scan", lambda actor, lab, paths: report)
    (tmp_path / "fuite.csv").write_text("x\n")
    assert run_cli("record", str(tmp_path / "fuite.csv"), "--lab", lab_a.finess,
                   "--aware-at", (timezone.localtime() - dt.timedelta(days=4)
                                  ).strftime("%Y-%m-%dT%H:%M"), "--by", "dpo-a") == 0
    made = json.loads(capsys.readouterr().out)
    assert made["patients"] == 3 and made["letters"] == 3 and made["late"] is True
    assert run_cli("list", "--lab", lab_a.finess) == 0
    assert json.loads(capsys.readouterr().out)["id"] == made["id"]

    out = tmp_path / "drafts"
    assert run_cli("drafts", str(made["id"]), "--lab", lab_a.finess, "--by", "dpo-a",
                   "--out", str(out)) == 0
    assert "Motifs du retard" in (out / "cnil.txt").read_text()
    assert (out / "courriers.pdf").read_bytes().startswith(b"%PDF")
    mails = [json.loads(line) for line in (out / "courriels.jsonl").read_text().splitlines()]
    assert {m["patient_id"] for m in mails} <= {str(p.id) for p in matched}
    assert len(mails) == 2 and unmatched.email not in {m["to"] for m in mails}
    assert oct(out.stat().st_mode & 0o777) == "0o700"

    with pytest.raises(BadInput, match="not the DPO"):
        run_cli("drafts", str(made["id"]), "--lab", lab_a.finess, "--by", "alice",
                "--out", str(tmp_path / "other"))
    with pytest.raises(BadInput, match="not a date"):
        run_cli("record", str(tmp_path / "fuite.csv"), "--lab", lab_a.finess,
                "--aware-at", "hier", "--by", "dpo-a")


def test_a_patient_sees_the_letter_read_in_their_access_history(lab_a, dpo_a, leak):
    from coffre.audit.history import patient_history
    breach = notifications.record_breach(dpo_a, lab_a, leak[3])
    letters.addressees(dpo_a, breach, [leak[0][0].id])
    labels = [e.action_label for e in patient_history(leak[0][0].id)]
    assert "lecture pour vous informer d'une violation de données" in labels
    assert not AccessEvent.objects.filter(action="notify", patient_id=leak[0][1].id).exists()


def test_a_cnil_text_saved_unchanged_still_follows_the_record_and_is_kept_as_sent(
        lab_a, dpo_a, leak):
    breach = notifications.record_breach(dpo_a, lab_a, leak[3])
    draft = notifications.cnil_text(breach)
    notifications.edit_cnil_text(dpo_a, breach, draft.replace("\n", "\r\n"))
    assert not bytes(breach.notifications.get(kind="cnil").body)
    notifications.update_texts(dpo_a, breach, {"measures_proposed": "Audit externe"})
    assert "Audit externe" in notifications.cnil_text(breach)

    notifications.mark_sent(dpo_a, [breach.notifications.get(kind="cnil")], "online")
    notifications.update_texts(dpo_a, breach, {"measures_proposed": "Changé après envoi"})
    sent = notifications.cnil_text(breach)
    assert "Audit externe" in sent and "Changé après envoi" not in sent


def test_a_real_scan_of_a_leaked_csv_makes_the_record_of_the_matched_patients(
        lab_a, lab_b, dpo_a, actor_a, actor_b, tmp_path):
    mine, theirs = people(actor_a, 4), people(actor_b, 1, prefix="Autre")
    leaked = [*mine[:3], theirs[0]]
    lines = ["numero;nom;prenom;naissance"]
    lines += [f"{p.nir};{p.birth_name};{p.first_names};{p.birth_date}" for p in leaked]
    lines.append(f"{make_nir('M', 1950, 5, serial='999')};Inconnu;Jean;1950-05-02")
    path = tmp_path / "fuite.csv"
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")

    breach = notifications.scan_and_record(dpo_a, lab_a, [path])
    stored = notifications.stored_report(breach)
    assert stored.rows_read == 5
    assert set(stored.matches) == {p.id for p in mine[:3]}
    assert set(breach.notifications.filter(kind="patient")
               .values_list("patient_id", flat=True)) == {p.id for p in mine[:3]}
    assert "nir" in stored.categories
    assert "3 patient(s) concerné(s)" in notifications.cnil_text(breach)
