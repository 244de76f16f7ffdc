"""``coffre keys``: rotation of the master and lab keys, re-encryption of patient data,
retirement of old key versions, and where each key version is used.

Every subcommand prints JSON lines on stdout (progress bars go to stderr) and can be
run again after an interruption: it continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import re

from coffre.cli import BadInput, CommandError, command, print_json_lines
from coffre.progress import bars

HEX_ID = re.compile(r"^[0-9a-f]{8}$")


def add_arguments(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="key rotation, re-encryption and key status")
    cmds = keys.add_subparsers(dest="keys_command", required=True)

    p = cmds.add_parser("rotate", help="re-wrap keys under a new master or lab key "
                                       "(never re-encrypts data; resumable)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--master", action="store_true",
                        help="add a master key version and re-wrap the installation and "
                             "lab keys")
    target.add_argument("--lab", metavar="FINESS",
                        help="make a new lab key active and re-wrap the lab's patient keys")
    p.add_argument("--batch", type=int, default=200, help="rows per batch (default 200)")

    p = cmds.add_parser("retire", help="remove an old key version nothing uses any more")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--master", metavar="ID", help="master key version to drop from "
                                                        "the key file")
    target.add_argument("--lab", metavar="FINESS", help="lab whose old key to destroy")
    p.add_argument("--key-id", metavar="HEX", help="the lab key to destroy (with --lab)")

    p = cmds.add_parser("reencrypt", help="give each patient a new data key and re-seal "
                                          "all their values (resumable)")
    p.add_argument("--lab", metavar="FINESS", help="one lab only (default: every lab)")

    cmds.add_parser("status", help="rows using each master and lab key version")


def _hex_id(value: str, what: str) -> str:
    value = value.strip().lower()
    if not HEX_ID.match(value):
        raise BadInput(f"{what} must be 8 hexadecimal digits, not {value!r}")
    return value


def _lab_id(finess: str) -> int:
    from coffre.labs.services import LabError, lab_by_finess

    try:
        return lab_by_finess(finess).id
    except LabError as exc:
        raise BadInput(str(exc)) from None


def _line(row: dict) -> None:
    print(json.dumps(row, ensure_ascii=False), flush=True)


@command("keys")
def keys(args: argparse.Namespace) -> int:
    from coffre.keyring import rotation
    from coffre.labs import rls

    rls.open_all()  # an administrator on the server: every lab
    try:
        if args.keys_command == "status":
            print_json_lines(rotation.status())
            return 0
        if args.keys_command == "rotate":
            if args.batch < 1:
                raise BadInput("--batch must be at least 1")
            if args.master:
                report = rotation.rotate_master(
                    batch=args.batch,
                    on_batch=lambda done, seen: _line({"event": "progress",
                                                       "rewrapped": done}))
            else:
                lab_id = _lab_id(args.lab)
                with bars() as add:
                    report = rotation.rotate_lab(lab_id, batch=args.batch, add_bar=add)
                _line({**report.as_row(), "lab": args.lab})
                return 0 if report.remaining == 0 else 1
            _line(report.as_row())
            return 0 if report.remaining == 0 else 1
        if args.keys_command == "retire":
            if args.master:
                if args.key_id:
                    raise BadInput("--key-id goes with --lab")
                key_id = _hex_id(args.master, "--master")
                rotation.retire_master(key_id)
                _line({"event": "retired", "master_key_id": key_id})
                return 0
            if not args.key_id:
                raise BadInput("--lab needs --key-id HEX (see `coffre keys status`)")
            key_id = _hex_id(args.key_id, "--key-id")
            rotation.retire_lab_key(_lab_id(args.lab), key_id)
            _line({"event": "retired", "lab": args.lab, "lab_key_id": key_id})
            return 0
        lab_id = _lab_id(args.lab) if args.lab else None
        with bars() as add:
            report = rotation.reencrypt(lab_id, add_bar=add)
        _line({**report.as_row(), "lab": args.lab})
        return 0
    except rotation.RotationError as exc:
        raise CommandError(str(exc)) from None
