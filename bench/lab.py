"""Lab workflow benchmark: worklist page, biological validation, report PDF, and the
synthetic history's generation rate.

    .venv/bin/python bench/lab.py                      # all, history of 5,000 patients
    .venv/bin/python bench/lab.py --patients 20000     # a bigger history (extrapolation)
    .venv/bin/python bench/lab.py --only generation

Each figure is compared with a baseline measured in the same run (a ratio), in a
private COFFRE_HOME (temporary directory), SQLite in WAL mode:

- worklist: GET /paillasses/ with 500 received specimens (NFS orders), through the
  Django test client as a technician (session, middleware, queries, template). Target
  < 300 ms. Baseline: the same queries (access.worklist) without the page.
- validation: workflow.validate_biologically on 100 technically validated results
  (made through the services). Target < 1 s. Baseline: validate_technically on 100.
- report: reports.report_pdf for an order of every test of the catalogue (73 results,
  3 pages with comments and previous values). Target < 500 ms.
  Baseline: pdf.render_report alone on the same prebuilt data.
- generation: coffre.labwork.synthetic.generate_history for N generated patients (results
  per second, all sealed), after importing the patients (not timed). Baseline: the
  patient import of the same patients (patients per second), the seed profile's other
  long step; the seed profile's duration is extrapolated from both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED_PATIENTS = 491_840


def setup(home: str) -> None:
    os.environ["COFFRE_HOME"] = home
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coffre.settings")
    os.environ["COFFRE_ALLOWED_HOSTS"] = "testserver"
    os.environ["COFFRE_AUDIT_CHECKPOINT_SECONDS"] = "60"
    import django

    django.setup()
    from django.core.management import call_command

    from coffre.keyring import services as keyring
    from coffre.vault import create_key_file

    create_key_file(Path(home) / "keys" / "master.key")
    call_command("migrate", verbosity=0)
    keyring.initialise()


def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return (time.perf_counter() - started) * 1000, value


def _lab(index: int, name: str):
    from coffre.identity.synthetic import generate_finess
    from coffre.tenancy.services import add_lab

    return add_lab(generate_finess(index, 77), name)


def _staff(lab):
    """A technician, a biologist and a second biologist (the one who validates), as
    actors and accounts."""
    from django.contrib.auth import get_user_model

    from coffre.accounts.models import Membership
    from coffre.tenancy.actors import Actor

    actors = {}
    for name, role in (("tech", "technician"), ("bio", "biologist"),
                       ("secretary", "secretary")):
        user = get_user_model().objects.create_user(f"{name}{lab.id}", password=None)
        Membership.objects.create(user=user, lab=lab, role=role)
        actors[name] = (Actor(user.username, lab.id, role, "web", "127.0.0.1"), user)
    return actors


def _patients(lab, count: int, seed: int) -> list[tuple]:
    """Generated patients of ``lab`` and what the history needs of them."""
    from coffre.identity.importer import dict_rows, import_rows
    from coffre.identity.synthetic import generate_patients
    from coffre.setup import _recording
    from coffre.tenancy.actors import cli_actor

    made: list[tuple] = []
    report = import_rows(cli_actor(lab.id, role="generate"),
                         lambda: dict_rows(generate_patients(count, seed)),
                         encrypt=_recording(made))
    assert not report.errors, report.errors[:3]
    return made


def _orders(actor, patient_ids, tests, count: int):
    from coffre.labwork.orders import OrderRequest, create_order

    return [create_order(actor, OrderRequest(
        patient_id=patient_ids[i % len(patient_ids)], tests=tests,
        prescriber_rpps="10003456786", prescriber_name="Paul Bernard",
        clinical_info="Bilan annuel")) for i in range(count)]


def _receive(actor, orders) -> None:
    from coffre.labwork import workflow

    for order in orders:
        for specimen in order.specimens.all():
            workflow.receive(actor, specimen.barcode)


def worklist(rounds: int) -> dict:
    """500 received specimens (500 NFS orders, 13 results each)."""
    from django.test import Client

    from coffre.accounts import mfa
    from coffre.labwork import access

    lab = _lab(0, "Laboratoire Paillasse")
    staff = _staff(lab)
    ids = [p[0] for p in _patients(lab, 100, seed=11)]
    orders = _orders(staff["secretary"][0], ids, ("NFS",), 500)
    _receive(staff["secretary"][0], orders)
    tech, user = staff["tech"]
    client = Client()
    client.force_login(user)
    session = client.session
    mfa.mark_verified(session)  # the second factor, as if typed
    session.save()
    response = client.get("/paillasses/")  # warm: templates compiled, session made
    assert response.status_code == 200, response.status_code
    page, layer = [], []
    for _ in range(rounds):
        elapsed, rows = _timed(access.worklist, tech)
        assert len(rows) == 500, len(rows)
        layer.append(elapsed)
        elapsed, response = _timed(client.get, "/paillasses/")
        assert response.status_code == 200, response.status_code
        page.append(elapsed)
    return {"page": statistics.median(page), "layer": statistics.median(layer),
            "bytes": len(response.content)}


def validation(rounds: int) -> dict:
    """100 results (ten orders of NFS minus PNB... exactly 100 manual results) brought
    to technical validation through the services, then validated by a biologist."""
    from coffre.labwork import catalogue, workflow
    from coffre.labwork.models import Result

    lab = _lab(1, "Laboratoire Validation")
    staff = _staff(lab)
    ids = [p[0] for p in _patients(lab, 50, seed=12)]
    tech, bio = staff["tech"][0], staff["bio"][0]
    technical, biological = [], []
    for _ in range(rounds):
        # 10 orders x (IONO 5 + BILAN_HEPATIQUE 5) = 100 typed results.
        orders = _orders(staff["secretary"][0], ids, ("IONO", "BILAN_HEPATIQUE"), 10)
        _receive(staff["secretary"][0], orders)
        results = list(Result.unscoped.filter(order__in=orders, source="manual"))
        assert len(results) == 100, len(results)
        values = {}
        for result in results:
            rng = catalogue.reference_range(catalogue.test(result.loinc), "", 40 * 365)
            values[result.id] = str(rng.high * 0.8 if rng.low is None
                                    else (rng.low + rng.high) / 2)
        workflow.enter_results(tech, [workflow.Entry(r.id, values[r.id]) for r in results])
        result_ids = [r.id for r in results]
        elapsed, count = _timed(workflow.validate_technically, tech, result_ids)
        assert count == 100
        technical.append(elapsed)
        elapsed, count = _timed(workflow.validate_biologically, bio, result_ids)
        assert count == 100
        biological.append(elapsed)
    return {"bio": statistics.median(biological), "tech": statistics.median(technical)}


def report(rounds: int) -> dict:
    """An order of every test of the catalogue (73 lines, a comment on one in four: the
    3 pages of a big check-up), published after a first one so that each line shows a
    previous value, and its compte rendu."""
    import io

    from pypdf import PdfReader

    from coffre.labwork import access, catalogue, pdf, reports, workflow
    from coffre.labwork.models import Result

    lab = _lab(2, "Laboratoire Compte Rendu")
    staff = _staff(lab)
    patient = _patients(lab, 1, seed=13)[0]
    tech, bio = staff["tech"][0], staff["bio"][0]
    codes = tuple(t.code for t in catalogue.TESTS.values()
                  if not t.calculated and not (t.code == "PSA" and patient[2] == "F"))
    orders = _orders(staff["secretary"][0], [patient[0]], codes, 2)
    _receive(staff["secretary"][0], orders)
    for order in orders:
        results = list(Result.unscoped.filter(order=order).exclude(source="calculated"))
        entries = [workflow.Entry(r.id, _typical(catalogue.test(r.loinc), patient[2]),
                                  "Contrôle à prévoir dans trois mois" if i % 4 == 0 else "")
                   for i, r in enumerate(results)]
        workflow.enter_results(tech, entries)
        workflow.validate_technically(tech, [r.id for r in results])
        workflow.validate_biologically(bio, [r.id for r in results])
        workflow.publish(bio, order)
    order = orders[1]
    lines = Result.unscoped.filter(order=order).count()
    data = reports.report_data(access.access_order(bio, order.id))
    full, alone = [], []
    for _ in range(rounds):
        elapsed, (_, content) = _timed(reports.report_pdf, bio, order.id)
        full.append(elapsed)
        elapsed, _ = _timed(pdf.render_report, data)
        alone.append(elapsed)
    pages = len(PdfReader(io.BytesIO(content)).pages)
    return {"full": statistics.median(full), "render": statistics.median(alone),
            "results": lines, "pages": pages}


def _typical(test, sex: str) -> str:
    if test.kind == "coded":
        return test.choices[0]
    if test.kind == "text":
        return "Stérile. Absence de leucocyturie significative."
    rng = catalogue_range(test, sex)
    low = rng.low if rng.low is not None else (rng.high or 1) * 0.3
    high = rng.high if rng.high is not None else low * 2
    return f"{(low + high) / 2:.2f}"


def catalogue_range(test, sex: str):
    from coffre.labwork import catalogue

    return (catalogue.reference_range(test, sex, 40 * 365)
            or catalogue.reference_range(test, "", 40 * 365))


def generation(patients: int) -> dict:
    from coffre.labwork.synthetic import Counts, generate_history

    lab = _lab(3, "Laboratoire Historique")
    started = time.perf_counter()
    made = _patients(lab, patients, seed=2021)
    imported = time.perf_counter() - started
    counts = Counts()
    started = time.perf_counter()
    generate_history(lab.id, made, seed=2021, counts=counts)
    history = time.perf_counter() - started
    return {"patients": patients, "import_s": imported, "history_s": history,
            "counts": counts}


def _rows(figures: dict) -> list[tuple[str, str, str, str, str]]:
    rows = []
    if "worklist" in figures:
        w = figures["worklist"]
        rows.append(("worklist page, 500 specimens (GET /paillasses/)",
                     f"{w['page']:.0f} ms", "< 300 ms",
                     f"access.worklist alone {w['layer']:.0f} ms",
                     f"{w['page'] / w['layer']:.2f}"))
    if "validation" in figures:
        v = figures["validation"]
        rows.append(("biological validation of 100 results", f"{v['bio']:.0f} ms",
                     "< 1,000 ms", f"technical validation {v['tech']:.0f} ms",
                     f"{v['bio'] / v['tech']:.2f}"))
    if "report" in figures:
        r = figures["report"]
        rows.append((f"report PDF, {r['results']} results, {r['pages']} pages "
                     "(reports.report_pdf)", f"{r['full']:.0f} ms", "< 500 ms",
                     f"render_report alone {r['render']:.0f} ms",
                     f"{r['full'] / r['render']:.2f}"))
    if "generation" in figures:
        g = figures["generation"]
        c = g["counts"]
        rate = c.results / g["history_s"]
        import_rate = g["patients"] / g["import_s"]
        seed_history = SEED_PATIENTS * c.results / g["patients"] / rate
        rows.append((f"history of {g['patients']:,} patients: {c.orders:,} orders, "
                     f"{c.results:,} results ({c.results / max(c.orders, 1):.1f}/order, "
                     f"{100 * c.abnormal / max(c.results, 1):.1f}% flagged, "
                     f"{c.criticals} critical)",
                     f"{g['history_s']:.1f} s, {rate:,.0f} results/s",
                     f"seed history ~{seed_history / 60:.1f} min if linear",
                     f"patient import {g['import_s']:.1f} s, {import_rate:,.0f}/s",
                     f"{g['history_s'] / g['import_s']:.2f}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=5000,
                        help="patients whose history is generated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=["worklist", "validation", "report", "generation"],
                        action="append")
    args = parser.parse_args()
    wanted = args.only or ["worklist", "validation", "report", "generation"]
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="coffre-bench-lab-") as home:
        setup(home)
        for name in wanted:
            if name == "generation":
                figures[name] = generation(args.patients)
            else:
                figures[name] = globals()[name](args.rounds)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Lab workflow (SQLite WAL, {os.cpu_count()} CPUs, median of "
                        f"{args.rounds} rounds)")
    for column in ("measure", "time", "target", "baseline (same run)", "ratio"):
        table.add_column(column)
    for row in _rows(figures):
        table.add_row(*row)
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
