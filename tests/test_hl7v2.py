"""HL7 v2.5 ORU^R01 parsing/building, ACKs and the MLLP listener (no database)."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest

from coffre.labwork import hl7v2, mllp
from coffre.labwork.hl7v2 import Hl7Error, Observation, ObservationGroup

# Synthetic patient only; the name and values below must never appear in error messages.
PATIENT_NAME = "TESTDUPONT"
MSH = "MSH|^~\\&|SYSMEX|LABO|COFFRE|750000010|20240312083000||ORU^R01|MSG00001|P|2.5"
PID = f"PID|1||PAT0001^^^LABO^PI||{PATIENT_NAME}^CAMILLE||19800101|F"
OBR = "OBR|1|ORD123|2403120042|CBC^Hemogramme|||20240312080000"
OBX = [
    "OBX|1|NM|718-7^Hemoglobin^LN||13.7|g/dL|12.0-16.0|N|||F|||20240312082500",
    "OBX|2|NM|789-8^Erythrocytes^LN||4.61|10*12/L|4.00-5.20|N|||F",
    "OBX|3|NM|6690-2^Leukocytes^LN||7,25|10*9/L|4.0-10.0|N|||F",
    "OBX|4|NM|777-3^Platelets^LN||412|10*9/L|150-400|H|||F",
    "OBX|5|NM|4544-3^Hematocrit^LN||41.2|%|36-46|N|||F",
    "OBX|6|NM|RETIC^Reticulocytes^99LOCAL||55.1|10*9/L|20-100|N|||F",
    "OBX|7|SN|1988-5^CRP^LN||<^0.5|mg/L|<5|N|||F",
]
SAMPLE = "\r".join([MSH, PID, OBR, *OBX]) + "\r"


def _message(*segments: str, msh: str = MSH) -> str:
    return "\r".join([msh, PID, *segments]) + "\r"


def _refusal(message: str) -> Hl7Error:
    with pytest.raises(Hl7Error) as caught:
        hl7v2.parse_oru(message)
    assert PATIENT_NAME not in str(caught.value)
    return caught.value


# --- parsing ----------------------------------------------------------------------------------


def test_a_hematology_oru_is_parsed_into_one_group_with_its_observations():
    oru = hl7v2.parse_oru(SAMPLE)
    assert (oru.control_id, oru.version) == ("MSG00001", "2.5")
    assert (oru.sending_application, oru.sending_facility) == ("SYSMEX", "LABO")
    assert (oru.receiving_application, oru.receiving_facility) == ("COFFRE", "750000010")
    [group] = oru.groups
    assert (group.placer_order, group.filler_order) == ("ORD123", "2403120042")
    assert group.specimen_barcode == "2403120042"
    assert group.universal_service == "CBC"
    assert [o.code for o in group.observations] == [
        "718-7", "789-8", "6690-2", "777-3", "4544-3", "RETIC", "1988-5",
    ]  # fmt: skip


def test_numeric_observations_keep_unit_range_flags_and_status():
    hb = hl7v2.parse_oru(SAMPLE).groups[0].observations[0]
    assert (hb.value_type, hb.value, hb.unit) == ("NM", "13.7", "g/dL")
    assert (hb.text, hb.coding_system) == ("Hemoglobin", "LN")
    assert (hb.reference_range, hb.abnormal_flags, hb.status) == ("12.0-16.0", "N", "F")


def test_a_decimal_comma_is_accepted_and_normalised():
    wbc = hl7v2.parse_oru(SAMPLE).groups[0].observations[2]
    assert wbc.value == "7.25"


def test_a_local_code_keeps_its_coding_system():
    retic = hl7v2.parse_oru(SAMPLE).groups[0].observations[5]
    assert (retic.code, retic.coding_system) == ("RETIC", "99LOCAL")


def test_a_structured_numeric_becomes_its_text_form():
    crp = hl7v2.parse_oru(SAMPLE).groups[0].observations[6]
    assert (crp.value_type, crp.value) == ("SN", "<0.5")


def test_obx_time_wins_over_obr_time_and_naive_times_are_paris():
    observations = hl7v2.parse_oru(SAMPLE).groups[0].observations
    assert observations[0].observed_at == datetime(2024, 3, 12, 7, 25, tzinfo=UTC)
    assert observations[1].observed_at == datetime(2024, 3, 12, 7, 0, tzinfo=UTC)


def test_timestamps_with_offsets_or_without_seconds_are_aware():
    assert hl7v2.parse_ts("202403120830+0100") == datetime(2024, 3, 12, 7, 30, tzinfo=UTC)
    assert hl7v2.parse_ts("20240712083000") == datetime(2024, 7, 12, 6, 30, tzinfo=UTC)
    assert hl7v2.parse_ts("") is None


def test_an_spm_barcode_wins_over_the_order_numbers():
    oru = hl7v2.parse_oru(_message(OBR, OBX[0], "SPM|1|TUBE987^LABO||BLD"))
    assert oru.groups[0].specimen_barcode == "TUBE987"


def test_the_placer_order_is_the_last_resort_barcode():
    oru = hl7v2.parse_oru(_message("OBR|1|ORD123||CBC", OBX[0]))
    assert oru.groups[0].specimen_barcode == "ORD123"


def test_coded_values_become_their_text():
    obx = "OBX|1|CE|883-9^ABO group^LN||A^Groupe A^L||||||F"
    assert hl7v2.parse_oru(_message(OBR, obx)).groups[0].observations[0].value == "Groupe A"


def test_escaped_text_values_are_unescaped():
    obx = "OBX|1|ST|COM^Comment^L||hemolysed \\T\\ lipemic||||||F"
    obs = hl7v2.parse_oru(_message(OBR, obx)).groups[0].observations[0]
    assert obs.value == "hemolysed & lipemic"


def test_older_versions_2_3_1_and_2_4_are_accepted():
    for version in ("2.3.1", "2.4", "2.5.1"):
        msh = MSH.replace("|P|2.5", f"|P|{version}")
        assert hl7v2.parse_oru(_message(OBR, OBX[0], msh=msh)).version == version


# --- splitting --------------------------------------------------------------------------------


def test_a_file_with_three_messages_newlines_and_mllp_framing_is_split():
    second = SAMPLE.replace("MSG00001", "MSG00002").replace("\r", "\n")
    third = SAMPLE.replace("MSG00001", "MSG00003").replace("\r", "\r\n")
    data = (
        "\ufeff" + SAMPLE.replace("\r", "\n") + "\n\n" + "\x0b" + second + "\x1c\r" + "\n" + third
    ).encode()
    messages = hl7v2.split_messages(data)
    assert len(messages) == 3
    assert all("\n" not in m and m.startswith("MSH|") for m in messages)
    ids = [hl7v2.parse_oru(m).control_id for m in messages]
    assert ids == ["MSG00001", "MSG00002", "MSG00003"]


def test_latin1_bytes_are_decoded():
    obx = "OBX|1|ST|COM^Comment^L||hémolysé||||||F"
    data = _message(OBR, obx).encode("latin-1")
    [message] = hl7v2.split_messages(data)
    assert hl7v2.parse_oru(message).groups[0].observations[0].value == "hémolysé"


# --- refusals ---------------------------------------------------------------------------------


def test_text_without_msh_is_rejected():
    error = _refusal(f"{PID}\r{OBR}\r")
    assert error.code == "AR"
    assert "MSH" in str(error)


def test_another_message_type_is_rejected_and_named():
    error = _refusal(_message(OBR, OBX[0], msh=MSH.replace("ORU^R01", "ADT^A01")))
    assert error.code == "AR"
    assert "MSH-9" in str(error) and "ADT^A01" in str(error)
    assert error.control_id == "MSG00001"


def test_an_unsupported_version_is_rejected():
    error = _refusal(_message(OBR, OBX[0], msh=MSH.replace("|P|2.5", "|P|2.2")))
    assert error.code == "AR"
    assert "MSH-12" in str(error)


def test_a_missing_control_id_is_rejected():
    error = _refusal(_message(OBR, OBX[0], msh=MSH.replace("MSG00001", "")))
    assert error.code == "AR"
    assert "MSH-10" in str(error)


def test_a_message_without_obr_is_an_application_error():
    error = _refusal(_message())
    assert error.code == "AE"
    assert "OBR" in str(error)


def test_an_obx_before_any_obr_is_an_application_error():
    error = _refusal(_message(OBX[0], OBR))
    assert error.code == "AE"
    assert "OBX before any OBR" in str(error)
    assert "13.7" not in str(error)


def test_an_obr_without_any_barcode_is_an_application_error():
    error = _refusal(_message("OBR|1|||CBC", OBX[0]))
    assert error.code == "AE"
    assert "OBR 1" in str(error) and "barcode" in str(error)


def test_an_obx_without_identifier_names_its_set_id():
    error = _refusal(_message(OBR, "OBX|4|NM|^Platelets^LN||412|10*9/L"))
    assert error.code == "AE"
    assert "OBX 4" in str(error) and "OBX-3" in str(error)
    assert "412" not in str(error)


def test_a_non_numeric_nm_value_names_the_obx_but_not_the_value():
    secret = "SECRETVALUE"
    error = _refusal(_message(OBR, f"OBX|2|NM|718-7^Hemoglobin^LN||{secret}|g/dL"))
    assert error.code == "AE"
    assert "OBX 2" in str(error) and "718-7" in str(error) and "OBX-5" in str(error)
    assert secret not in str(error)


# --- acknowledgments --------------------------------------------------------------------------


def test_an_ack_answers_the_original_control_id_with_a_fresh_id_of_its_own():
    now = datetime(2024, 3, 12, 8, 30, tzinfo=UTC)
    ack = hl7v2.build_ack(
        "MSG00001", "AA", receiving_application="SYSMEX", receiving_facility="LABO", now=now
    )
    msh, msa = ack.rstrip("\r").split("\r")
    fields = msh.split("|")
    assert fields[2:6] == ["COFFRE", "", "SYSMEX", "LABO"]
    assert fields[8] == "ACK^R01^ACK" and fields[11] == "2.5"
    assert fields[9] and fields[9] != "MSG00001"
    assert fields[6] == "20240312083000+0000"
    assert msa == "MSA|AA|MSG00001|"
    assert hl7v2.ack_code(ack) == "AA"


def test_a_negative_ack_carries_an_err_segment_with_the_escaped_text():
    ack = hl7v2.build_ack("MSG00001", "AE", "OBX 2 | bad ^ value & more ~ \\")
    segments = ack.rstrip("\r").split("\r")
    assert [s[:3] for s in segments] == ["MSH", "MSA", "ERR"]
    escaped = "OBX 2 \\F\\ bad \\S\\ value \\T\\ more \\R\\ \\E\\"
    assert segments[1] == f"MSA|AE|MSG00001|{escaped}"
    assert segments[2].endswith(escaped)
    assert hl7v2.ack_code(ack) == "AE"
    assert hl7v2.build_ack("X", "AR", "no").count("ERR|") == 1


def test_escape_and_unescape_are_inverse():
    text = "a|b^c&d~e\\f\nline"
    assert hl7v2.unescape(hl7v2.escape(text)) == text
    assert hl7v2.unescape("\\X41\\ \\.br\\ \\Z\\") == "A \n \\Z\\"


# --- building ---------------------------------------------------------------------------------


def _groups() -> list[ObservationGroup]:
    at = datetime(2024, 3, 12, 8, 25, tzinfo=UTC)
    observations = [
        Observation("1", "718-7", "LN", "Hemoglobin", "NM", "13.7", "g/dL", "12-16", "N", "F", at),
        Observation("2", "RETIC", "99LOCAL", "Retic", "NM", "55", "10*9/L", "", "", "F", at),
        Observation("3", "COM", "L", "Comment", "ST", "a|b^c & d", "", "", "", "C", None),
    ]  # fmt: skip
    return [
        ObservationGroup("2403120042", "ORD123", "2403120042", "CBC", observations),
        ObservationGroup("TUBE987", "ORD124", "", "CRP", observations[:1]),
    ]


def test_a_built_oru_round_trips_through_the_parser():
    groups = _groups()
    message = hl7v2.build_oru(
        control_id="OUT0001",
        sending_facility="750000010",
        receiving_facility="HOSP",
        groups=groups,
        patient_id="P-42",
    )
    oru = hl7v2.parse_oru(message)
    assert (oru.control_id, oru.version) == ("OUT0001", "2.5")
    assert (oru.sending_application, oru.sending_facility) == ("COFFRE", "750000010")
    assert oru.receiving_facility == "HOSP"
    assert oru.groups == groups


def test_a_built_oru_holds_only_the_internal_patient_id():
    message = hl7v2.build_oru(
        control_id="OUT0002",
        sending_facility="L",
        receiving_facility="H",
        groups=_groups(),
        patient_id="P-42",
        now=datetime(2024, 3, 12, 8, 0, tzinfo=UTC) + timedelta(hours=1),
    )
    [pid] = [s for s in message.split("\r") if s.startswith("PID")]
    assert pid == "PID|||P-42"


# --- MLLP -------------------------------------------------------------------------------------


def test_frames_are_popped_only_when_complete():
    buffer = bytearray(b"noise" + mllp.frame("MSH|one"))
    payload = mllp.frame("MSH|two")
    buffer += payload[:4]
    assert mllp.read_frames(buffer) == [b"MSH|one"]
    assert bytes(buffer) == payload[:4]
    buffer += payload[4:-1]
    assert mllp.read_frames(buffer) == []
    buffer += payload[-1:]
    assert mllp.read_frames(buffer) == [b"MSH|two"]
    assert buffer == bytearray()


def test_a_frame_is_utf8_between_start_and_end_bytes():
    assert mllp.frame("é") == b"\x0b\xc3\xa9\x1c\x0d"


LOCAL = mllp.AllowList(["127.0.0.1"])


def _ack_everything(message: str) -> str:
    try:
        oru = hl7v2.parse_oru(message)
    except Hl7Error as error:
        return hl7v2.build_ack(error.control_id, error.code, str(error))
    return hl7v2.build_ack(oru.control_id, "AA")


def _receive_frames(sock: socket.socket, count: int) -> list[str]:
    buffer, frames = bytearray(), []
    while len(frames) < count:
        chunk = sock.recv(4096)
        assert chunk, "server closed the connection"
        buffer += chunk
        frames += mllp.read_frames(buffer)
    return [f.decode() for f in frames]


@pytest.fixture
def server():
    listener = mllp.MllpServer(_ack_everything, allowed=LOCAL)
    listener.start_background()
    yield listener
    listener.shutdown()


def test_the_server_answers_two_messages_on_one_connection_and_another_client(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(mllp.frame(SAMPLE) + mllp.frame(SAMPLE.replace("ORU^R01", "ADT^A01")))
        first, second = _receive_frames(sock, 2)
    assert hl7v2.ack_code(first) == "AA" and "|MSG00001|" in first
    assert hl7v2.ack_code(second) == "AR"
    ack = mllp.send("127.0.0.1", server.port, SAMPLE.replace("MSG00001", "MSG00009"))
    assert hl7v2.ack_code(ack) == "AA" and "|MSG00009|" in ack


def test_the_server_closes_the_connection_when_the_handler_fails():
    def explode(message: str) -> str:
        raise RuntimeError("boom")

    listener = mllp.MllpServer(explode, allowed=LOCAL)
    listener.start_background()
    try:
        with pytest.raises(ConnectionError):
            mllp.send("127.0.0.1", listener.port, SAMPLE)
    finally:
        listener.shutdown()


def test_the_server_closes_connections_sending_oversized_frames(server, monkeypatch):
    monkeypatch.setattr(mllp, "MAX_FRAME", 1000)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(mllp.START + b"x" * 5000)
        assert sock.recv(10) == b""
