"""``coffre export``: request, approve, refuse, run, fetch, purge-expired, list.

The staff pages (coffre/exports/views.py) request, approve and refuse; producing and
handing over the file stay with the administrator here (run, fetch).

The command never takes a person's name on trust: a request, run or fetch is the
operating-system user's (``os:<user>``); an approval or refusal signs in as a staff
account (``--as USERNAME``) with its password and second-factor code, asked without echo
on a terminal, else read from two lines of standard input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from coffre import cmdkit
from coffre.cmdkit import BadInput, CommandError, command, print_json_lines


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
    _refuse_by(p)
    for name, text in (("approve", "approve (a lab manager, or the DPO above the lab's "
                                   "threshold; never the requester, nor the operating-"
                                   "system user who requested)"),
                       ("refuse", "refuse a request (lab manager or DPO)")):
        p = export.add_parser(name, help=text)
        p.add_argument("id")
        # Required, but checked after --by so that an old `--by NAME` is told why.
        p.add_argument("--as", dest="username", metavar="USERNAME",
                       help="your staff account; its password and a second-factor code "
                            "are asked (or read from two lines of standard input)")
        _refuse_by(p)
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


def _refuse_by(p: argparse.ArgumentParser) -> None:
    """``--by`` named a person without proving it: it is refused with a pointer."""
    p.add_argument("--by", help=argparse.SUPPRESS)


BY_REFUSED = ("--by is no longer accepted: the command records the operating-system user "
              "who runs it; an approval or a refusal signs in with --as USERNAME (password "
              "and second-factor code)")


@command("export")
def export(args: argparse.Namespace) -> int:
    from coffre.exports import services
    from coffre.tenancy.actors import cli_actor

    try:
        return _dispatch(args, services, cli_actor)
    except services.ExportError as exc:
        raise CommandError(exc.render("en")) from None


def _dispatch(args, services, cli_actor) -> int:
    action = args.export_command
    if getattr(args, "by", None) is not None:
        raise BadInput(BY_REFUSED)
    if action in {"approve", "refuse"} and not args.username:
        raise BadInput(f"export {action}: --as USERNAME is required (your staff account)")
    if action == "request":
        lab = cmdkit.lab(args.lab)
        ids = None
        if args.patients is not None:
            try:
                ids = args.patients.read_text().splitlines()
            except OSError as exc:
                raise BadInput(f"{args.patients}: {exc.strerror}") from None
        requester = cli_actor(lab.id).person
        try:
            created = services.request_export(
                lab, purpose=args.purpose, recipient=args.recipient,
                recipient_key=args.recipient_key, fields=args.fields,
                period_from=args.period_from, period_to=args.period_to, patient_ids=ids,
                requested_by=requester, format=args.format)
        except services.ExportError as exc:
            raise BadInput(exc.render("en")) from None
        print_json_lines([{"id": created.pk, "state": created.state,
                           "size_estimate": created.size_estimate,
                           "needs": "dpo" if created.size_estimate > services.dpo_threshold(
                               lab.id) else "lab_manager or dpo"}])
        return 0
    if action in {"approve", "refuse"}:
        done = _signed(action, args, services, cli_actor(None).person)
        print_json_lines([{"id": done.pk, "state": done.state, "by": done.approved_by
                           if action == "approve" else args.username,
                           "os_user": cli_actor(None).person}])
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
    print_json_lines(services.listing(cmdkit.lab(args.lab)))
    return 0


def _signed(action: str, args, services, os_user: str):
    """Approve or refuse as the staff account the typed credentials prove."""
    from coffre.accounts import stepup

    try:
        credentials = stepup.read_credentials(args.username, sys.stdin)
    except (ValueError, EOFError) as exc:
        raise BadInput(str(exc) or "no credentials on standard input") from None
    try:
        if action == "approve":
            return services.approve(args.id, credentials, channel="cli", os_user=os_user)
        services.check_refusal(args.id, args.username)  # spends no code when refused
        user = stepup.confirm(credentials, stepup.cli_request(os_user))
        return services.refuse(args.id, user.get_username(), channel="cli",
                               address=os_user)
    except stepup.StepUpRefused as exc:
        raise CommandError(f"{args.username}: {exc}; nothing was {action}d") from None
