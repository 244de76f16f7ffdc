"""The communication to each affected patient (GDPR art. 34): PDF letters and email
texts, in clear French, for only the patients the scan matched in the breach's lab.

Names and addresses are decrypted here, at generation time, through the access layer's
scope (``patients_for``: the actor's lab, refused to a locked account) and logged, one
entry per patient, with the action "notify" and the breach number as purpose. Nothing
generated is stored: a letter is built again each time it is asked for.

Why not the ordinary read path (``access_patient``, action "read"): the mass-reading
detection counts "read" entries per person, and a DPO's hard limit is 75 patients in
10 minutes; one batch of 500 letters would lock the DPO at once, and every later read
for an hour, in the middle of a 72-hour legal deadline. The "notify" read is bound to
its purpose instead: the patients read are exactly those the recorded scan matched
(fixed when the breach was recorded; the reader chooses none of them), only a DPO or lab
manager reaches it, and each patient still sees the entry in their access history
(coffre.audit.history labels it). The detection still guards every other read.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.utils import timezone
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table

from coffre.audit import log
from coffre.breach.models import Breach, Notification, NotificationKind
from coffre.breach.notifications import CATEGORY_LABELS, CHUNK, stored_report, texts
from coffre.identity.access import patients_for
from coffre.identity.registry import open_patient
from coffre.labwork.pdf import CREATOR, STYLES, markup, paragraph_style, pdf_text
from coffre.tenancy.actors import LabActor
from coffre.tenancy.capabilities import require

NOTIFY_ACTION = "notify"
LETTER_FIELDS = ("sex", "birth_name", "used_name", "first_names", "address", "postal_code",
                 "city", "email")
SUBJECT = "Information sur une violation de vos données personnelles"


@dataclass
class Addressee:
    patient_id: uuid.UUID
    salutation: str  # "Madame", "Monsieur", "Madame, Monsieur"
    name: str  # "Claire MARTIN"
    address: list[str]
    email: str

    def __repr__(self) -> str:  # never print a name or an address by accident
        return f"<Addressee {self.patient_id}>"


def patient_notes(breach: Breach, patient_ids: Iterable[uuid.UUID] | None = None
                  ) -> list[Notification]:
    notes = breach.notifications.filter(kind=NotificationKind.PATIENT)
    if patient_ids is not None:
        notes = notes.filter(patient_id__in=list(patient_ids))
    return list(notes.order_by("pk"))


def addressees(actor: LabActor, breach: Breach,
               patient_ids: Iterable[uuid.UUID] | None = None) -> list[Addressee]:
    """Decrypt the names and addresses of the breach's patients (all, or these ones
    among them); one "notify" entry per patient read. Others' ids are ignored."""
    require(actor, "breach.record", PermissionError)
    if actor.lab_id != breach.lab_id:
        raise PermissionError("this breach belongs to another laboratory")
    wanted = [n.patient_id for n in patient_notes(breach, patient_ids)]
    people: list[Addressee] = []
    for start in range(0, len(wanted), CHUNK):
        chunk = wanted[start:start + CHUNK]
        rows = patients_for(actor).filter(id__in=chunk).order_by("id")
        read = [_addressee(open_patient(row, LETTER_FIELDS)) for row in rows]
        log.record(actor, NOTIFY_ACTION, [a.patient_id for a in read], kind="breach_letter",
                   purpose=f"breach {breach.pk}: art. 34 notification")
        people += read
    order = {pid: i for i, pid in enumerate(wanted)}
    return sorted(people, key=lambda a: order[a.patient_id])


def _addressee(record) -> Addressee:
    salutation = {"F": "Madame", "M": "Monsieur"}.get(record.sex or "", "Madame, Monsieur")
    first = (record.first_names or "").split(" ")[0]
    family = (record.used_name or record.birth_name or "").upper()
    city = " ".join(part for part in (record.postal_code, (record.city or "").upper()) if part)
    return Addressee(record.id, salutation, f"{first} {family}".strip(),
                     [line for line in (record.address, city) if line], record.email or "")


# --- the text ---------------------------------------------------------------------------

def advice(categories: list[str]) -> list[str]:
    """What the patient can do, for the categories the file holds."""
    tips = ["Soyez vigilant(e) face aux courriels, SMS ou appels qui citeraient votre "
            "laboratoire, vos analyses ou votre médecin pour vous inspirer confiance : le "
            "laboratoire ne vous demandera jamais vos mots de passe, codes ou coordonnées "
            "bancaires.",
            "Ne cliquez pas sur les liens et n'ouvrez pas les pièces jointes de messages "
            "inattendus ; en cas de doute, appelez le laboratoire au numéro habituel."]
    if "credentials" in categories:
        tips.append("Changez le mot de passe de votre compte patient, et celui de tout autre "
                    "service où vous utilisiez le même mot de passe.")
    if "nir" in categories or "insurance" in categories:
        tips.append("Surveillez vos relevés d'assurance maladie (compte ameli) et signalez "
                    "à votre caisse tout remboursement que vous ne reconnaissez pas.")
    if "contact" in categories or "address" in categories:
        tips.append("Méfiez-vous des courriers ou colis inattendus réclamant un paiement.")
    tips.append("Vous pouvez porter réclamation auprès de la CNIL (www.cnil.fr).")
    return tips


def letter_sections(breach: Breach) -> list[tuple[str, list[str]]]:
    """The letter's body, the same for every patient of the breach (titles, paragraphs)."""
    report, text, lab = stored_report(breach), texts(breach), breach.lab
    aware = timezone.localtime(breach.aware_at).strftime("%d/%m/%Y")
    data = [CATEGORY_LABELS.get(c, c) for c in report.categories] or ["données d'identité"]
    contact = text["dpo_contact"] or (f"par courrier au laboratoire {lab.name}, à "
                                      "l'attention du délégué à la protection des données")
    return [
        ("Ce qui s'est passé", [
            f"Le {aware}, le laboratoire {lab.name} a appris qu'un fichier contenant des "
            "données de ses patients circulait sans autorisation. Vos données figurent "
            "dans ce fichier. Nous vous en informons comme la loi nous y oblige (article "
            "34 du règlement général sur la protection des données).",
            text["nature"]]),
        ("Les données vous concernant", ["Le fichier contient les catégories de données "
                                         "suivantes : " + ", ".join(data) + "."]),
        ("Les conséquences possibles", text["consequences"].splitlines()),
        ("Ce que nous vous conseillons", advice(report.categories)),
        ("Ce que nous avons fait", [text["measures_taken"], text["measures_proposed"]]),
        ("Pour toute question", ["Vous pouvez joindre notre délégué à la protection des "
                                 f"données : {contact}."]),
    ]


def email_text(breach: Breach, person: Addressee) -> str:
    lines = [f"Objet : {SUBJECT}", "", f"{person.salutation} {person.name},", ""]
    for title, paragraphs in letter_sections(breach):
        lines += [title.upper(), *[p for p in paragraphs if p], ""]
    lines += ["Nous vous prions de nous excuser pour cet incident.", "",
              f"{breach.lab.name}", ""]
    return "\n".join(lines)


# --- PDF --------------------------------------------------------------------------------

_SIDE = 20 * mm
_SECTION = paragraph_style("breach_section", fontName="Helvetica-Bold", fontSize=10.5, leading=14,
                  spaceBefore=5, spaceAfter=2, textColor="#1F3A5F")
_BODY = paragraph_style("breach_body", fontSize=10, leading=13.5, spaceAfter=3)
_TIP = paragraph_style("breach_tip", fontSize=10, leading=13.5, leftIndent=10, bulletIndent=0,
              spaceAfter=2)


def _letter(breach: Breach, person: Addressee,
            sections: list[tuple[str, list[str]]]) -> list[Flowable]:
    lab = breach.lab
    head = [Paragraph(markup(lab.name), STYLES["lab_name"]),
            Paragraph("<br/>".join(map(markup, lab.address.splitlines())), STYLES["lab"]),
            Paragraph(f"FINESS {markup(lab.finess)}", STYLES["lab"])]
    # The address sits where a C5/6 window envelope shows it (right, 45-90 mm from top).
    window = [Paragraph(markup(person.salutation + " " + person.name), STYLES["patient"]),
              *[Paragraph(markup(line), STYLES["ident"]) for line in person.address]]
    story: list[Flowable] = [
        Table([[head, window]], colWidths=[90 * mm, 80 * mm],
              style=[("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0),
                     ("TOPPADDING", (1, 0), (1, 0), 28 * mm)]),
        Spacer(0, 10 * mm),
        Paragraph(markup("Le " + timezone.localtime().strftime("%d/%m/%Y")), _BODY),
        Paragraph(f"<b>Objet : {markup(SUBJECT)}</b>", _BODY),
        Spacer(0, 3 * mm),
        Paragraph(markup(f"{person.salutation},"), _BODY),
    ]
    for title, paragraphs in sections:
        story.append(Paragraph(markup(title), _SECTION))
        bullet = title == "Ce que nous vous conseillons"
        story += [Paragraph(markup(p), _TIP, bulletText="•" if bullet else None)
                  for p in paragraphs if p]
    story += [Spacer(0, 4 * mm),
              Paragraph("Nous vous prions de nous excuser pour cet incident et vous prions "
                        f"d'agréer, {markup(person.salutation)}, l'expression de nos "
                        "salutations distinguées.", _BODY),
              Spacer(0, 4 * mm), Paragraph(markup(lab.name), _BODY)]
    return story


def render_letters(breach: Breach, people: list[Addressee]) -> bytes:
    """One letter per person, each starting on a new page (a batch to print). The PDF
    metadata names the breach, never a patient."""
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=_SIDE, rightMargin=_SIDE,
                            topMargin=15 * mm, bottomMargin=15 * mm,
                            title=pdf_text(f"Violation {breach.pk} : information des "
                                            "patients"),
                            author=pdf_text(breach.lab.name), subject=SUBJECT,
                            creator=CREATOR, producer=CREATOR, lang="fr-FR")
    sections = letter_sections(breach)
    story: list[Flowable] = []
    for index, person in enumerate(people):
        if index:
            story.append(PageBreak())
        story += _letter(breach, person, sections)
    if not story:
        story = [Paragraph("Aucun patient à informer.", _BODY)]
    doc.build(story)
    return buffer.getvalue()


def letters_pdf(actor: LabActor, breach: Breach,
                patient_ids: Iterable[uuid.UUID] | None = None) -> bytes:
    """The letters of the breach's patients (all, or these), read and logged now."""
    return render_letters(breach, addressees(actor, breach, patient_ids))


def emails(actor: LabActor, breach: Breach) -> list[tuple[Addressee, str]]:
    """The email texts, for the breach's patients who have an email address."""
    return [(person, email_text(breach, person))
            for person in addressees(actor, breach) if person.email]
