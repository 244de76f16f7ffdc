"""``coffre audit verify|auditor-key|checkpoint|unlock|alerts`` and ``coffre canary
plant|list``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from coffre import cmdkit
from coffre.cmdkit import CommandError, command, print_json_lines
from coffre.progress import bars

logger = logging.getLogger("coffre.cli")


def add_arguments(sub: argparse._SubParsersAction) -> None:
    audit = sub.add_parser("audit", help="the access log").add_subparsers(dest="audit_command",
                                                                         required=True)
    p = audit.add_parser("verify", help="check the whole chain against the signed checkpoints")
    p.add_argument("--auditor-key", type=Path, metavar="FILE",
                   help="the auditor's private key, as `coffre init` printed it (- reads it "
                        "from standard input)")
    p = audit.add_parser("auditor-key", help="make the auditor's key pair (before any entry)")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="write the private key there (0600, refused inside COFFRE_HOME) "
                        "instead of printing it once")
    audit.add_parser("checkpoint", help="write a signed checkpoint of the chain head now")
    p = audit.add_parser("unlock", help="unlock an account locked for mass reading")
    p.add_argument("person", help="user name, os:<user> or api:<client>")
    p = audit.add_parser("alerts", help="alerts, one JSON object per line")
    p.add_argument("--open", action="store_true", help="only those not acknowledged")

    canary = sub.add_parser("canary", help="canary patients").add_subparsers(
        dest="canary_command", required=True)
    p = canary.add_parser("plant", help="add canary patients to every lab (or one)")
    p.add_argument("--per-lab", type=int, default=3)
    p.add_argument("--lab", metavar="FINESS")
    canary.add_parser("list", help="how many canaries each lab has (never their values)")


@command("audit")
def audit(args: argparse.Namespace) -> int:
    from coffre.audit import chain, detection
    from coffre.audit.models import AccessEvent, Alert
    from coffre.vault import VaultError

    if args.audit_command == "auditor-key":
        from coffre.setup import auditor_key_lines

        try:
            private = chain.create_auditor_key(args.out)
        except chain.VerifyError as exc:
            raise CommandError(str(exc)) from None
        if args.out is None:
            print("\n".join(auditor_key_lines(private)))
        else:
            print(f"auditor private key written to {args.out} (0600): keep it off this "
                  "machine")
        return 0
    if args.audit_command == "verify":
        private = _auditor_private(args.auditor_key)
        try:
            with bars() as add:
                report = chain.verify(add("verifying", AccessEvent.objects.count()), private)
        except (chain.VerifyError, VaultError) as exc:
            raise CommandError(f"cannot verify: {exc}") from None
        restores = f", {report.restores} database restore(s)" if report.restores else ""
        print(f"{report.entries} entries read, {report.checkpoints} signed checkpoints"
              f"{restores}")
        for problem in report.problems:
            print(f"PROBLEM: {problem}")
        print("the access log is intact" if report.ok else "the access log has been altered")
        logger.info("audit verify: %s", "intact" if report.ok else "ALTERED")
        return 0 if report.ok else 1
    if args.audit_command == "checkpoint":
        chain.checkpoint_now()
        print(f"checkpoint written to {chain.checkpoint_file()}")
        return 0
    if args.audit_command == "unlock":
        from coffre.tenancy.actors import cli_actor

        try:
            lifted = detection.unlock(args.person, by=cli_actor(None, role="cli"))
        except detection.SelfUnlock as exc:
            raise CommandError(str(exc)) from None
        print(f"{lifted} lock(s) lifted for {args.person}")
        return 0 if lifted else 1
    alerts = Alert.objects.all()
    if args.open:
        alerts = alerts.filter(acknowledged_at__isnull=True)
    print_json_lines([{"id": a.pk, "at": a.at.isoformat(), "lab_id": a.lab_id, "kind": a.kind,
                       "person": a.person, "summary": a.summary,
                       "patient_id": str(a.patient_id) if a.patient_id else None,
                       "acknowledged_by": a.acknowledged_by or None} for a in alerts])
    return 0


def _auditor_private(path: Path | None) -> bytes | None:
    from coffre.audit import chain

    if path is None:
        legacy = chain.default_auditor_private_file()
        if not legacy.exists():
            return None
        # Installations made before `init` printed the key: still read, but said.
        print(f"warning: the auditor's private key lies in {legacy}, under COFFRE_HOME: "
              "move it off this machine (`coffre check --production` fails while it is "
              "there)", file=sys.stderr)
        path = legacy
    stdin = str(path) == "-"
    try:
        return chain.read_auditor_private(sys.stdin.read() if stdin else path.read_text())
    except (OSError, ValueError):
        raise CommandError(f"{'standard input' if stdin else path} is not a readable "
                           "auditor key") from None


@command("canary")
def canary(args: argparse.Namespace) -> int:
    from coffre.audit import canaries
    from coffre.breach import planting
    from coffre.identity.decoys import NoUnusedIdentity
    from coffre.tenancy.actors import cli_actor
    from coffre.tenancy.models import Lab

    labs = [cmdkit.lab(args.lab, code=1)] if getattr(args, "lab", None) else list(Lab.objects.all())
    if args.canary_command == "plant":
        if args.per_lab < 1:
            raise CommandError("--per-lab must be at least 1")
        for target in labs:
            try:
                planting.plant(target.id, args.per_lab, cli_actor(target.id))
            except NoUnusedIdentity as exc:
                raise CommandError(f"{target.finess}: {exc}") from None
            print(f"planted {args.per_lab} canaries in {target.name} ({target.finess})")
        return 0
    counts = {}
    for record in canaries.planted():
        counts[record["lab_id"]] = counts.get(record["lab_id"], 0) + 1
    print_json_lines([{"finess": t.finess, "canaries": counts.get(t.id, 0)} for t in labs])
    return 0

