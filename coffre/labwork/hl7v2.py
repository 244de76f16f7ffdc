"""HL7 v2.5 ORU^R01 parsing and building, and ACKs, for analyser results.

Pure Python (no Django) so the MLLP listener and the CLI can use it standalone.
Error messages name the segment, field and position but never echo values that could be
patient data (PID contents, OBX-5); only control ids and coded identifiers are echoed.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import hl7

PARIS = ZoneInfo("Europe/Paris")
ACCEPTED_VERSIONS = frozenset({"2.3.1", "2.4", "2.5", "2.5.1"})
# Batch envelopes wrap messages in files; they carry no result data.
_ENVELOPE_SEGMENTS = ("FHS", "BHS", "BTS", "FTS")
_NUMERIC = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)$")
_TS = re.compile(
    r"^(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?P<frac>\.\d{1,4})?(?P<tz>[+-]\d{4})?$"
)
_ESCAPES = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"}
_UNESCAPES = {"E": "\\", "F": "|", "S": "^", "T": "&", "R": "~", ".br": "\n", "H": "", "N": ""}
_ESCAPE_SEQ = re.compile(r"\\(E|F|S|T|R|H|N|\.br|X[0-9A-Fa-f]*)\\")


class Hl7Error(ValueError):
    """A message that cannot be accepted. `code` is "AR" (rejected: not parseable / wrong type /
    wrong version) or "AE" (application error: parseable but content wrong)."""

    def __init__(self, message: str, code: str = "AE", control_id: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.control_id = control_id


@dataclass
class Observation:
    set_id: str
    code: str  # OBX-3.1 identifier, e.g. "718-7" or local "HB"
    coding_system: str  # OBX-3.3, "LN" for LOINC, "" or "L"/"99LOCAL" for local
    text: str  # OBX-3.2
    value_type: str  # OBX-2: NM, ST, TX, CE/CWE, SN
    value: str  # OBX-5 as text
    unit: str  # OBX-6.1
    reference_range: str  # OBX-7
    abnormal_flags: str  # OBX-8
    status: str  # OBX-11
    observed_at: datetime | None  # OBX-14 or OBR-7


@dataclass
class ObservationGroup:
    specimen_barcode: str  # SPM-2, else OBR-3, else OBR-2
    placer_order: str  # OBR-2.1
    filler_order: str  # OBR-3.1
    universal_service: str  # OBR-4.1
    observations: list[Observation] = field(default_factory=list)


@dataclass
class OruMessage:
    control_id: str  # MSH-10
    sending_application: str  # MSH-3.1
    sending_facility: str  # MSH-4.1
    receiving_application: str
    receiving_facility: str
    version: str  # MSH-12
    groups: list[ObservationGroup] = field(default_factory=list)


# --- escaping ---------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Escape HL7 delimiters (standard encoding characters) and line breaks."""
    out = "".join(_ESCAPES.get(ch, ch) for ch in text)
    return out.replace("\r\n", "\\X0A\\").replace("\n", "\\X0A\\").replace("\r", "\\X0D\\")


def _decode_hex(hexdigits: str) -> str | None:
    if len(hexdigits) % 2:
        return None
    raw = bytes.fromhex(hexdigits)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _unescape_match(match: re.Match[str]) -> str:
    seq = match.group(1)
    if seq.startswith("X"):
        decoded = _decode_hex(seq[1:])
        return match.group(0) if decoded is None else decoded
    return _UNESCAPES[seq]


def unescape(text: str) -> str:
    """Undo HL7 escape sequences; unknown sequences are kept verbatim."""
    if "\\" not in text:
        return text
    return _ESCAPE_SEQ.sub(_unescape_match, text)


# --- splitting --------------------------------------------------------------------------------


def _decode(data: str | bytes) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Analysers often send ISO 8859-1; latin-1 never fails.
        return data.decode("latin-1")


def _segments(text: str) -> list[str]:
    text = text.lstrip("\ufeff").replace("\x0b", "\r").replace("\x1c", "\r")
    lines = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    return [line.lstrip("\ufeff") for line in lines if line.strip()]


def split_messages(data: str | bytes) -> list[str]:
    """Split a file or stream into messages, each normalised with \\r segment terminators."""
    messages: list[list[str]] = []
    for line in _segments(_decode(data)):
        if line.startswith(_ENVELOPE_SEGMENTS):
            continue
        if line.startswith("MSH") or not messages:
            messages.append([])
        messages[-1].append(line)
    return ["".join(seg + "\r" for seg in segs) for segs in messages]


# --- safe field access ------------------------------------------------------------------------


class _Seg:
    """Field/component access on a python-hl7 segment that returns "" instead of raising."""

    def __init__(self, segment: hl7.Segment, separators: str) -> None:
        self.name = str(segment[0])
        self._segment = segment
        self._rep, self._comp, self._sub = separators[2], separators[3], separators[4]

    def raw(self, num: int) -> str:
        """Field `num` as sent (first repetition, still escaped)."""
        if num >= len(self._segment):
            return ""
        return str(self._segment[num]).split(self._rep)[0]

    def repetitions(self, num: int) -> list[str]:
        if num >= len(self._segment):
            return []
        return str(self._segment[num]).split(self._rep)

    def components(self, num: int) -> list[str]:
        return self.raw(num).split(self._comp)

    def get(self, num: int, comp: int = 1, sub: int = 1) -> str:
        """Unescaped field num, component comp, sub-component sub (all 1-based)."""
        comps = self.components(num)
        if comp > len(comps):
            return ""
        subs = comps[comp - 1].split(self._sub)
        return unescape(subs[sub - 1]).strip() if sub <= len(subs) else ""


# --- timestamps -------------------------------------------------------------------------------


def parse_ts(value: str) -> datetime | None:
    """HL7 TS (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]) -> aware datetime; naive means Paris."""
    value = value.strip()
    if not value:
        return None
    m = _TS.match(value)
    if not m:
        raise ValueError("not an HL7 timestamp")
    g = m.groupdict()
    micro = round(float(g["frac"]) * 1_000_000) if g["frac"] else 0
    naive = datetime(
        int(g["y"]), int(g["mo"] or 1), int(g["d"] or 1),
        int(g["h"] or 0), int(g["mi"] or 0), int(g["s"] or 0), min(micro, 999_999),
    )  # fmt: skip
    if not g["tz"]:
        return naive.replace(tzinfo=PARIS)
    sign = -1 if g["tz"][0] == "-" else 1
    offset = timedelta(hours=int(g["tz"][1:3]), minutes=int(g["tz"][3:5]))
    return naive.replace(tzinfo=timezone(sign * offset))


def format_ts(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=PARIS)
    return moment.strftime("%Y%m%d%H%M%S%z")


def _ts_field(seg: _Seg, num: int, where: str, control_id: str) -> datetime | None:
    try:
        return parse_ts(seg.get(num))
    except ValueError:
        raise Hl7Error(
            f"{where}: {seg.name}-{num} is not a valid HL7 timestamp", "AE", control_id
        ) from None


# --- parsing ----------------------------------------------------------------------------------


def _parse_tree(message: str) -> tuple[list[_Seg], str]:
    segments = _segments(_decode(message))
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 8:
        raise Hl7Error("message does not start with an MSH segment", "AR")
    if any(s.startswith("MSH") for s in segments[1:]):
        raise Hl7Error("several messages in one; split them first", "AR")
    try:
        tree = hl7.parse("\r".join(segments))
        seps = tree.separators
        return [_Seg(seg, seps) for seg in tree], seps
    except Exception:  # python-hl7 raises assorted errors on malformed input
        raise Hl7Error("message is not parseable HL7", "AR") from None


def _check_header(msh: _Seg) -> str:
    control_id = msh.get(10)
    if not control_id:
        raise Hl7Error("MSH-10 message control id is missing", "AR")
    msg_type = f"{msh.get(9, 1)}^{msh.get(9, 2)}"
    if msg_type != "ORU^R01":
        raise Hl7Error(f"MSH-9 message type is {msg_type!r}, expected 'ORU^R01'", "AR", control_id)
    version = msh.get(12)
    if version not in ACCEPTED_VERSIONS:
        raise Hl7Error(
            f"MSH-12 version {version!r} is not supported (2.3.1, 2.4, 2.5, 2.5.1)",
            "AR",
            control_id,
        )
    return control_id


def _obx_value(obx: _Seg, value_type: str) -> str:
    if value_type == "SN":
        comps = [unescape(c).strip() for c in obx.components(5)] + ["", "", "", ""]
        return "".join(comps[:4])
    if value_type in ("CE", "CWE", "CNE"):
        return obx.get(5, 2) or obx.get(5, 1)
    if value_type == "NM":
        return obx.get(5)
    # Text types may repeat one line per repetition.
    return "\n".join(unescape(r) for r in obx.repetitions(5)).strip()


def _parse_obx(obx: _Seg, obr_time: datetime | None, control_id: str) -> Observation:
    set_id = obx.get(1)
    code = obx.get(3, 1)
    if not code:
        raise Hl7Error(f"OBX {set_id or '?'}: OBX-3 identifier is missing", "AE", control_id)
    where = f"OBX {set_id or '?'} ({code})"
    value_type = obx.get(2).upper()
    value = _obx_value(obx, value_type)
    if value_type == "NM" and value:
        if not _NUMERIC.match(value):
            raise Hl7Error(f"{where}: OBX-5 is not numeric for value type NM", "AE", control_id)
        value = value.replace(",", ".")
    return Observation(
        set_id=set_id, code=code, coding_system=obx.get(3, 3), text=obx.get(3, 2),
        value_type=value_type, value=value, unit=obx.get(6, 1), reference_range=obx.get(7),
        abnormal_flags=obx.get(8), status=obx.get(11),
        observed_at=_ts_field(obx, 14, where, control_id) or obr_time,
    )  # fmt: skip


def _spm_barcode(spm: _Seg) -> str:
    # SPM-2 is EIP: placer id ^ filler id, each an EI whose first sub-component is the id.
    return spm.get(2, 1, 1) or spm.get(2, 2, 1)


def _new_group(obr: _Seg) -> ObservationGroup:
    return ObservationGroup(
        specimen_barcode="",
        placer_order=obr.get(2, 1),
        filler_order=obr.get(3, 1),
        universal_service=obr.get(4, 1),
        observations=[],
    )


def _finish_group(group: ObservationGroup, set_id: str, control_id: str) -> None:
    group.specimen_barcode = group.specimen_barcode or group.filler_order or group.placer_order
    if not group.specimen_barcode:
        raise Hl7Error(
            f"OBR {set_id or '?'}: no specimen barcode (SPM-2, OBR-3 and OBR-2 are empty)",
            "AE",
            control_id,
        )


def _parse_groups(segments: list[_Seg], control_id: str) -> list[ObservationGroup]:
    groups: list[ObservationGroup] = []
    obr_ids: list[str] = []
    obr_time: datetime | None = None
    for position, seg in enumerate(segments, start=1):
        if seg.name == "OBR":
            groups.append(_new_group(seg))
            obr_ids.append(seg.get(1))
            obr_time = _ts_field(seg, 7, f"OBR {seg.get(1) or '?'}", control_id)
        elif seg.name == "OBX":
            if not groups:
                raise Hl7Error(f"segment {position}: OBX before any OBR", "AE", control_id)
            groups[-1].observations.append(_parse_obx(seg, obr_time, control_id))
        elif seg.name == "SPM" and groups and not groups[-1].specimen_barcode:
            groups[-1].specimen_barcode = _spm_barcode(seg)
    if not groups:
        raise Hl7Error("no OBR segment in the message", "AE", control_id)
    for group, set_id in zip(groups, obr_ids, strict=True):
        _finish_group(group, set_id, control_id)
    return groups


def parse_oru(message: str) -> OruMessage:
    """Parse one ORU^R01 message; raises Hl7Error with the ACK code to answer."""
    segments, _ = _parse_tree(message)
    msh = segments[0]
    control_id = _check_header(msh)
    return OruMessage(
        control_id=control_id,
        sending_application=msh.get(3, 1),
        sending_facility=msh.get(4, 1),
        receiving_application=msh.get(5, 1),
        receiving_facility=msh.get(6, 1),
        version=msh.get(12),
        groups=_parse_groups(segments[1:], control_id),
    )


# --- building ---------------------------------------------------------------------------------


def _msh(
    sender: tuple[str, str],
    receiver: tuple[str, str],
    message_type: str,
    control_id: str,
    now: datetime | None,
) -> str:
    """MSH with sender/receiver as (application, facility)."""
    fields = [
        "MSH", "^~\\&", escape(sender[0]), escape(sender[1]), escape(receiver[0]),
        escape(receiver[1]), format_ts(now or datetime.now(PARIS)), "", message_type,
        escape(control_id), "P", "2.5",
    ]  # fmt: skip
    return "|".join(fields)


def _new_control_id() -> str:
    return uuid.uuid4().hex[:20].upper()


_ERR_CODES = {
    "AE": "207^Application internal error^HL70357",
    "AR": "200^Unsupported message type^HL70357",
}


def build_ack(
    control_id: str,
    code: str,
    text: str = "",
    *,
    sending_application: str = "COFFRE",
    sending_facility: str = "",
    receiving_application: str = "",
    receiving_facility: str = "",
    now: datetime | None = None,
) -> str:
    """An ACK^R01^ACK v2.5 answering `control_id` with MSA-1 `code` (AA, AE or AR)."""
    if code not in ("AA", "AE", "AR"):
        raise ValueError(f"unknown acknowledgment code {code!r}")
    sender = (sending_application, sending_facility)
    receiver = (receiving_application, receiving_facility)
    segments = [
        _msh(sender, receiver, "ACK^R01^ACK", _new_control_id(), now),
        f"MSA|{code}|{escape(control_id)}|{escape(text[:80])}",
    ]
    if code != "AA":
        segments.append(f"ERR|||{_ERR_CODES[code]}|E||||{escape(text)}")
    return "".join(seg + "\r" for seg in segments)


def ack_code(ack: str) -> str:
    """MSA-1 of an ACK."""
    segments, _ = _parse_tree(ack)
    for seg in segments:
        if seg.name == "MSA":
            return seg.get(1)
    raise Hl7Error("no MSA segment in the acknowledgment", "AR")


def _is_numeric(value: str) -> bool:
    return bool(_NUMERIC.match(value))


def _obx(index: int, obs: Observation) -> str:
    value_type = "NM" if _is_numeric(obs.value) else "ST"
    fields = [
        "OBX", obs.set_id or str(index), value_type,
        f"{escape(obs.code)}^{escape(obs.text)}^{escape(obs.coding_system)}", "",
        escape(obs.value), escape(obs.unit), escape(obs.reference_range),
        escape(obs.abnormal_flags), "", "", escape(obs.status), "", "",
        format_ts(obs.observed_at) if obs.observed_at else "",
    ]  # fmt: skip
    return "|".join(fields)


def _group_segments(index: int, group: ObservationGroup) -> list[str]:
    segs = [
        f"OBR|{index}|{escape(group.placer_order)}|{escape(group.filler_order)}"
        f"|{escape(group.universal_service)}"
    ]
    segs += [_obx(i, obs) for i, obs in enumerate(group.observations, start=1)]
    # The barcode only needs an SPM when OBR-3/OBR-2 would not yield it on parsing.
    if group.specimen_barcode and group.specimen_barcode != (
        group.filler_order or group.placer_order
    ):
        segs.append(f"SPM|1|{escape(group.specimen_barcode)}")
    return segs


def build_oru(
    *,
    control_id: str,
    sending_facility: str,
    receiving_facility: str,
    groups: list[ObservationGroup],
    patient_id: str = "",
    now: datetime | None = None,
) -> str:
    """An ORU^R01 v2.5; OBX-3.3 is the observation's coding system ("LN" for LOINC)."""
    sender, receiver = ("COFFRE", sending_facility), ("", receiving_facility)
    segments = [_msh(sender, receiver, "ORU^R01^ORU_R01", control_id, now)]
    if patient_id:
        # Only the internal id: no name or other identity leaves in results messages.
        segments.append(f"PID|||{escape(patient_id)}")
    for index, group in enumerate(groups, start=1):
        segments += _group_segments(index, group)
    return "".join(seg + "\r" for seg in segments)
