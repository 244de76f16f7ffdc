"""``coffre prescriber add``: prescriber portal accounts."""

from __future__ import annotations

import argparse
import sys

from coffre.cmdkit import BadInput, command, print_json_lines


def add_arguments(sub: argparse._SubParsersAction) -> None:
    prescriber = sub.add_parser("prescriber", help="prescriber portal accounts").add_subparsers(
        dest="prescriber_command", required=True)
    p = prescriber.add_parser("add", help="an account for a doctor; prints a temporary "
                                          "password (second factor enrolled at first login)")
    p.add_argument("--rpps", required=True, metavar="RPPS")
    p.add_argument("--username", required=True)


@command("prescriber")
def prescriber(args: argparse.Namespace) -> int:
    from coffre.portal.prescriber import InvalidPrescriber, add_prescriber

    try:
        account, password = add_prescriber(args.rpps, args.username)
    except InvalidPrescriber as exc:
        raise BadInput(f"account refused: {exc}") from None
    print_json_lines([{"username": account.user.username, "rpps": account.rpps,
                       "temporary_password": password}])
    print("give the temporary password to the doctor in person; at first login they "
          "choose their own password, then enroll an authenticator", file=sys.stderr)
    return 0

