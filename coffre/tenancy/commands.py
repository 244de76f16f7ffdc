"""``coffre lab add|list``: laboratories."""

from __future__ import annotations

import argparse
import logging

from coffre.cmdkit import CommandError, command, print_json_lines

logger = logging.getLogger("coffre.cli")


def add_arguments(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser("lab", help="laboratories").add_subparsers(dest="lab_command",
                                                                    required=True)
    p = lab.add_parser("add")
    p.add_argument("--finess", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--address", default="")
    p.add_argument("--planned-patients", type=int, default=None, metavar="N",
                   help="patients the lab plans to hold: sizes its blind indexes "
                        "(default COFFRE_PLANNED_PATIENTS_PER_LAB, 20,000)")
    lab.add_parser("list")


@command("lab")
def lab(args: argparse.Namespace) -> int:
    from coffre.tenancy.models import Lab
    from coffre.tenancy.services import LabError, add_lab

    if args.lab_command == "add":
        try:
            created = add_lab(args.finess, args.name, args.address, args.planned_patients)
        except LabError as exc:
            raise CommandError(str(exc)) from None
        logger.info("lab added: %s", created.finess)
        print_json_lines([{"finess": created.finess, "name": created.name}])
        return 0
    print_json_lines([{"finess": lab.finess, "name": lab.name, "address": lab.address}
                      for lab in Lab.objects.order_by("finess")])
    return 0

