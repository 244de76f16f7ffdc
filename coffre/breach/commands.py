"""``coffre breach ...``: scan leaked files (and, from coffre.breach's other modules,
the breach record and its notification drafts).

Sub-commands hang off one ``breach`` group: a module adds its own with
``p = breach_parsers(sub).add_parser("record", ...)`` inside ``add_arguments``, and
registers a handler on ``args.breach_command`` in ``HANDLERS``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from coffre import cmdkit
from coffre.cmdkit import BadInput, CommandError, command, print_json_lines, write_private

if TYPE_CHECKING:
    from coffre.tenancy.actors import LabActor

HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {}
HELPER_BYTES = 2_000_000  # below, forking a helper costs more than it saves
_GROUP: dict[int, argparse._SubParsersAction] = {}


def breach_parsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The ``breach`` group's sub-parsers (created once per top-level parser)."""
    group = _GROUP.get(id(sub))
    if group is None:
        parser = sub.add_parser("breach", help="leaked files: scan, attribute, notify")
        group = _GROUP[id(sub)] = parser.add_subparsers(dest="breach_command", required=True)
    return group


def add_arguments(sub: argparse._SubParsersAction) -> None:
    p = breach_parsers(sub).add_parser(
        "scan", help="read leaked files, match their rows to this installation's patients "
                     "and attribute them (canaries, export watermarks)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="CSV/TSV (any common encoding and delimiter), XLSX, JSON, NDJSON "
                        "or SQL dump")
    p.add_argument("--lab", metavar="FINESS", help="match only this lab's patients")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_record_arguments(sub)  # record, list, drafts: further down


@command("breach")
def breach(args: argparse.Namespace) -> int:
    handler = HANDLERS.get(args.breach_command)
    if handler is None:
        raise CommandError(f"unknown breach command {args.breach_command}")
    return handler(args)


def scan(args: argparse.Namespace) -> int:
    from coffre.breach.readers import BreachScanError
    from coffre.breach.scan import scan_files
    from coffre.progress import bars

    lab_id = None
    if args.lab:
        from coffre.tenancy.models import Lab

        lab = Lab.objects.filter(finess=args.lab.strip()).first()
        if lab is None:
            raise BadInput(f"--lab: no lab with FINESS {args.lab}")
        lab_id = lab.id
    # A large file is read and hashed here while helper processes confirm the
    # candidates (see coffre.breach.scan._Confirmer): confirming is the larger part.
    size = sum(path.stat().st_size for path in args.files if path.is_file())
    helpers = min(2, os.cpu_count() or 1) if size >= HELPER_BYTES else 0
    try:
        with bars() as add:
            report = scan_files(args.files, progress=add("rows scanned", None),
                                lab_id=lab_id, helpers=helpers)
    except BreachScanError as exc:
        raise BadInput(str(exc)) from None
    if args.json:
        data = report.to_dict()
        data.pop("matches")  # internal ids: for the breach record, not a terminal
        data["patients_affected"] = report.patients_affected()
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(render(report))
    return 0


HANDLERS["scan"] = scan


def render(report) -> str:
    """The report as plain text: counts, labs, categories, evidence. No value of the
    file or of a patient appears in it."""
    lines = [f"Files: {len(report.files)}"]
    for f in report.files:
        lines.append(f"  {f['name']}: {f['format']}, {f['rows']:,} rows, {f['bytes']:,} "
                     f"bytes, sha256 {f['sha256']}")
    lines += [f"Rows read: {report.rows_read:,}",
              f"Rows matched: {report.rows_matched:,}",
              f"Patients affected: {report.patients_affected():,}"]
    for lab in report.labs:
        levels = ", ".join(f"{level} {n:,}" for level, n in lab.by_confidence.items())
        lines.append(f"  lab {lab.finess} ({lab.name}): {lab.patients:,} patients "
                     f"({levels})")
    lines.append("Categories of data: " + (", ".join(report.categories) or "none"))
    lines.append("Columns recognised:")
    for c in report.columns:
        lines.append(f"  {c.file} / {c.column}: {c.kind} ({c.category}, "
                     f"{c.share:.0%} of cells)")
    lines.append("Evidence:")
    if not report.evidence:
        from coffre.breach.attribution import NO_EVIDENCE

        lines.append(f"  {NO_EVIDENCE}")
    for e in report.evidence:
        lines.append(f"  [{e.kind}, {e.strength}] {e.statement}")
    return "\n".join(lines)


# --- breach record, list, drafts (the breach record and its notifications) -------------

def add_record_arguments(sub: argparse._SubParsersAction) -> None:
    """``record``, ``list`` and ``drafts`` under ``coffre breach``."""
    breach = breach_parsers(sub)
    p = breach.add_parser("record", help="scan leaked files and record the breach of a lab "
                                         "(with its CNIL and patient drafts)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--aware-at", metavar="YYYY-MM-DDTHH:MM",
                   help="when the lab became aware (local time; default now): the CNIL "
                        "deadline is 72 hours later")
    p.add_argument("--by", required=True, metavar="USERNAME",
                   help="the lab's DPO (or lab manager) recording it")
    p = breach.add_parser("list", help="a lab's breaches, one JSON object per line")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p = breach.add_parser("drafts", help="write a breach's CNIL text, letters PDF and "
                                         "emails (reads the patients' names, logged)")
    p.add_argument("id")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--by", required=True, metavar="USERNAME",
                   help="the lab's DPO, in whose name the patients are read")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")


def _record_actor(username: str, lab) -> LabActor:
    from coffre.accounts.models import Membership
    from coffre.tenancy.actors import LabActor
    from coffre.tenancy.capabilities import may

    membership = Membership.objects.filter(user__username=username, lab=lab,
                                           user__is_active=True).first()
    if not may(membership, "breach.record"):
        raise BadInput(f"{username} is not the DPO or a lab manager of lab {lab.finess}")
    return LabActor(person=username, lab_id=lab.id, role=membership.role, channel="cli")


def _aware_at(text: str | None):
    import datetime as dt

    from django.utils import timezone

    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--aware-at is not a date and time (YYYY-MM-DDTHH:MM): {text}"
                       ) from None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def handle_record(args: argparse.Namespace) -> int:
    """``coffre breach record|list|drafts``; the vault is open."""
    from coffre.breach import notifications

    try:
        if args.breach_command == "record":
            return _record(args, notifications)
        if args.breach_command == "list":
            return _list(args, notifications)
        return _drafts(args, notifications)
    except notifications.BreachError as exc:
        raise BadInput(str(exc)) from None


def _record(args: argparse.Namespace, notifications) -> int:
    from coffre.breach.readers import BreachScanError

    lab = cmdkit.lab(args.lab)
    actor = _record_actor(args.by, lab)
    try:
        breach = notifications.scan_and_record(actor, lab, args.files,
                                               aware_at=_aware_at(args.aware_at))
    except BreachScanError as exc:
        raise BadInput(f"{exc} (no breach was recorded)") from None
    print_json_lines([_summary(breach, notifications)])
    return 0


def _summary(breach, notifications) -> dict:
    from django.utils.timezone import localtime

    report, due = notifications.stored_report(breach), notifications.deadline(breach)
    return {"id": breach.pk, "lab": breach.lab.finess, "status": breach.status,
            "aware_at": localtime(breach.aware_at).isoformat(),
            "deadline": localtime(due.due).isoformat(),
            "deadline_state": due.text, "late": due.late, "rows_read": report.rows_read,
            "patients": report.patients_affected(), "categories": report.categories,
            "letters": breach.notifications.filter(kind="patient").count()}


def _list(args: argparse.Namespace, notifications) -> int:
    lab = cmdkit.lab(args.lab)
    print_json_lines([_summary(b, notifications) for b in notifications.breaches_of(lab.id)])
    return 0


def _drafts(args: argparse.Namespace, notifications) -> int:
    from coffre.breach import letters

    lab = cmdkit.lab(args.lab)
    actor = _record_actor(args.by, lab)
    breach = notifications.access_breach(actor, args.id)
    out = args.out
    if out.exists() and any(out.iterdir()):
        raise BadInput(f"{out} is not empty: give a new directory")
    people = letters.addressees(actor, breach)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    out.chmod(0o700)  # names and addresses in clear: the operator's eyes only
    write_private(out / "cnil.txt", notifications.cnil_text(breach))
    write_private(out / "courriers.pdf", letters.render_letters(breach, people))
    mails = [{"to": p.email, "patient_id": str(p.patient_id),
              "text": letters.email_text(breach, p)} for p in people if p.email]
    write_private(out / "courriels.jsonl",
                  "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in mails))
    print_json_lines([{"id": breach.pk, "out": str(out), "letters": len(people),
                       "emails": len(mails)}])
    return 0


for _name in ("record", "list", "drafts"):
    HANDLERS[_name] = handle_record
