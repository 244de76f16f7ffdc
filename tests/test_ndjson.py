"""FHIR Bulk Data NDJSON: exports of Patient resources (only the requested fields,
watermarked) and the import of a former LIS's NDJSON, all or nothing as the CSV's."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from coffre.breach.scan import scan_files
from coffre.cli import COMMANDS, parser
from coffre.exports import services
from coffre.exports.models import ExportFormat
from coffre.fhir import resources as fr
from coffre.fhir.bulk import EXPORT_COLUMNS, ndjson_rows
from coffre.identity.access import create_patient
from coffre.identity.importer import import_rows
from coffre.identity.models import Patient
from coffre.identity.registry import open_patient
from coffre.identity.synthetic import generate_patients
from coffre.tenancy.actors import Actor, cli_actor
from coffre.vault import decrypt_with
from tests.conftest import make_nir, member, patient_row, sign
from tests.refusal_helpers import refused
from tests.test_exports import _home  # noqa: F401 - the same private staging area

TODAY = dt.date.today()


def main(argv: list[str]) -> int:
    """The command's handler, in this test's database (``coffre.cli.main`` would open
    the vault of the COFFRE_HOME, which has no database here)."""
    args = parser().parse_args(argv)
    return COMMANDS[args.command](args)


@pytest.fixture
def patients(lab_a):
    member("sam", lab_a, "secretary")
    member("maud", lab_a, "lab_manager")
    actor = Actor("sam", lab_a.id, "secretary", "web")
    made = [create_patient(actor, patient_row()),
            create_patient(actor, patient_row(
                nir=make_nir("M", 1970, 5), sex="M", birth_name="Quéméneur", used_name="",
                first_names="Yann", birth_date="1970-05-02", phone="06 98 76 54 32",
                email="yann.q@example.fr"))]
    made += [create_patient(actor, row) for row in generate_patients(6, seed=11)]
    return made


def produce(lab, recipient, fields: str):
    export = services.request_export(
        lab, purpose="migration vers le nouveau SIL", recipient="Éditeur X",
        recipient_key=recipient, fields=fields, period_from=TODAY - dt.timedelta(days=1),
        period_to=TODAY + dt.timedelta(days=1), requested_by="sam",
        format=ExportFormat.NDJSON)
    services.approve(export.pk, sign("maud"), channel="cli")
    return services.run(export.pk)


def lines_of(export, identity) -> list[str]:
    blob = decrypt_with(identity, services.staged_file(export).read_bytes()).decode()
    return blob.splitlines()


def test_export_holds_patients_of_the_requested_fields_only(lab_a, patients, keys):
    export = produce(lab_a, keys[1], "nir,birth_name,phone")
    assert services.staged_file(export).name == f"{export.pk}.ndjson.age"
    assert services.listing(lab_a)[-1]["format"] == "ndjson"
    resources = [json.loads(line) for line in lines_of(export, keys[0])]
    assert 8 + 2 <= len(resources) <= 8 + 3  # the patients and 2-3 watermark rows
    for resource in resources:
        fr.validate(resource)
        # Only the requested elements: no id, gender, birth date, address or e-mail.
        assert set(resource) <= {"resourceType", "identifier", "name", "telecom"}
        assert resource["resourceType"] == "Patient"
        assert {t["system"] for t in resource.get("telecom", [])} <= {"phone"}
        assert all(set(n) <= {"use", "family"} for n in resource["name"])
    # A watermark patient may have no NIR (as generated patients may not): no identifier.
    found = {(r.get("identifier", [{}])[0].get("value", ""), r["name"][0]["family"])
             for r in resources}
    for record in patients:
        assert (record.values["nir"], record.values["birth_name"]) in found
    text = "\n".join(lines_of(export, keys[0]))
    for absent in ("example.fr", "1985-03-14", "Lilas", "Claire", "female"):
        assert absent not in text


def test_fields_without_a_patient_element_are_refused_for_ndjson(lab_a, patients, keys):
    with refused(services.ExportError, "export.not_in_fhir") as caught:
        produce(lab_a, keys[1], "nir,notes")
    assert caught.value.render("en") == ("Some fields have no place in a FHIR Patient "
                                         "resource (notes): export them as CSV.")


def test_round_trip_into_another_lab(lab_a, lab_b, patients, keys, tmp_path):
    fields = ",".join(c for c in EXPORT_COLUMNS)
    export = produce(lab_a, keys[1], fields)
    lines = lines_of(export, keys[0])
    path = tmp_path / "migration.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_rows(cli_actor(lab_b.id, role="import"), lambda: ndjson_rows(path))
    assert not report.errors and report.imported == len(lines)
    names = list(EXPORT_COLUMNS)

    def values(record) -> tuple:
        return tuple(record.values.get(n, "") for n in names)

    imported = {values(open_patient(p, names))
                for p in Patient.unscoped.filter(lab_id=lab_b.id)}
    assert len(imported) == len(lines)
    for record in patients:
        assert values(open_patient(Patient.unscoped.get(id=record.id), names)) in imported


def test_a_bad_line_imports_nothing_and_names_the_line(lab_a, lab_b, patients, keys,
                                                        tmp_path, capsys):
    export = produce(lab_a, keys[1], ",".join(EXPORT_COLUMNS))
    lines = lines_of(export, keys[0])
    secret = json.loads(lines[1])["identifier"][0]["value"]
    broken = json.loads(lines[3])
    broken["birthDate"] = "14/03/1985"  # a FHIR structure error
    lines[3] = json.dumps(broken)
    lines[5] = lines[5][:-4]  # truncated JSON
    lines[6] = json.dumps({"resourceType": "Observation", "status": "final"})
    path = tmp_path / "ancien-sil.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_rows(cli_actor(lab_b.id, role="import"), lambda: ndjson_rows(path))
    assert report.imported == 0 and {e.line for e in report.errors} == {4, 6, 7}
    messages = [str(e) for e in report.errors]
    assert any("line 4" in m and "Patient.birthDate" in m for m in messages)
    assert any("line 6" in m and "not valid JSON" in m for m in messages)
    assert any("line 7" in m and "not a Patient" in m for m in messages)
    # The command: chosen by the suffix (and --format), exit 1, no value on stderr.
    assert main(["import", "patients", str(path), "--lab", lab_b.finess]) == 1
    err = capsys.readouterr().err
    assert "line 4" in err and "nothing was imported" in err
    assert secret not in err and "14/03/1985" not in err
    assert not Patient.unscoped.filter(lab_id=lab_b.id).exists()
    good = tmp_path / "ok.txt"
    good.write_text(lines[0] + "\n" + lines[1] + "\n", encoding="utf-8")
    assert main(["import", "patients", str(good), "--lab", lab_b.finess,
                 "--format", "ndjson"]) == 0
    assert Patient.unscoped.filter(lab_id=lab_b.id).count() == 2


def test_a_leaked_ndjson_export_is_attributed_to_it(lab_a, patients, keys, tmp_path):
    export = produce(lab_a, keys[1], "nir,birth_name,first_names,birth_date,phone,email")
    lines = lines_of(export, keys[0])
    path = tmp_path / "fuite.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = scan_files([path])
    assert report.files[0]["format"] == "ndjson"
    assert report.rows_read == len(lines)
    assert report.patients_affected() == len(patients)  # nested cells are recognised
    [evidence] = report.evidence
    assert evidence.kind == "watermark" and evidence.detail["export_id"] == export.pk
    assert evidence.rows == len(lines) - len(patients)
    assert evidence.strength == "conclusive"
    assert services.attribute("\n".join(lines)) == export.pk


def test_the_web_form_asks_for_the_format(lab_a, patients, keys):
    from tests.test_web_exports import NEW, form_data, logged_in, text

    client = logged_in(member("dora", lab_a, "dpo"))
    page = text(client.get(NEW))
    assert 'value="ndjson"' in page and "FHIR NDJSON" in page
    refused = client.post(NEW, form_data(keys[1], fields=["nir", "notes"], format="ndjson"))
    assert refused.status_code == 400
    assert "pas de place dans une ressource FHIR Patient" in text(refused)
    response = client.post(NEW, form_data(keys[1], format="ndjson"))
    assert response.status_code == 302
    export = services.requests_of(lab_a).first()
    assert export.format == ExportFormat.NDJSON
    assert "FHIR NDJSON" in text(client.get(response["Location"]))
    client.post(NEW, form_data(keys[1]))  # without a choice: CSV, as before
    assert services.requests_of(lab_a).first().format == ExportFormat.CSV
