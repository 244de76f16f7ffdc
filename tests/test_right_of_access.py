"""The patient's right of access: a zip holding a FHIR R4 Bundle of their identity and
published results, and their PDF reports; from the portal and the CLI."""

from __future__ import annotations

import io
import json
import stat
import zipfile

from coffre.lifecycle.right_of_access import INS_NIR_SYSTEM, right_of_access
from coffre.portal import activation
from tests.conftest import STAFF_PASSWORD, patient_row
from tests.lab_helpers import order_for, published


def _open(content: bytes) -> tuple[dict, list[str]]:
    archive = zipfile.ZipFile(io.BytesIO(content))
    return json.loads(archive.read("bundle.json")), archive.namelist()


def test_the_bundle_holds_identity_and_published_results_only(staff, patient):
    done = published(staff, patient.id, K="4.4", CREA="80")
    order_for(staff.secretary, patient.id, "NA")  # not published: not in the copy
    name, content = right_of_access(staff.secretary, patient.id)
    bundle, files = _open(content)
    assert name.endswith(".zip") and f"compte-rendu-{done.number}.pdf" in files
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("Patient") == 1 and kinds.count("DiagnosticReport") == 1
    person = bundle["entry"][0]["resource"]
    assert person["identifier"] == [{"system": INS_NIR_SYSTEM, "value": patient_row()["nir"]}]
    assert person["birthDate"] == "1985-03-14" and person["gender"] == "female"
    codes = {e["resource"]["code"]["coding"][0]["code"]: e["resource"]
             for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"}
    assert set(codes) == {"2823-3", "14682-9", "98979-8"}  # potassium, creatinine, eGFR
    assert codes["2823-3"]["valueQuantity"] == {"value": 4.4, "unit": "mmol/L"}
    assert "2951-2" not in codes  # sodium: not published


def test_a_patient_downloads_their_copy_from_the_portal(client, staff, patient):
    published(staff, patient.id, K="4.4")
    code = activation.issue_code(staff.secretary, patient.id)
    client.post("/portail/activation/", {
        "code": code, "birth_date": "14/03/1985", "username": "claire.m85",
        "password": STAFF_PASSWORD, "password_again": STAFF_PASSWORD})
    assert client.get("/portail/mes-donnees.zip").status_code == 405
    response = client.post("/portail/mes-donnees.zip")
    assert response["Content-Type"] == "application/zip"
    bundle, _ = _open(response.content)
    assert bundle["entry"][0]["resource"]["id"] == str(patient.id)
    history = client.get("/portail/acces/").content.decode()
    assert "droit d&#x27;accès" in history or "droit d'accès" in history


def test_the_cli_writes_a_private_file_and_never_overwrites(tmp_path, tmp_path_factory):
    from tests.cli_helpers import demo_installation

    with demo_installation(tmp_path_factory) as cli:
        patient_id = cli.json_lines("specimens", "list", "--lab", cli.demo_finess)[0]["patient"]
        out = tmp_path / "copie.zip"
        cli.run("patient", "access-export", "--id", patient_id, "--lab", cli.demo_finess,
                "--out", str(out))
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        assert _open(out.read_bytes())[0]["resourceType"] == "Bundle"
        refused = cli.run("patient", "access-export", "--id", patient_id, "--lab",
                          cli.demo_finess, "--out", str(out), check=False)
        assert refused.returncode == 2 and "exists" in refused.stderr
