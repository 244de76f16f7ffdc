"""``coffre import patients`` and ``coffre patient find``; the ``patient`` group's
other sub-commands (``erase``, ``access-export``) are coffre.lifecycle's."""

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
    imp = sub.add_parser("import", help="import data").add_subparsers(dest="what",
                                                                       required=True)
    p = imp.add_parser("patients", help="registry CSV or FHIR NDJSON of Patients "
                                        "(docs/import-format.md)")
    p.add_argument("file", type=Path)
    p.add_argument("--format", choices=("csv", "ndjson"), default=None,
                   help="the file's format (default: ndjson for a .ndjson file, else csv)")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--skip-invalid", action="store_true",
                   help="import the valid rows and report the others")

    pat = cmdkit.group_parsers(sub, "patient", dest="patient_command", help="patients")
    p = pat.add_parser("find")
    p.add_argument("--lab", required=True, metavar="FINESS")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--nir")
    group.add_argument("--name")
    group.add_argument("--phone")
    group.add_argument("--email")
    p.add_argument("--birth-date", metavar="YYYY-MM-DD")


@command("import")
def import_patients(args: argparse.Namespace) -> int:
    from coffre.bulk import refresh_statistics
    from coffre.identity.importer import ImportFileError, csv_rows, import_rows
    from coffre.tenancy.actors import cli_actor

    target = cmdkit.lab(args.lab, code=1)
    actor = cli_actor(target.id, role="import")
    rows = lambda: csv_rows(args.file)  # noqa: E731
    if (args.format or ("ndjson" if args.file.suffix.lower() == ".ndjson" else "csv")
            ) == "ndjson":
        from coffre.fhir.bulk import ndjson_rows

        rows = lambda: ndjson_rows(args.file)  # noqa: E731
    try:
        with bars() as add:
            report = import_rows(actor, rows,
                                 skip_invalid=args.skip_invalid,
                                 advance_check=add("checking", None),
                                 advance_write=add("encrypting and writing", None))
    except ImportFileError as exc:
        raise CommandError(f"{args.file}: {exc}; nothing was imported") from None
    for error in report.errors:
        print(f"{args.file}: {error}", file=sys.stderr)
    if report.errors and not args.skip_invalid:
        print(f"{len(report.errors)} problems in {len({e.line for e in report.errors})} rows "
              f"of {report.rows_read}: nothing was imported (fix them, or use --skip-invalid)",
              file=sys.stderr)
        return 1
    logger.info("import: %d patients into lab %s, %d rows skipped", report.imported,
             target.finess, report.rows_read - report.imported)
    refresh_statistics()
    print(f"imported {report.imported} patients into {target.name} ({target.finess}); "
          f"{report.rows_read - report.imported} rows skipped")
    return 0


@command("patient")
def patient_find(args: argparse.Namespace) -> int:
    """``patient find``; the group's other sub-commands are registered by other
    capabilities (coffre.cmdkit.subcommand)."""
    from coffre.identity.access import SearchError, find_patients
    from coffre.tenancy.actors import cli_actor

    if args.patient_command != "find":
        return cmdkit.run_subcommand("patient", args.patient_command, args)
    target = cmdkit.lab(args.lab, code=1)
    try:
        records = find_patients(cli_actor(target.id), nir=args.nir, name=args.name,
                                birth_date=args.birth_date, phone=args.phone,
                                email=args.email)
    except SearchError as exc:
        raise CommandError(exc.render("en")) from None
    print_json_lines([{**r.as_row(), "lab": target.finess} for r in records])
    return 0

