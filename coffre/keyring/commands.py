"""``coffre keys``: rotation of the master and lab keys, re-encryption of patient data,
retirement of old key versions, and where each key version is used.

Every subcommand prints JSON lines on stdout (progress bars go to stderr) and can be
run again after an interruption: it continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import re

from coffre import cmdkit
from coffre.cmdkit import BadInput, CommandError, command, print_json_lines
from coffre.keyring import ROTATABLE_INSTALLATION_KEYS as ROTATABLE
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
                        help="make a new lab key (and blind-index key) active, re-wrap the "
                             "lab's patient keys and re-index the lab")
    target.add_argument("--installation", metavar="PURPOSE",
                        choices=ROTATABLE,
                        help="new material for an installation key ("
                             + ", ".join(ROTATABLE) + ") and re-seal what it sealed")
    target.add_argument("--index", metavar="FINESS",
                        help="give the lab a new blind-index key (resized with "
                             "--planned-patients) and re-index the lab")
    p.add_argument("--planned-patients", type=int, metavar="N",
                   help="with --index: the lab's planned population, which sizes its "
                        "blind indexes (default: as before)")
    p.add_argument("--batch", type=int, default=200, help="rows per batch (default 200)")

    p = cmds.add_parser("retire", help="remove an old key version nothing uses any more")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--master", metavar="ID", help="master key version to drop from "
                                                        "the key file")
    target.add_argument("--lab", metavar="FINESS", help="lab whose old key to destroy")
    target.add_argument("--installation", metavar="PURPOSE",
                        choices=ROTATABLE,
                        help="installation key whose old version to destroy")
    p.add_argument("--key-id", metavar="HEX", help="the lab or installation key version to "
                                                   "destroy (with --lab or --installation)")

    p = cmds.add_parser("reencrypt", help="give each patient a new data key and re-seal "
                                          "all their values (resumable)")
    p.add_argument("--lab", metavar="FINESS", help="one lab only (default: every lab)")

    p = cmds.add_parser("reindex", help="move blind indexes to each lab's newest index key "
                                        "(resumable; once after upgrading to per-lab keys)")
    p.add_argument("--lab", metavar="FINESS", help="one lab only (default: every lab)")
    p.add_argument("--batch", type=int, default=200, help="patients per batch (default 200)")

    cmds.add_parser("status", help="rows using each master, lab and index key version")


def _hex_id(value: str, what: str) -> str:
    value = value.strip().lower()
    if not HEX_ID.match(value):
        raise BadInput(f"{what} must be 8 hexadecimal digits, not {value!r}")
    return value


def _labs(finess: str | None) -> list[tuple[int, str]]:
    from coffre.tenancy.models import Lab

    if finess:
        return [(cmdkit.lab(finess).id, finess)]
    return list(Lab.objects.order_by("finess").values_list("id", "finess"))


def _reindex(labs: list[tuple[int, str]], batch: int) -> int:
    """Re-index each lab; one JSON line per lab. Exit 1 if any lab is left unfinished."""
    from coffre.identity.models import Patient
    from coffre.lifecycle import reindex

    unfinished = 0
    with bars() as add:
        for lab_id, finess in labs:
            bar = add(f"re-indexing {finess}",
                      Patient.unscoped.filter(lab_id=lab_id).count())
            report = reindex.reindex_lab(lab_id, batch=batch, advance=bar)
            _line({**report.as_row(), "lab": finess})
            unfinished += not report.finished
    return 1 if unfinished else 0


def _rotate_index(lab_id: int, finess: str, planned: int | None, batch: int) -> int:
    """A new blind-index key for the lab (unless a previous one is not complete yet:
    then it resumes), then the re-index."""
    from coffre.keyring import indexes
    from coffre.keyring.models import LabIndexKey

    if planned is not None and planned < 1:
        raise BadInput("--planned-patients must be at least 1")
    newest = LabIndexKey.objects.filter(lab_id=lab_id).order_by("-pk").first()
    if newest is None or newest.complete:
        made = indexes.create_index_key(
            lab_id, planned or (newest.planned_patients if newest else None), complete=False)
        _line({"event": "new_index_key", "lab": finess, "index_key_id": made.key_id,
               "planned_patients": made.planned_patients, "bits": made.bits})
    return _reindex([(lab_id, finess)], batch)


def _line(row: dict) -> None:
    print(json.dumps(row, ensure_ascii=False), flush=True)


@command("keys")
def keys(args: argparse.Namespace) -> int:
    from coffre.keyring import installation, rotation
    from coffre.lifecycle import reencrypt
    from coffre.tenancy import rls

    rls.open_all()  # an administrator on the server: every lab
    try:
        if args.keys_command == "status":
            print_json_lines(rotation.status())
            return 0
        if args.keys_command == "rotate":
            if args.batch < 1:
                raise BadInput("--batch must be at least 1")
            if args.planned_patients is not None and not args.index:
                raise BadInput("--planned-patients goes with --index")
            if args.installation:
                report = installation.rotate_installation_key(args.installation)
                _line(report.as_row())
                return 0
            if args.index:
                return _rotate_index(cmdkit.lab(args.index).id, args.index, args.planned_patients,
                                     args.batch)
            if args.master:
                report = rotation.rotate_master(
                    batch=args.batch,
                    on_batch=lambda done, seen: _line({"event": "progress",
                                                       "rewrapped": done}))
            else:
                lab_id = cmdkit.lab(args.lab).id
                with bars() as add:
                    report = rotation.rotate_lab(lab_id, batch=args.batch, add_bar=add)
                _line({**report.as_row(), "lab": args.lab})
                if report.remaining:
                    return 1
                return _reindex([(lab_id, args.lab)], args.batch)
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
            if args.installation:
                if not args.key_id:
                    raise BadInput("--installation needs --key-id HEX "
                                   "(see `coffre keys status`)")
                key_id = _hex_id(args.key_id, "--key-id")
                installation.retire_installation_key(args.installation, key_id)
                _line({"event": "retired", "purpose": args.installation, "key_id": key_id})
                return 0
            if not args.key_id:
                raise BadInput("--lab needs --key-id HEX (see `coffre keys status`)")
            key_id = _hex_id(args.key_id, "--key-id")
            rotation.retire_lab_key(cmdkit.lab(args.lab).id, key_id)
            _line({"event": "retired", "lab": args.lab, "lab_key_id": key_id})
            return 0
        if args.keys_command == "reindex":
            if args.batch < 1:
                raise BadInput("--batch must be at least 1")
            return _reindex(_labs(args.lab), args.batch)
        lab_id = cmdkit.lab(args.lab).id if args.lab else None
        with bars() as add:
            report = reencrypt.reencrypt(lab_id, add_bar=add)
        _line({**report.as_row(), "lab": args.lab})
        return 0
    except (rotation.RotationError, installation.InstallationKeyError) as exc:
        raise CommandError(str(exc)) from None
