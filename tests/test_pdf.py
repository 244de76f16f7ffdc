"""The lab report and the specimen labels render as PDF bytes from plain data: identity,
results, flags, banners, page footers and safe metadata.

How fast a 3-page report renders is measured by ``bench/lab.py --only report`` (target
< 500 ms, against render_report alone in the same run), not asserted here: a timed test
fails on a busy machine and passes a slow change on a fast one."""

from __future__ import annotations

import io

from pypdf import PdfReader

from coffre.labwork.pdf import (
    Label,
    ReportData,
    ReportLine,
    ReportSection,
    render_labels,
    render_report,
)


def report(**overrides: object) -> ReportData:
    data = ReportData(
        lab_name="Laboratoire des Tilleuls",
        lab_finess="750000001",
        lab_address="12 rue des Tilleuls, 75011 Paris",
        order_number="2611280001",
        patient_name="DUPONT Marie",
        patient_birth_date="12/03/1961",
        patient_sex="F",
        patient_nir="2 61 03 75 111 222 33",
        prescriber="Dr Jean Martin (RPPS 10003456789)",
        collected_at="28/11/2026 08:30",
        received_at="28/11/2026 09:10",
        printed_at="28/11/2026 14:02",
        sections=[
            ReportSection(
                "Hématologie",
                [
                    ReportLine(
                        "Hémoglobine", "11,2", "g/dL", "12,0 – 16,0", "L", "13,1 (12/03/2019)"
                    ),
                    ReportLine("Leucocytes", "7,4", "G/L", "4,0 – 10,0"),
                    ReportLine(
                        "Plaquettes",
                        "38",
                        "G/L",
                        "150 – 400",
                        "LL",
                        comment="Contrôlé sur lame, absence d'agrégats.",
                    ),
                ],
            ),
            ReportSection(
                "Biochimie",
                [
                    ReportLine("Potassium", "6,9", "mmol/L", "3,5 – 5,0", "HH", corrected=True),
                    ReportLine("CRP", "< 0,5", "mg/L", "< 5"),
                    ReportLine("Commentaire technique", "Hémolyse & lipémie"),
                    ReportLine("DFG (CKD-EPI)", "≥ 90", "mL/min/1,73m²", "> 60"),
                    ReportLine("Vitamine B12", "350", "µmol/L", "150 – 600"),
                ],
            ),
        ],
        validated_by=["Dr Claire Bernard"],
    )
    for key, value in overrides.items():
        setattr(data, key, value)
    return data


def long_report() -> ReportData:
    sections = [
        ReportSection(
            f"Panel {s + 1}",
            [
                ReportLine(
                    f"Analyse {s * 30 + i + 1}",
                    f"{i},5",
                    "mmol/L",
                    "1,0 – 9,0",
                    "H" if i % 7 == 0 else "",
                    f"{i},4 (01/02/2025)",
                )
                for i in range(30)
            ],
        )
        for s in range(3)
    ]
    return report(sections=sections)


def text_of(pdf: bytes) -> str:
    """The text of every page, whitespace collapsed (cells wrap, flags sit after two spaces)."""
    reader = PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def pages_of(pdf: bytes) -> int:
    return len(PdfReader(io.BytesIO(pdf)).pages)


def test_the_report_is_pdf_bytes():
    pdf = render_report(report())
    assert isinstance(pdf, bytes)
    assert pdf.startswith(b"%PDF-")


def test_the_report_shows_the_lab_header_and_the_patient_identity():
    text = text_of(render_report(report()))
    for expected in (
        "Laboratoire des Tilleuls",
        "FINESS 750000001",
        "12 rue des Tilleuls, 75011 Paris",
        "DUPONT Marie",
        "12/03/1961",
        "Féminin",
        "2 61 03 75 111 222 33",
        "Dr Jean Martin (RPPS 10003456789)",
        "2611280001",
        "28/11/2026 08:30",
        "28/11/2026 09:10",
        "28/11/2026 14:02",
    ):
        assert expected in text, expected


def test_the_report_shows_each_result_with_its_unit_reference_and_previous_value():
    text = text_of(render_report(report()))
    for expected in (
        "Hématologie",
        "Biochimie",
        "Hémoglobine",
        "11,2",
        "g/dL",
        "12,0 – 16,0",
        "13,1 (12/03/2019)",
        "Plaquettes",
        "150 – 400",
        "Contrôlé sur lame, absence d'agrégats.",
        "mmol/L",
        "µmol/L",
        "mL/min/1,73m²",
    ):
        assert expected in text, expected


def test_abnormal_results_show_their_flag():
    text = text_of(render_report(report()))
    assert "11,2 B" in text
    assert "38 BB" in text
    assert "6,9 HH" in text


def test_values_with_markup_characters_render_verbatim():
    text = text_of(render_report(report()))
    assert "< 0,5" in text
    assert "Hémolyse & lipémie" in text


def test_characters_helvetica_cannot_draw_are_replaced():
    text = text_of(render_report(report()))
    assert ">= 90" in text
    assert "≥" not in text


def test_the_report_names_the_validating_biologist():
    text = text_of(render_report(report()))
    assert "Validé par : Dr Claire Bernard" in text


def test_a_corrected_result_is_marked():
    assert "(corrigé)" in text_of(render_report(report()))


def test_the_partial_banner_appears_only_on_a_partial_report():
    assert "RÉSULTAT(S) PARTIEL(S)" in text_of(render_report(report(partial=True)))
    assert "RÉSULTAT(S) PARTIEL(S)" not in text_of(render_report(report()))


def test_the_amended_banner_and_note_appear_only_on_an_amended_report():
    note = "Kaliémie corrigée après contrôle sur nouveau prélèvement."
    amended = text_of(render_report(report(amended=True, amendment_note=note)))
    assert "COMPTE RENDU RECTIFICATIF" in amended
    assert note in amended
    plain = text_of(render_report(report()))
    assert "COMPTE RENDU RECTIFICATIF" not in plain
    assert note not in plain


def test_the_document_reference_is_printed_for_tracing():
    text = text_of(render_report(report(reference="DOC-7f3a9c")))
    assert "DOC-7f3a9c" in text


def test_a_long_report_flows_over_three_pages_with_numbered_footers():
    pdf = render_report(long_report())
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 3
    for number, page in enumerate(reader.pages, start=1):
        text = page.extract_text()
        assert f"Page {number} / 3" in text
        assert "2611280001" in text
        assert "Validé par : Dr Claire Bernard" in text
    # The table header is repeated on the pages a section flows onto.
    assert "Valeurs de référence" in reader.pages[1].extract_text()
    assert "Analyse 90" in reader.pages[2].extract_text()


def test_the_metadata_names_the_order_but_never_the_patient():
    reader = PdfReader(io.BytesIO(render_report(report())))
    meta = reader.metadata
    assert meta is not None
    assert meta.title == "Compte rendu 2611280001"
    assert meta.creator == "Coffre"
    values = " ".join(str(value) for value in meta.values())
    for identity in ("DUPONT", "Marie", "12/03/1961", "2 61 03 75"):
        assert identity not in values


def labels(count: int) -> list[Label]:
    return [
        Label(
            barcode=f"2611280001-{n:02d}",
            order_number="2611280001",
            patient_line="DUPONT M. 12/03/1961",
            specimen="Sang EDTA",
            collected_at="28/11/2026 08:30",
        )
        for n in range(1, count + 1)
    ]


def test_thirty_labels_at_three_by_eight_take_two_sheets():
    assert pages_of(render_labels(labels(30), columns=3, rows=8)) == 2


def test_twenty_four_labels_fit_one_sheet():
    assert pages_of(render_labels(labels(24))) == 1


def test_a_label_shows_the_barcode_text_patient_specimen_and_order():
    text = text_of(render_labels(labels(2)))
    for expected in ("2611280001-01", "2611280001-02", "DUPONT M. 12/03/1961", "Sang EDTA"):
        assert expected in text, expected
    assert "N° 2611280001" in text


def test_the_label_sheet_metadata_holds_no_patient_identity():
    meta = PdfReader(io.BytesIO(render_labels(labels(1)))).metadata
    assert meta is not None
    assert meta.creator == "Coffre"
    assert "DUPONT" not in " ".join(str(value) for value in meta.values())
