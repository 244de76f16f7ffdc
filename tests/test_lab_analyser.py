"""Analyser results in (ORU^R01 -> ACK), results out, and the MLLP listener end to end."""

from __future__ import annotations

import pytest

from coffre.labwork import access, analyser, hl7v2, mllp, workflow
from coffre.labwork.models import Result, ResultState
from coffre.tenancy.actors import cli_actor
from tests.lab_helpers import order_for, receive_all, result

S = ResultState
NAME = "LEFEVRE"  # the synthetic patient's name, sent in PID as analysers do




@pytest.fixture
def order(staff, patient):
    """HB and PLQ on one EDTA tube, K on a serum tube, all received."""
    order = order_for(staff.secretary, patient.id, "HB", "PLQ", "K")
    receive_all(staff.secretary, order)
    return order


def barcode(order, specimen_type: str) -> str:
    return order.specimens.get(specimen_type=specimen_type).barcode


def oru(groups: list[tuple[str, list[str]]], control_id: str = "MSG00001",
        message_type: str = "ORU^R01") -> str:
    """groups: (barcode, OBX lines without the set id)."""
    segments = [f"MSH|^~\\&|SYSMEX|LABO|COFFRE|750000010|20240312083000||{message_type}|"
                f"{control_id}|P|2.5",
                f"PID|1||PAT0001^^^LABO^PI||{NAME}^CLAIRE||19850314|F"]
    for index, (code, observations) in enumerate(groups, start=1):
        segments.append(f"OBR|{index}|ORD{index}|{code}|CBC|||20240312080000")
        segments += [f"OBX|{n}|{obs}" for n, obs in enumerate(observations, start=1)]
    return "\r".join(segments) + "\r"


def states(order) -> dict[str, str]:
    return {r.loinc: r.state for r in Result.unscoped.filter(order=order)}


def test_an_oru_records_values_on_the_matched_specimen(lab_a, staff, order):
    message = oru([(barcode(order, "EDTA"), ["NM|718-7^Hemoglobin^LN||13.7|g/dL|||N|||F",
                                             "NM|777-3^Platelets^LN||251|10*9/L|||N|||F"])])
    outcome = analyser.import_message(lab_a.id, message)
    assert (outcome.code, outcome.recorded, outcome.control_id) == ("AA", 2, "MSG00001")
    assert hl7v2.ack_code(outcome.ack) == "AA"
    for code in ("HB", "PLQ"):
        row = result(order, code)
        assert (row.state, row.source) == (S.IN_ANALYSIS, "analyser")
    assert result(order, "K").state == S.RECEIVED
    values = {v.test.code: v.value for v in access.access_order(staff.biologist,
                                                                order.id).results}
    assert values["HB"] == "13.7" and values["PLQ"] == "251"


REFUSED = {
    "unknown barcode": (lambda o: oru([("999999999901", ["NM|718-7^Hb^LN||13.7|g/dL"])]),
                        "AE", "unknown"),
    "unknown test code": (lambda o: oru([(barcode(o, "EDTA"), ["NM|ZZZ9^What^L||13.7|x"])]),
                          "AE", "ZZZ9"),
    "test not ordered": (lambda o: oru([(barcode(o, "EDTA"), ["NM|GB^Leuco^L||13.7|G/L"])]),
                         "AE", "waiting"),
    "non-numeric NM": (lambda o: oru([(barcode(o, "EDTA"), ["NM|718-7^Hb^LN||TREIZE|g/dL"])]),
                       "AE", "OBX"),
    "wrong message type": (lambda o: oru([(barcode(o, "EDTA"), ["NM|718-7^Hb^LN||13.7|g/dL"])],
                                         message_type="ADT^A01"), "AR", "MSH-9"),
    "one bad observation among good ones": (
        lambda o: oru([(barcode(o, "EDTA"), ["NM|718-7^Hb^LN||13.7|g/dL",
                                             "NM|ZZZ9^What^L||13.7|x"])]), "AE", "OBX 2"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_bad_message_is_refused_and_changes_nothing(lab_a, order, case):
    build, code, named = REFUSED[case]
    before = states(order)
    outcome = analyser.import_message(lab_a.id, build(order))
    assert outcome.code == code and outcome.recorded == 0
    assert hl7v2.ack_code(outcome.ack) == code
    assert named in outcome.text
    assert states(order) == before == dict.fromkeys(before, S.RECEIVED)
    for secret in (NAME, "CLAIRE", "13.7", "TREIZE"):
        assert secret not in outcome.ack


def test_a_file_of_three_messages_records_the_good_ones(lab_a, order):
    edta = barcode(order, "EDTA")
    data = "\n".join([
        oru([(edta, ["NM|HB^Hemoglobine^99LOCAL||12.4|g/dL"])], control_id="MSG1"),
        oru([(edta, ["NM|PLQ^Plaquettes^99LOCAL||abc|G/L"])], control_id="MSG2"),
        oru([(edta, ["NM|PLQ^Plaquettes^99LOCAL||180|G/L"])], control_id="MSG3"),
    ])
    outcomes = analyser.import_stream(lab_a.id, data.encode("latin-1"), channel="cli")
    assert [(o.control_id, o.code) for o in outcomes] == [("MSG1", "AA"), ("MSG2", "AE"),
                                                          ("MSG3", "AA")]
    assert result(order, "HB").state == result(order, "PLQ").state == S.IN_ANALYSIS
    assert all(NAME not in o.ack and "abc" not in o.ack for o in outcomes)


def test_local_analyser_codes_map_to_the_catalogue(lab_a, staff, order):
    message = oru([(barcode(order, "EDTA"), ["NM|HB^Hemoglobine^99LOCAL||9,8|g/dL"]),
                   (barcode(order, "SERUM"), ["NM|K^Potassium^L||4.1|mmol/L"])])
    outcome = analyser.import_message(lab_a.id, message)
    assert (outcome.code, outcome.recorded) == ("AA", 2)
    views = {v.test.loinc: v for v in access.access_order(staff.biologist, order.id).results}
    assert views["718-7"].value == "9.8" and views["718-7"].flag == "L"
    assert views["2823-3"].value == "4.1"


def test_export_round_trips_the_validated_values_without_the_name(lab_a, staff, patient,
                                                                 order):
    workflow.enter_results(staff.technician, [
        workflow.Entry(result(order, "HB").id, "13.7"),
        workflow.Entry(result(order, "K").id, "4.2")])
    ids = [result(order, "HB").id, result(order, "K").id]
    workflow.validate_technically(staff.technician, ids)
    workflow.validate_biologically(staff.biologist, ids)
    text = analyser.export_oru(cli_actor(lab_a.id), order.id)
    message = hl7v2.parse_oru(text)
    values = {obs.code: obs.value for group in message.groups for obs in group.observations}
    assert values == {"718-7": "13.7", "2823-3": "4.2"}  # PLQ is not validated
    assert {g.specimen_barcode for g in message.groups} == {barcode(order, "EDTA"),
                                                            barcode(order, "SERUM")}
    pid = next(s for s in text.split("\r") if s.startswith("PID|"))
    assert pid.split("|")[3] == str(patient.id)
    for identity in ("Lef", "LEF", "Claire", "CLAIRE", "1985", "Martin", "MARTIN"):
        assert identity not in text


@pytest.mark.django_db(transaction=True)
def test_the_mllp_listener_records_a_message_and_answers_aa(lab_a, order):
    from django.db import connection

    def handle(text: str) -> str:
        try:
            return analyser.import_message(lab_a.id, text, channel="hl7").ack
        finally:
            connection.close()

    server = mllp.MllpServer(handle, "127.0.0.1", 0, allowed=mllp.AllowList(["127.0.0.1"]))
    server.start_background()
    try:
        ack = mllp.send("127.0.0.1", server.port,
                        oru([(barcode(order, "SERUM"), ["NM|2823-3^K^LN||4.4|mmol/L"])]))
        refused = mllp.send("127.0.0.1", server.port,
                            oru([("000000000000", ["NM|2823-3^K^LN||4.4|mmol/L"])],
                                control_id="MSG00002"))
    finally:
        server.shutdown()
    assert hl7v2.ack_code(ack) == "AA" and "MSG00001" in ack
    assert hl7v2.ack_code(refused) == "AE" and "MSG00002" in refused
    row = result(order, "K")
    assert (row.state, row.source) == (S.IN_ANALYSIS, "analyser")


def test_a_barcode_of_another_lab_gets_the_same_refusal_as_an_unknown_one(lab_a, lab_b,
                                                                           order):
    """Lab A's analyser (or whoever reaches lab A's listener) cannot tell a barcode that
    exists in lab B from one that exists nowhere: one text, the barcode it sent."""
    from coffre.identity.access import create_patient
    from tests.conftest import patient_row
    from tests.lab_helpers import staff_of

    staff_b = staff_of(lab_b, suffix="b")
    patient_b = create_patient(staff_b.secretary, patient_row())  # same person, lab B
    order_for(staff_b.secretary, patient_b.id, "K")
    order_b = order_for(staff_b.secretary, patient_b.id, "K")  # numbered past lab A's
    receive_all(staff_b.secretary, order_b)
    foreign = barcode(order_b, "SERUM")
    unknown = "990101000101"
    assert not order.specimens.filter(barcode__in=[foreign, unknown]).exists()
    texts = {}
    for code in (foreign, unknown):
        outcome = analyser.import_message(
            lab_a.id, oru([(code, ["NM|2823-3^K^LN||4.4|mmol/L"])]))
        assert outcome.code == "AE"
        texts[code] = outcome.text.replace(code, "<barcode>")
    assert texts[foreign] == texts[unknown] == (
        "OBR 1: specimen barcode '<barcode>' is unknown in this lab")
    assert result(order_b, "K").state == S.RECEIVED
