"""``coffre export``: request, approve, refuse, run, fetch, purge-expired, list.

The staff pages (coffre/exports/views.py) request, approve and refuse; producing and
handing over the file stay with the administrator here (run, fetch).
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from coffre.cli import BadInput, CommandError, command, print_json_lines


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text}") from None


def add_arguments(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="controlled, approved, encrypted exports"
                            ).add_subparsers(dest="export_command", required=True)
    p = export.add_parser("request", help="ask for an export (a second person approves it)")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--purpose", required=True, metavar="TEXT")
    p.add_argument("--recipient", required=True, metavar="NAME")
    p.add_argument("--recipient-key", required=True, metavar="AGE_PUBLIC_KEY",
                   help="the recipient's age X25519 public key (age1...)")
    p.add_argument("--fields", required=True, metavar="COLUMNS",
                   help="registry CSV columns, comma-separated (e.g. nir,birth_name)")
    p.add_argument("--from", dest="period_from", required=True, type=_date,
                   metavar="YYYY-MM-DD")
    p.add_argument("--to", dest="period_to", required=True, type=_date, metavar="YYYY-MM-DD")
    p.add_argument("--format", choices=("csv", "ndjson"), default="csv",
                   help="csv (default) or ndjson: FHIR Bulk Data, one Patient per line")
    p.add_argument("--patients", type=Path, metavar="FILE",
                   help="only these patients (one internal UUID per line)")
    p.add_argument("--by", metavar="USERNAME",
                   help="the requesting account (a member of the lab); default os:<user>")
    for name, text in (("approve", "approve (a lab manager, or the DPO above the lab's "
                                   "threshold; never the requester)"),
                       ("refuse", "refuse a request (lab manager or DPO)")):
        p = export.add_parser(name, help=text)
        p.add_argument("id")
        p.add_argument("--by", required=True, metavar="USERNAME")
    p = export.add_parser("run", help="produce the encrypted file of an approved export")
    p.add_argument("id")
    p.add_argument("--days", type=int, default=7, help="days before the staged file is "
                                                       "deleted (default 7)")
    p = export.add_parser("fetch", help="copy the encrypted file out; deletes it from staging")
    p.add_argument("id")
    p.add_argument("--out", required=True, type=Path, metavar="FILE")
    export.add_parser("purge-expired", help="delete staged files past their expiry")
    p = export.add_parser("list", help="the lab's exports, one JSON object per line")
    p.add_argument("--lab", required=True, metavar="FINESS")


def _lab(finess: str):
    from coffre.labs.services import LabError, lab_by_finess

    try:
        return lab_by_finess(finess)
    except LabError as exc:
        raise BadInput(str(exc)) from None


@command("export")
def export(args: argparse.Namespace) -> int:
    from coffre.exports import services
    from coffre.labs.tenancy import cli_actor

    try:
        return _dispatch(args, services, cli_actor)
    except services.ExportError as exc:
        raise CommandError(str(exc)) from None


def _dispatch(args, services, cli_actor) -> int:
    action = args.export_command
    if action == "request":
        lab = _lab(args.lab)
        ids = None
        if args.patients is not None:
            try:
                ids = args.patients.read_text().splitlines()
            except OSError as exc:
                raise BadInput(f"{args.patients}: {exc.strerror}") from None
        requester = cli_actor(lab.id).person
        if args.by:
            if services._person_in_lab(args.by, lab) is None:
                raise BadInput(f"{args.by} is not an active member of lab {lab.finess}")
            requester = args.by
        try:
            created = services.request_export(
                lab, purpose=args.purpose, recipient=args.recipient,
                recipient_key=args.recipient_key, fields=args.fields,
                period_from=args.period_from, period_to=args.period_to, patient_ids=ids,
                requested_by=requester, format=args.format)
        except services.ExportError as exc:
            raise BadInput(str(exc)) from None
        print_json_lines([{"id": created.pk, "state": created.state,
                           "size_estimate": created.size_estimate,
                           "needs": "dpo" if created.size_estimate > services.dpo_threshold(
                               lab.id) else "lab_manager or dpo"}])
        return 0
    if action in {"approve", "refuse"}:
        done = getattr(services, action)(args.id, args.by)
        print_json_lines([{"id": done.pk, "state": done.state, "by": args.by}])
        return 0
    if action == "run":
        done = services.run(args.id, days=args.days)
        print_json_lines([{"id": done.pk, "state": done.state, "patients": done.rows_exported,
                           "file": str(services.staged_file(done)),
                           "expires_at": done.expires_at.isoformat()}])
        return 0
    if action == "fetch":
        done = services.fetch(args.id, args.out)
        print_json_lines([{"id": done.pk, "state": done.state, "file": str(args.out)}])
        return 0
    if action == "purge-expired":
        print_json_lines([{"id": pk, "state": "expired"} for pk in services.purge_expired()])
        return 0
    print_json_lines(services.listing(_lab(args.lab)))
    return 0
