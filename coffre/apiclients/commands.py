"""``coffre api-client``: add, list, rotate, revoke, purge-tokens.

``add`` and ``rotate`` print the client secret once; Coffre keeps only its digest.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from coffre import cmdkit
from coffre.cmdkit import BadInput, command, print_json_lines

if TYPE_CHECKING:
    from coffre.tenancy.actors import LabActor


def add_arguments(sub: argparse._SubParsersAction) -> None:
    api = sub.add_parser("api-client", help="FHIR API clients (OAuth2 client credentials)"
                         ).add_subparsers(dest="api_client_command", required=True)
    p = api.add_parser("add", help="register a client; prints its id and secret once")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--name", required=True, help="the software (e.g. 'DPI Clinique Nord')")
    p.add_argument("--scopes", required=True, metavar="SCOPES",
                   help="space-separated, e.g. 'system/Observation.read system/*.write'")
    p.add_argument("--by", metavar="USERNAME",
                   help="the lab member registering it (recorded); default os:<user>")
    p = api.add_parser("list", help="the lab's clients, one JSON object per line")
    p.add_argument("--lab", required=True, metavar="FINESS")
    for name, text in (("rotate", "a new secret, printed once; the old one and its tokens "
                                  "stop at once"),
                       ("revoke", "the client and its tokens stop at once")):
        p = api.add_parser(name, help=text)
        p.add_argument("client_id", metavar="CLIENT_ID")
        p.add_argument("--by", metavar="USERNAME")
    api.add_parser("purge-tokens", help="delete expired and revoked access tokens (cron)")


def _actor(lab_id: int, by: str | None) -> LabActor:
    """The CLI's actor, or a member of the lab named by --by."""
    from coffre.accounts.models import Membership
    from coffre.tenancy.actors import LabActor, cli_actor

    if not by:
        return cli_actor(lab_id)
    membership = Membership.objects.filter(user__username=by, user__is_active=True,
                                           lab_id=lab_id).first()
    if membership is None:
        raise BadInput(f"{by} is not an active member of this lab")
    return LabActor(person=by, lab_id=lab_id, role=membership.role, channel="cli")


def _row(client) -> dict:
    return {"client_id": client.client_id, "name": client.name, "scopes": client.scopes,
            "created_by": client.created_by, "created_at": client.created_at.isoformat(),
            "state": "active" if client.active else "revoked"}


@command("api-client")
def api_client(args: argparse.Namespace) -> int:
    from coffre.apiclients import services
    from coffre.apiclients.scopes import ScopeError

    action = args.api_client_command
    try:
        if action == "add":
            lab = cmdkit.lab(args.lab)
            client, secret = services.register_client(lab, args.name, args.scopes,
                                                      _actor(lab.id, args.by))
            print_json_lines([{**_row(client), "client_secret": secret}])
        elif action == "list":
            print_json_lines([_row(c) for c in services.clients_of(cmdkit.lab(args.lab).id)])
        elif action in ("rotate", "revoke"):
            client = services.client_of_lab(None, args.client_id)
            by = _actor(client.lab_id, args.by)
            if action == "revoke":
                services.revoke_client(client, by)
                print_json_lines([_row(client)])
            else:
                print_json_lines([{**_row(client),
                                   "client_secret": services.rotate_secret(client, by)}])
        else:
            print_json_lines([{"purged_tokens": services.purge_expired()}])
    except (services.ApiClientError, ScopeError) as exc:
        raise BadInput(str(exc)) from None
    return 0
