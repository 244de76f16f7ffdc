"""The data-protection officer's breach pages: the lab's breaches, a new one from leaked
files, a breach's record (deadline, free text, drafts), the CNIL draft, the patients'
letters and emails, and marking drafts sent.

The DPO acts; the lab manager sees the list and the records but reads no patient (the
letters and emails, which decrypt names and addresses, are the DPO's alone). Uploaded
files are scanned from a private temporary directory deleted as soon as the scan ends.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.text import get_valid_filename
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from coffre import config
from coffre.accounts.acting import requires, staff_view
from coffre.breach import letters, notifications, uploads
from coffre.breach.forms import TEXT_LABELS, CnilTextForm, SendForm, TextsForm, UploadForm
from coffre.breach.models import Breach, NotificationKind
from coffre.breach.notifications import CATEGORY_LABELS, CONFIDENCE_LABELS, STRENGTH_LABELS
from coffre.breach.report import ScanReport
from coffre.tenancy.access import RowNotFound
from coffre.tenancy.capabilities import may

SHOWN_NOTES = 200  # patient drafts listed on the page; the batch PDF has them all
# About 26 ms a letter (500 in 13 s measured on the shared 2-core dev machine) and a web
# worker is stopped after 60 s: above this the batch is the operator's job
# (``coffre breach drafts``).
WEB_BATCH_MAX = 1000


def _breach(request: HttpRequest, breach_id: int) -> Breach:
    try:
        return notifications.access_breach(request.actor, breach_id)
    except RowNotFound:
        raise Http404("no such breach") from None


def _scan(request: HttpRequest, uploads: list) -> ScanReport:
    """Scan the uploads from a private temporary directory, removed right after."""
    work = Path(tempfile.mkdtemp(prefix="scan-", dir=config.subdir("tmp")))
    try:
        paths = []
        for index, upload in enumerate(uploads):
            # A folder per file: the scan's report and errors name it as it was sent.
            folder = work / str(index)
            folder.mkdir(mode=0o700)
            path = folder / (get_valid_filename(Path(upload.name).name) or "file")
            with path.open("wb") as out:
                for chunk in upload.chunks():
                    out.write(chunk)
            upload.close()  # a large upload's own temporary file goes now too
            paths.append(path)
        return notifications.run_scan(request.actor, request.membership.lab, paths)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# A file past one of the readers' bounds (coffre.breach.readers), said in the page's
# language; other unreadable files keep the reader's own words.
SCAN_BOUNDS = {
    "json_depth": _lazy("Le fichier %(file)s imbrique ses données JSON sur plus de "
                        "%(limit)s niveaux : ce n'est pas un export de table que l'analyse "
                        "lit."),
    "columns": _lazy("Le fichier %(file)s a plus de %(limit)s colonnes : ce n'est pas une "
                     "table que l'analyse lit."),
    "xlsx_size": _lazy("Le classeur %(file)s se décompresse en %(size_mb)s Mo (au plus "
                       "%(limit_mb)s Mo) : bombe de compression ou classeur trop gros. "
                       "L'administrateur peut l'analyser sur le serveur avec coffre breach "
                       "scan."),
    "xlsx_members": _lazy("Le classeur %(file)s contient %(count)s fichiers internes (au "
                          "plus %(limit)s) : ce n'est pas un classeur ordinaire."),
    "xlsx_strings": _lazy("La table des textes partagés du classeur %(file)s est trop grande "
                          "(au plus %(limit)s textes, %(limit_mb)s Mo) : l'ouvrir épuiserait "
                          "la mémoire du serveur."),
    "xlsx_xml": _lazy("Le classeur %(file)s déclare des entités ou une DTD dans son XML : "
                      "refusé, leur expansion peut épuiser la mémoire."),
}


def _scan_error(error: Exception) -> str:
    bound = SCAN_BOUNDS.get(getattr(error, "code", ""))
    problem = bound % error.params if bound else str(error)
    return _("Fichier illisible : %(problem)s. Aucune violation n'a été enregistrée.") % {
        "problem": problem}


def _upload_refused(request: HttpRequest, refusal: uploads.Refusal) -> HttpResponse:
    """The upload stopped at the size limit: the page again, nothing read or kept."""
    limit = refusal.limit // (1024 * 1024)
    if refusal.name:
        message = _("Le fichier %(name)s dépasse la taille maximale de %(max)s Mo pour la "
                    "page web : l'administrateur l'analyse sur le serveur avec coffre breach "
                    "record.") % {"name": refusal.name, "max": limit}
    else:
        message = _("L'envoi dépasse la taille maximale de %(max)s Mo pour la page web "
                    "(tous les fichiers ensemble) : l'administrateur analyse les plus gros "
                    "sur le serveur avec coffre breach record.") % {"max": limit}
    return render(request, "breach/new.html", {"form": _upload_form(), "upload_error": message},
                  status=413)


def _upload_form(request: HttpRequest | None = None) -> UploadForm:
    """The upload form, bound to the request's data when it has some."""
    data, files = (request.POST, request.FILES) if request else (None, None)
    return UploadForm(data or None, files or None,
                      initial={"aware_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M")})


def report_view(report: ScanReport) -> dict:
    """The report as the pages show it (counts, labels in French)."""
    return {
        "report": report,
        "categories": [CATEGORY_LABELS.get(c, c) for c in report.categories],
        "labs": [{"impact": lab, "levels": [(CONFIDENCE_LABELS[c], lab.by_confidence.get(c, 0))
                                            for c in CONFIDENCE_LABELS]}
                 for lab in report.labs],
        "patients": report.patients_affected(),
        "evidence": [(STRENGTH_LABELS.get(e.strength, e.strength),
                      notifications.evidence_text(e)) for e in report.evidence],
    }


@staff_view
@requires("breach.view")
@require_GET
def breach_list(request: HttpRequest) -> HttpResponse:
    rows = [(b, notifications.deadline(b)) for b in
            notifications.breaches_of(request.membership.lab_id)]
    return render(request, "breach/list.html", {
        "rows": rows, "is_dpo": may(request.membership, "breach.manage")})


@csrf_exempt  # checked in _breach_new, once the body has been read under the size limit
@staff_view
@requires("breach.manage")
@require_http_methods(["GET", "POST"])
def breach_new(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        refusal = uploads.read_limited(request)
        if refusal is not None:
            return _upload_refused(request, refusal)  # changes nothing: no CSRF needed
    return _breach_new(request)


@csrf_protect
def _breach_new(request: HttpRequest) -> HttpResponse:
    form = _upload_form(request)
    if request.method == "POST" and form.is_valid():
        from coffre.breach.scan import BreachScanError

        data = form.cleaned_data
        try:
            report = _scan(request, data["files"])
            breach = notifications.record_breach(
                request.actor, request.membership.lab, report, aware_at=data["aware_at"],
                values={"nature": data["nature"]} if data["nature"].strip() else None)
        except BreachScanError as error:
            form.add_error("files", _scan_error(error))
        except notifications.BreachError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, _("Violation n° %(id)s enregistrée.") % {"id": breach.pk})
            return redirect("breach_detail", breach_id=breach.pk)
    return render(request, "breach/new.html", {"form": form},
                  status=400 if form.is_bound and form.errors else 200)


@staff_view
@requires("breach.view")
@require_GET
def breach_detail(request: HttpRequest, breach_id: int) -> HttpResponse:
    breach = _breach(request, breach_id)
    is_dpo = may(request.membership, "breach.manage")
    notes = breach.notifications.all()
    patients = [n for n in notes if n.kind == NotificationKind.PATIENT]
    text = notifications.texts(breach)
    return render(request, "breach/detail.html", {
        "breach": breach, "deadline": notifications.deadline(breach),
        **report_view(notifications.stored_report(breach)),
        "cnil": next(n for n in notes if n.kind == NotificationKind.CNIL),
        "patient_notes": patients[:SHOWN_NOTES], "more_notes": len(patients) > SHOWN_NOTES,
        "letters": len(patients), "letters_sent": sum(1 for n in patients if n.sent_at),
        "letters_reviewed": sum(1 for n in patients if n.reviewed_by),
        "is_dpo": is_dpo,
        "texts": [(TEXT_LABELS[k], v) for k, v in text.items()],
        "texts_form": TextsForm(initial=text) if is_dpo else None,
        "send_form": SendForm()})


@staff_view
@requires("breach.manage")
@require_POST
def breach_texts(request: HttpRequest, breach_id: int) -> HttpResponse:
    breach = _breach(request, breach_id)
    form = TextsForm(request.POST)
    if form.is_valid():
        notifications.update_texts(request.actor, breach, form.cleaned_data)
        messages.success(request, _("Textes enregistrés."))
    else:
        messages.error(request, _("Textes trop longs : 4 000 caractères au plus par champ."))
    return redirect("breach_detail", breach_id=breach.pk)


@staff_view
@requires("breach.view")
@require_http_methods(["GET", "POST"])
def breach_cnil(request: HttpRequest, breach_id: int) -> HttpResponse:
    breach = _breach(request, breach_id)
    is_dpo = may(request.membership, "breach.manage")
    if request.method == "POST":
        if not is_dpo:
            raise Http404("only the DPO edits")
        form = CnilTextForm(request.POST)
        if form.is_valid():
            notifications.edit_cnil_text(request.actor, breach, form.cleaned_data["body"])
            messages.success(request, _("Texte de la notification enregistré."))
            return redirect("breach_cnil", breach_id=breach.pk)
    text = notifications.cnil_text(breach)
    return render(request, "breach/cnil.html", {
        "breach": breach, "text": text, "is_dpo": is_dpo,
        "cnil": breach.notifications.get(kind=NotificationKind.CNIL),
        "form": CnilTextForm(initial={"body": text}) if is_dpo else None})


def _pdf(body: bytes, name: str) -> HttpResponse:
    response = HttpResponse(body, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@staff_view
@requires("breach.manage")
@require_GET
def breach_letters(request: HttpRequest, breach_id: int) -> HttpResponse:
    breach = _breach(request, breach_id)
    count = breach.notifications.filter(kind=NotificationKind.PATIENT).count()
    if count > WEB_BATCH_MAX:
        messages.error(request, _(
            "%(n)s courriers : trop pour une page web. L'administrateur les produit avec "
            "coffre breach drafts %(id)s --lab FINESS --by VOTRE_COMPTE --out DOSSIER")
            % {"n": count, "id": breach.pk})
        return redirect("breach_detail", breach_id=breach.pk)
    return _pdf(letters.letters_pdf(request.actor, breach),
                f"violation-{breach.pk}-courriers.pdf")


@staff_view
@requires("breach.manage")
@require_GET
def breach_letter(request: HttpRequest, breach_id: int, patient_id: uuid.UUID
                  ) -> HttpResponse:
    breach = _breach(request, breach_id)
    if not letters.patient_notes(breach, [patient_id]):
        raise Http404("no letter for this patient in this breach")
    return _pdf(letters.letters_pdf(request.actor, breach, [patient_id]),
                f"violation-{breach.pk}-courrier-{str(patient_id)[:8]}.pdf")


@staff_view
@requires("breach.manage")
@require_GET
def breach_emails(request: HttpRequest, breach_id: int) -> HttpResponse:
    breach = _breach(request, breach_id)
    return render(request, "breach/emails.html", {
        "breach": breach, "emails": letters.emails(request.actor, breach)})


@staff_view
@requires("breach.manage")
@require_POST
def breach_send(request: HttpRequest, breach_id: int) -> HttpResponse:
    breach = _breach(request, breach_id)
    form = SendForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choisissez ce qui a été envoyé et comment."))
        return redirect("breach_detail", breach_id=breach.pk)
    target, channel = form.cleaned_data["target"], form.cleaned_data["channel"]
    notes = breach.notifications.all()
    if target == "cnil":
        notes = notes.filter(kind=NotificationKind.CNIL)
    elif target == "letters":
        notes = notes.filter(kind=NotificationKind.PATIENT)
    else:
        try:
            notes = notes.filter(kind=NotificationKind.PATIENT, patient_id=uuid.UUID(target))
        except ValueError:
            notes = notes.none()
    done = notifications.mark_sent(request.actor, list(notes), channel)
    messages.success(request, _("%(n)s envoi(s) enregistré(s).") % {"n": done})
    return redirect("breach_detail", breach_id=breach.pk)


@staff_view
@requires("breach.manage")
@require_POST
def breach_review(request: HttpRequest, breach_id: int) -> HttpResponse:
    """The DPO has read a draft (the CNIL's, or the letters' common text)."""
    breach = _breach(request, breach_id)
    kind = {"cnil": NotificationKind.CNIL, "letters": NotificationKind.PATIENT}.get(
        request.POST.get("target", ""))
    if kind is None:
        messages.error(request, _("Choisissez le projet relu."))
    else:
        done = notifications.mark_reviewed(
            request.actor, list(breach.notifications.filter(kind=kind, reviewed_by="")))
        messages.success(request, _("%(n)s projet(s) marqué(s) relu(s).") % {"n": done})
    return redirect("breach_detail", breach_id=breach.pk)
