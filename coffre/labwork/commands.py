"""``coffre orders``, ``specimens``, ``report`` and ``hl7``: the lab workflow from the
command line (docs: README, docs/lab-workflow.md)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from coffre import cmdkit
from coffre.cmdkit import BadInput, command, print_json_lines

logger = logging.getLogger("coffre.cli")


def add_arguments(sub: argparse._SubParsersAction) -> None:
    """Orders, specimens, reports and analyser messages (docs: README, `coffre hl7`)."""
    orders = sub.add_parser("orders", help="lab orders").add_subparsers(
        dest="orders_command", required=True)
    p = orders.add_parser("create", help="register an order; prints its number and barcodes")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--patient", required=True, metavar="UUID", help="internal patient id")
    p.add_argument("--tests", required=True, metavar="CODES",
                   help='panel, local or LOINC codes, e.g. "NFS IONO" or "718-7,K"')
    p.add_argument("--prescriber-rpps", default="", metavar="RPPS")
    p.add_argument("--prescriber-name", default="", metavar="NAME")
    p.add_argument("--clinical-info", default="", metavar="TEXT")
    p.add_argument("--urgent", action="store_true")

    specimens = sub.add_parser("specimens", help="specimens").add_subparsers(
        dest="specimens_command", required=True)
    p = specimens.add_parser("list", help="one JSON object per line (no name, no value)")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--state", default="", metavar="STATE",
                   help="registered, collected, received or rejected")
    p = specimens.add_parser("receive", help="record the receipt of specimens at the lab")
    p.add_argument("barcodes", nargs="+", metavar="BARCODE")
    p.add_argument("--lab", required=True, metavar="FINESS")

    report = sub.add_parser("report", help="reports (comptes rendus)").add_subparsers(
        dest="report_command", required=True)
    p = report.add_parser("pdf", help="write an order's report as PDF (mode 0600)")
    p.add_argument("--order", required=True, metavar="ID",
                   help="order number (with --lab) or order UUID")
    p.add_argument("--out", required=True, type=Path, metavar="FILE")
    p.add_argument("--lab", metavar="FINESS")
    p.add_argument("--force", action="store_true", help="replace an existing file")

    hl7 = sub.add_parser("hl7", help="analyser messages (HL7 v2.5 ORU^R01)").add_subparsers(
        dest="hl7_command", required=True)
    p = hl7.add_parser("import", help="record the results of a file of ORU^R01 messages")
    p.add_argument("file", metavar="FILE", help="a file of one or more messages, - for stdin")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--summary", action="store_true",
                   help="one line per message (code, control id, text) instead of the ACKs")
    p = hl7.add_parser("listen", help="MLLP listener for analysers (localhost by default)")
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--allow", metavar="ADDRESSES",
                   help="analyser IPs or networks whose connections are read, e.g. "
                        "127.0.0.1,10.0.0.0/28 (default: the lab's stored list)")
    p.add_argument("--allow-remote", action="store_true",
                   help="listen on a non-loopback address without TLS (behind a VPN)")
    p.add_argument("--tls-cert", type=Path, metavar="FILE",
                   help="the listener's certificate (PEM); with --tls-key and "
                        "--tls-client-ca, analysers need a client certificate")
    p.add_argument("--tls-key", type=Path, metavar="FILE")
    p.add_argument("--tls-client-ca", type=Path, metavar="FILE",
                   help="CA certificate(s) (PEM) that sign the analysers' certificates")
    p = hl7.add_parser("analysers", help="the lab's allow-list of analyser addresses")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--set", metavar="ADDRESSES",
                   help='replace the list (IPs or networks, comma-separated; "" empties it)')
    p = hl7.add_parser("export", help="an order's validated results as ORU^R01")
    p.add_argument("--order", required=True, metavar="NUMBER")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--out", type=Path, metavar="FILE", help="write here (mode 0600)")
    p.add_argument("--force", action="store_true", help="replace an existing file")



@command("orders")
def orders(args: argparse.Namespace) -> int:
    import re
    import uuid

    from coffre.identity.access import PatientNotFound
    from coffre.labwork.orders import InvalidOrder, OrderRequest, create_order

    actor = cmdkit.lab_actor(args.lab)
    try:
        patient_id = uuid.UUID(args.patient)
    except ValueError:
        raise BadInput("--patient must be a patient id (UUID)") from None
    tests = tuple(code for code in re.split(r"[\s,;]+", args.tests) if code)
    try:
        order = create_order(actor, OrderRequest(
            patient_id=patient_id, tests=tests, prescriber_rpps=args.prescriber_rpps,
            prescriber_name=args.prescriber_name, clinical_info=args.clinical_info,
            urgent=args.urgent))
    except InvalidOrder as exc:
        raise BadInput(f"order refused, nothing recorded: {exc.render('en')}") from None
    except PatientNotFound:
        raise BadInput(f"no patient {patient_id} in lab {args.lab}") from None
    specimens = [{"barcode": s.barcode, "specimen_type": s.specimen_type,
                  "tests": list(s.results.order_by("position").values_list("loinc", flat=True))}
                 for s in order.specimens.order_by("barcode")]
    print_json_lines([{"order": order.number, "id": str(order.id), "lab": args.lab,
                       "patient": str(patient_id), "urgent": order.urgent,
                       "barcodes": [s["barcode"] for s in specimens],
                       "specimens": specimens}])
    return 0



@command("specimens")
def specimens(args: argparse.Namespace) -> int:
    import json

    from coffre.labwork import access, workflow
    from coffre.labwork.models import SpecimenState

    actor = cmdkit.lab_actor(args.lab)
    if args.specimens_command == "receive":
        received = []
        with _refusals():
            from django.db import transaction

            with transaction.atomic():  # all the barcodes or none
                for barcode in args.barcodes:
                    try:
                        received.append(workflow.receive(actor, barcode))
                    except workflow.SpecimenNotFound:
                        raise BadInput(f"no specimen {barcode!r} in lab {args.lab}; "
                                       "nothing was received") from None
        print_json_lines([{"barcode": s.barcode, "state": s.state,
                           "received_at": s.received_at.isoformat()} for s in received])
        return 0
    if args.state and args.state not in SpecimenState.values:
        raise BadInput(f"unknown state {args.state!r}: use one of "
                       f"{', '.join(SpecimenState.values)}")
    for row in access.specimen_listing(actor, state=args.state):
        print(json.dumps(row, ensure_ascii=False))
    return 0


class _refusals:
    """Turn a refused workflow step into a clear one-line error (exit 2)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        from coffre.labwork.workflow import WorkflowError

        if isinstance(exc, WorkflowError):
            raise BadInput(f"{exc.render('en')}; nothing was changed") from None
        return False


@command("report")
def report(args: argparse.Namespace) -> int:
    import uuid

    from coffre.labwork import reports
    from coffre.labwork.access import OrderNotFound, order_by_number
    from coffre.labwork.models import Order
    from coffre.tenancy.actors import cli_actor

    try:
        order_id: uuid.UUID | None = uuid.UUID(args.order)
    except ValueError:
        order_id = None
    if order_id is None and not args.lab:
        raise BadInput("--order is not an order id (UUID): an order number needs --lab")
    if args.out.exists() and not args.force:
        raise BadInput(f"{args.out} exists: use --force to replace it")
    if args.lab:
        actor = cmdkit.lab_actor(args.lab)
    else:
        # An administrator on the server may name an order by its id alone; the read
        # is then scoped and logged in the order's own lab.
        lab_id = Order.unscoped.filter(id=order_id).values_list("lab_id", flat=True).first()
        if lab_id is None:
            raise BadInput(f"no order {args.order}")
        actor = cli_actor(lab_id)
    try:
        if order_id is None:
            order_id = order_by_number(actor, args.order).id
        _, content = reports.report_pdf(actor, order_id)
    except OrderNotFound:
        where = f" in lab {args.lab}" if args.lab else ""
        raise BadInput(f"no order {args.order}{where}") from None
    cmdkit.write_output(args.out, content, args.force)
    print(args.out)
    return 0


@command("hl7")
def hl7(args: argparse.Namespace) -> int:
    return {"import": _hl7_import, "listen": _hl7_listen, "analysers": _hl7_analysers,
            "export": _hl7_export}[args.hl7_command](args)


def _printable(message: str) -> str:
    """An HL7 message with one segment per line (segments end with \\r on the wire)."""
    return "\n".join(segment for segment in message.split("\r") if segment)


def _hl7_import(args: argparse.Namespace) -> int:
    from coffre.labwork import analyser, hl7v2

    target = cmdkit.lab(args.lab)
    if args.file == "-":
        data = sys.stdin.buffer.read()
        name = "standard input"
    else:
        try:
            data = Path(args.file).read_bytes()
        except OSError as exc:
            raise BadInput(f"cannot read {args.file}: {exc.strerror}") from None
        name = args.file
    if not hl7v2.split_messages(data):
        raise BadInput(f"no HL7 message in {name}")
    outcomes = analyser.import_stream(target.id, data, channel="cli")
    for outcome in outcomes:
        if args.summary:
            print(f"{outcome.code} {outcome.control_id or '-'} {outcome.text}")
        else:
            print(_printable(outcome.ack) + "\n")
    refused = sum(1 for o in outcomes if o.code != "AA")
    recorded = sum(o.recorded for o in outcomes)
    logger.info("hl7 import into lab %s: %d message(s), %d refused, %d result(s)",
             target.finess, len(outcomes), refused, recorded)
    print(f"{len(outcomes)} message(s): {len(outcomes) - refused} accepted, {refused} "
          f"refused; {recorded} result(s) recorded", file=sys.stderr)
    return 2 if refused else 0


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hl7_listen(args: argparse.Namespace) -> int:
    import signal
    import threading

    from django.db import connection

    from coffre.labwork import analyser, hl7v2, mllp

    if not 0 <= args.port <= 65535:
        raise BadInput("--port must be between 0 and 65535")
    tls = _listener_tls(args)
    if not _is_loopback(args.host) and not args.allow_remote and tls is None:
        raise BadInput(f"{args.host} is not a loopback address: HL7 over MLLP is not "
                       "encrypted; give --tls-cert, --tls-key and --tls-client-ca, or "
                       "--allow-remote only behind a VPN")
    target = cmdkit.lab(args.lab)
    allowed = _listener_allow_list(args, target)
    lock = threading.Lock()

    def handle(text: str) -> str:
        try:
            outcome = analyser.import_message(target.id, text, channel="hl7")
        except Exception as exc:  # answer AE rather than leave the analyser waiting
            logger.error("hl7 listen: message failed: %s", type(exc).__name__)
            return hl7v2.build_ack("", "AE", "internal error: message not recorded")
        finally:
            connection.close()  # each handler thread has its own connection
        with lock:
            print(f"{outcome.code} {outcome.control_id or '-'} {outcome.text}", flush=True)
        return outcome.ack

    try:
        server = mllp.MllpServer(handle, args.host, args.port, allowed=allowed, tls=tls)
    except OSError as exc:
        raise BadInput(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    stop = threading.Event()

    def terminate(signum, frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, terminate)
    server.start_background()
    logger.info("hl7 listen: lab %s on %s:%d, analysers %s%s", target.finess, args.host,
             server.port, allowed, ", TLS with client certificates" if tls else "")
    print(f"listening on {args.host}:{server.port} for lab {target.finess}, analysers "
          f"{allowed}{' over TLS' if tls else ''} (Ctrl-C to stop)", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    server.shutdown()
    print("stopped", flush=True)
    return 0


def _listener_tls(args: argparse.Namespace):
    """The listener's TLS context, or None; all three files or none of them."""
    import ssl

    from coffre.labwork import mllp

    files = {"--tls-cert": args.tls_cert, "--tls-key": args.tls_key,
             "--tls-client-ca": args.tls_client_ca}
    missing = [name for name, path in files.items() if path is None]
    if len(missing) == len(files):
        return None
    if missing:
        raise BadInput(f"TLS needs {', '.join(missing)} too: analysers are known by "
                       "their client certificates")
    for name, path in files.items():
        if not path.is_file():
            raise BadInput(f"cannot read {name} {path}: no such file")
    try:
        return mllp.server_tls(args.tls_cert, args.tls_key, args.tls_client_ca)
    except ssl.SSLError as exc:
        raise BadInput(f"TLS files not usable: {exc.reason or exc}") from None
    except OSError as exc:
        raise BadInput(f"cannot read a TLS file: {exc.strerror}") from None


def _listener_allow_list(args: argparse.Namespace, target):
    from coffre.labwork import analyser, mllp

    if args.allow is not None:
        try:
            allowed = mllp.AllowList.parse(args.allow)
        except ValueError as exc:
            raise BadInput(f"--allow: {exc}") from None
    else:
        allowed = analyser.analyser_addresses(target.id)
    if not allowed:
        raise BadInput(f"no analyser address is allowed for lab {target.finess}: give "
                       f"--allow ADDRESSES or store them with `coffre hl7 analysers --lab "
                       f"{target.finess} --set ADDRESSES`")
    return allowed


def _hl7_analysers(args: argparse.Namespace) -> int:
    from coffre.labwork import analyser

    target = cmdkit.lab(args.lab)
    if args.set is None:
        print(analyser.analyser_addresses(target.id))
        return 0
    try:
        allowed = analyser.set_analyser_addresses(target.id, args.set)
    except ValueError as exc:
        raise BadInput(f"--set: {exc}; nothing was changed") from None
    logger.info("hl7 analysers of lab %s set to %s", target.finess, allowed or "(none)")
    print(allowed)
    return 0


def _hl7_export(args: argparse.Namespace) -> int:
    from coffre.labwork import analyser
    from coffre.labwork.access import OrderNotFound, order_by_number

    actor = cmdkit.lab_actor(args.lab)
    if args.out and args.out.exists() and not args.force:
        raise BadInput(f"{args.out} exists: use --force to replace it")
    try:
        message = analyser.export_oru(actor, order_by_number(actor, args.order).id)
    except OrderNotFound:
        raise BadInput(f"no order {args.order} in lab {args.lab}") from None
    if args.out:
        cmdkit.write_output(args.out, message.encode("utf-8"), args.force)
        print(args.out)
    else:
        print(_printable(message))
    return 0
