"""PDF rendering of the lab report (compte rendu) and of specimen label sheets.

Plain data in, bytes out: no Django, no database, and nothing is ever written to disk
(reports are generated on demand and never stored in clear). The PDF metadata never holds
the patient's identity, because document indexes (desktop search, mail gateways) read it.

Only the built-in Helvetica fonts are used; they are WinAnsi encoded, which covers French
accents and "µ". Any character outside that encoding is replaced (see `pdf_text`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

__all__ = [
    "Label",
    "Receipt",
    "ReportData",
    "ReportLine",
    "ReportSection",
    "render_labels",
    "render_receipt",
    "render_report",
]

CREATOR = "Coffre"


# --------------------------------------------------------------------------- data


@dataclass
class ReportLine:
    label: str  # "Hémoglobine"
    value: str  # already formatted in French: "12,5", "< 0,5", "Négatif"
    unit: str = ""
    reference: str = ""  # "13,0 – 17,0"
    flag: str = ""  # "", "L", "H", "LL", "HH"
    previous: str = ""  # "13,1 (12/03/2019)"
    comment: str = ""
    corrected: bool = False


@dataclass
class ReportSection:
    title: str  # "Hématologie" or a panel label
    lines: list[ReportLine]


@dataclass
class ReportData:
    lab_name: str
    lab_finess: str
    lab_address: str
    order_number: str
    patient_name: str  # "DUPONT Marie"
    patient_birth_date: str  # "12/03/1961"
    patient_sex: str  # "F" / "M"
    patient_nir: str = ""
    prescriber: str = ""  # "Dr Jean Martin (RPPS 10003456789)"
    collected_at: str = ""  # "12/03/2024 08:30"
    received_at: str = ""
    printed_at: str = ""
    sections: list[ReportSection] = field(default_factory=list)
    validated_by: list[str] = field(default_factory=list)  # biologists' names
    partial: bool = False
    amended: bool = False
    amendment_note: str = ""
    reference: str = ""  # opaque document id printed small in the footer


@dataclass
class Label:
    barcode: str  # Code 128 content, e.g. "2611280001-01"
    order_number: str
    patient_line: str  # e.g. "DUPONT M. 12/03/1961"
    specimen: str  # "Sang EDTA"
    collected_at: str = ""


# --------------------------------------------------------------------------- text

# Characters outside WinAnsi that lab data plausibly contains, with a legible stand-in.
_REPLACEMENTS = {
    "≥": ">=",
    "≤": "<=",
    "≠": "!=",
    "≈": "~",
    "→": "->",
    "←": "<-",
    "↑": "H",
    "↓": "B",
    "−": "-",  # minus sign
    "‐": "-",  # hyphen
    "‑": "-",  # non-breaking hyphen
    "‒": "-",  # figure dash
    "\u202f": "\xa0",  # narrow no-break space (French thousands separator)
    "\u2009": " ",  # thin space
    "\u2007": " ",  # figure space
    "³": "3",
    "⁹": "9",
    "¹": "1",
    "⁰": "0",
    "⁶": "6",
    "ⁱ": "i",
    "Ω": "Ohm",
    "α": "alpha",
    "β": "beta",
    "γ": "gamma",
    "δ": "delta",
    "κ": "kappa",
    "λ": "lambda",
    "ß": "ss",
}


def pdf_text(text: str) -> str:
    """`text` restricted to what the WinAnsi-encoded Helvetica fonts can draw."""
    out: list[str] = []
    for char in text:
        try:
            char.encode("cp1252")
        except UnicodeEncodeError:
            out.append(_REPLACEMENTS.get(char, "?"))
        else:
            # Control characters would corrupt the text stream; keep line breaks as spaces.
            out.append(" " if char in "\t\r\n" or ord(char) < 32 else char)
    return "".join(out)


def markup(text: str) -> str:
    """`text` safe to put in Paragraph markup."""
    return escape(pdf_text(text))


def _fit(text: str, font: str, size: float, width: float) -> str:
    """`text` shortened with an ellipsis so that it fits in `width` points."""
    text = pdf_text(text)
    if stringWidth(text, font, size) <= width:
        return text
    while text and stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text.rstrip() + "…"


# --------------------------------------------------------------------------- report

_PAGE_W, _PAGE_H = A4
_MARGIN_X = 15 * mm
_MARGIN_TOP = 14 * mm
_MARGIN_BOTTOM = 22 * mm  # room for the footer
_CONTENT_W = _PAGE_W - 2 * _MARGIN_X
_FRAME_PAD = 6  # reportlab Frame's default padding, in points

_INK = colors.HexColor("#1A1A1A")
_MUTED = colors.HexColor("#555555")
_RULE = colors.HexColor("#9AA5B1")
_HEAD_BG = colors.HexColor("#E4EAF1")
_SECTION_INK = colors.HexColor("#1F3A5F")
_CRITICAL = colors.HexColor("#B00000")
_ZEBRA = colors.HexColor("#F6F8FA")

_FLAGS = {  # stored flag -> (printed flag, critical)
    "L": ("B", False),
    "H": ("H", False),
    "LL": ("BB", True),
    "HH": ("HH", True),
}

_COLUMNS = ("Analyse", "Résultat", "Unité", "Valeurs de référence", "Antériorité")
_COL_W = [c * mm for c in (51, 30, 26, 36, 37)]


def paragraph_style(name: str, **kwargs: Any) -> ParagraphStyle:
    base: dict[str, Any] = {
        "fontName": "Helvetica",
        "fontSize": 9,
        "leading": 11,
        "textColor": _INK,
    }
    base.update(kwargs)
    return ParagraphStyle(name, **base)


STYLES = {
    "lab_name": paragraph_style("lab_name", fontName="Helvetica-Bold", fontSize=13, leading=16),
    "lab": paragraph_style("lab", fontSize=8.5, leading=10.5, textColor=_MUTED),
    "box_title": paragraph_style(
        "box_title", fontName="Helvetica-Bold", fontSize=7, leading=9, textColor=_MUTED
    ),
    "patient": paragraph_style("patient", fontName="Helvetica-Bold", fontSize=12, leading=15),
    "ident": paragraph_style("ident", fontSize=9, leading=11.5),
    "meta": paragraph_style("meta", fontSize=8.5, leading=10.5),
    "title": paragraph_style(
        "title", fontName="Helvetica-Bold", fontSize=15, leading=19, alignment=TA_CENTER
    ),
    "banner": paragraph_style(
        "banner",
        fontName="Helvetica-Bold",
        fontSize=11,
        leading=14,
        alignment=TA_CENTER,
        textColor=colors.white,
    ),
    "banner_note": paragraph_style(
        "banner_note", fontSize=8.5, leading=10.5, alignment=TA_CENTER, textColor=colors.white
    ),
    "section": paragraph_style(
        "section",
        fontName="Helvetica-Bold",
        fontSize=10.5,
        leading=13,
        textColor=_SECTION_INK,
    ),
    "th": paragraph_style("th", fontName="Helvetica-Bold", fontSize=8, leading=10,
                          textColor=_MUTED),
    "th_right": paragraph_style(
        "th_right",
        fontName="Helvetica-Bold",
        fontSize=8,
        leading=10,
        textColor=_MUTED,
        alignment=TA_RIGHT,
    ),
    "cell": paragraph_style("cell", fontSize=9, leading=11),
    "value": paragraph_style("value", fontSize=9, leading=11, alignment=TA_RIGHT),
    "small": paragraph_style("small", fontSize=8, leading=10, textColor=_MUTED),
    "comment": paragraph_style(
        "comment",
        fontName="Helvetica-Oblique",
        fontSize=7.5,
        leading=9.5,
        textColor=_MUTED,
        leftIndent=8,
    ),
    "legend": paragraph_style("legend", fontSize=7.5, leading=9.5, textColor=_MUTED),
    "validation": paragraph_style("validation", fontSize=9, leading=12),
}


def _header(data: ReportData) -> list[Flowable]:
    lab_cell = [
        Paragraph(markup(data.lab_name), STYLES["lab_name"]),
        Paragraph("<br/>".join(map(markup, data.lab_address.splitlines())), STYLES["lab"]),
        Paragraph(f"FINESS {markup(data.lab_finess)}", STYLES["lab"]),
    ]
    sex = {"F": "Féminin", "M": "Masculin"}.get(data.patient_sex.upper(), data.patient_sex)
    born = {"F": "Née le", "M": "Né le"}.get(data.patient_sex.upper(), "Né(e) le")
    patient_cell: list[Flowable] = [
        Paragraph("PATIENT", STYLES["box_title"]),
        Paragraph(markup(data.patient_name), STYLES["patient"]),
        Paragraph(
            f"{born} {markup(data.patient_birth_date)} — Sexe : {markup(sex)}", STYLES["ident"]
        ),
    ]
    if data.patient_nir:
        patient_cell.append(Paragraph(f"NIR : {markup(data.patient_nir)}", STYLES["ident"]))

    top = Table(
        [[lab_cell, patient_cell]],
        colWidths=[_CONTENT_W * 0.52, _CONTENT_W * 0.48],
        style=TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (0, 0), 0),
                ("BOX", (1, 0), (1, 0), 0.8, _RULE),
                ("LEFTPADDING", (1, 0), (1, 0), 8),
                ("TOPPADDING", (1, 0), (1, 0), 6),
                ("BOTTOMPADDING", (1, 0), (1, 0), 7),
            ]
        ),
    )

    def meta(label: str, value: str) -> Paragraph:
        return Paragraph(
            f"<font color='#555555'>{label}</font>&nbsp; {markup(value or '—')}", STYLES["meta"]
        )

    details = Table(
        [
            [meta("Dossier N°", data.order_number), meta("Prescripteur :", data.prescriber)],
            [meta("Prélevé le", data.collected_at), meta("Reçu le", data.received_at)],
            [meta("Édité le", data.printed_at), Paragraph("", STYLES["meta"])],
        ],
        colWidths=[_CONTENT_W * 0.4, _CONTENT_W * 0.6],
        style=TableStyle(
            [
                ("LINEABOVE", (0, 0), (-1, 0), 0.5, _RULE),
                ("LINEBELOW", (0, -1), (-1, -1), 0.5, _RULE),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                ("TOPPADDING", (0, 0), (-1, 0), 5),
                ("BOTTOMPADDING", (0, -1), (-1, -1), 5),
            ]
        ),
    )
    return [
        top,
        Spacer(0, 5 * mm),
        details,
        Spacer(0, 4 * mm),
        Paragraph("COMPTE RENDU D'EXAMENS DE BIOLOGIE MÉDICALE", STYLES["title"]),
        Spacer(0, 2 * mm),
    ]


def _banner(title: str, note: str, color: colors.Color) -> Table:
    cell: list[Flowable] = [Paragraph(markup(title), STYLES["banner"])]
    if note:
        cell.append(Paragraph(markup(note), STYLES["banner_note"]))
    return Table(
        [[cell]],
        colWidths=[_CONTENT_W],
        style=TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), color),
                ("TOPPADDING", (0, 0), (-1, -1), 4),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
            ]
        ),
        spaceBefore=2 * mm,
        spaceAfter=1 * mm,
    )


def _value_markup(line: ReportLine) -> str:
    printed, critical = _FLAGS.get(line.flag.upper(), ("", False))
    value = markup(line.value)
    if printed:
        text = f"<b>{value}&nbsp;&nbsp;{printed}</b>"
        if critical:
            text = f"<font color='#B00000'>{text}</font>"
    else:
        text = value
    if line.corrected:
        text += "<br/><font size='7' color='#555555'><i>(corrigé)</i></font>"
    return text


def _section_table(section: ReportSection) -> Table:
    # The section title is the table's first row, so that it can never be left alone at the
    # bottom of a page, and it is repeated with the column headers on the next one.
    rows: list[list[Any]] = [
        [Paragraph(markup(section.title), STYLES["section"]), "", "", "", ""],
        [
            Paragraph(_COLUMNS[0], STYLES["th"]),
            Paragraph(_COLUMNS[1], STYLES["th_right"]),
            Paragraph(_COLUMNS[2], STYLES["th"]),
            Paragraph(_COLUMNS[3], STYLES["th"]),
            Paragraph(_COLUMNS[4], STYLES["th"]),
        ],
    ]
    style: list[tuple[Any, ...]] = [
        ("SPAN", (0, 0), (-1, 0)),
        ("BACKGROUND", (0, 1), (-1, 1), _HEAD_BG),
        ("LINEBELOW", (0, 1), (-1, 1), 0.6, _RULE),
        ("LINEBELOW", (0, -1), (-1, -1), 0.6, _RULE),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 2.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
        ("LEFTPADDING", (0, 0), (-1, -1), 4),
        ("RIGHTPADDING", (0, 0), (-1, -1), 4),
        ("RIGHTPADDING", (1, 0), (1, -1), 9),
        ("LEFTPADDING", (0, 0), (0, 0), 0),
        ("TOPPADDING", (0, 0), (-1, 0), 9),
        ("BOTTOMPADDING", (0, 0), (-1, 0), 3),
    ]
    for index, line in enumerate(section.lines):
        first = len(rows)
        label_style = STYLES["cell"]
        label = markup(line.label)
        if line.flag.upper() in _FLAGS:
            label = f"<b>{label}</b>"
        rows.append(
            [
                Paragraph(label, label_style),
                Paragraph(_value_markup(line), STYLES["value"]),
                Paragraph(markup(line.unit), STYLES["cell"]),
                Paragraph(markup(line.reference), STYLES["small"]),
                Paragraph(markup(line.previous), STYLES["small"]),
            ]
        )
        if line.comment:
            rows.append([Paragraph(markup(line.comment), STYLES["comment"]), "", "", "", ""])
            style += [
                ("SPAN", (0, first + 1), (-1, first + 1)),
                ("TOPPADDING", (0, first + 1), (-1, first + 1), 0),
                ("BOTTOMPADDING", (0, first), (-1, first), 0.5),
                ("NOSPLIT", (0, first), (-1, first + 1)),
            ]
        if index % 2 == 1:
            style.append(("BACKGROUND", (0, first), (-1, len(rows) - 1), _ZEBRA))
    return Table(rows, colWidths=_COL_W, repeatRows=2, style=TableStyle(style))


def _closing(data: ReportData) -> list[Flowable]:
    legend = (
        "Légende : <b>B</b> inférieur aux valeurs de référence, <b>H</b> supérieur aux "
        "valeurs de référence, <font color='#B00000'><b>BB / HH</b></font> valeur critique. "
        "<i>(corrigé)</i> : résultat modifié après une première diffusion."
    )
    names = ", ".join(data.validated_by)
    if data.validated_by:
        validation = f"Compte rendu validé par : <b>{markup(names)}</b>, biologiste(s)."
    else:
        validation = "<b>Compte rendu non validé.</b>"
    return [
        Spacer(0, 4 * mm),
        KeepTogether(
            [
                Paragraph(legend, STYLES["legend"]),
                Spacer(0, 3 * mm),
                Paragraph(validation, STYLES["validation"]),
            ]
        ),
    ]


def _canvas_maker(data: ReportData) -> type[Canvas]:
    """A canvas class that draws "Page N / M" footers once the page count is known."""
    order = pdf_text(data.order_number)
    validated = "Validé par : " + (pdf_text(", ".join(data.validated_by)) or "—")
    running = pdf_text(
        f"{data.patient_name} — né(e) le {data.patient_birth_date} — Dossier N° {order}"
    )
    trace = pdf_text(data.reference)

    class NumberedCanvas(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # reportlab's camelCase API
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self._decorate(total)
                super().showPage()
            super().save()

        def _decorate(self, total: int) -> None:
            page = self.getPageNumber()
            self.saveState()
            self.setFillColor(_MUTED)
            self.setStrokeColor(_RULE)
            if page > 1:  # identity on every sheet, in case pages get separated
                top = _PAGE_H - 9 * mm
                self.setFont("Helvetica", 7.5)
                self.drawString(_MARGIN_X, top, _fit(running, "Helvetica", 7.5, _CONTENT_W))
                self.setLineWidth(0.4)
                self.line(_MARGIN_X, top - 2 * mm, _PAGE_W - _MARGIN_X, top - 2 * mm)
            y = 15 * mm
            self.setLineWidth(0.5)
            self.line(_MARGIN_X, y + 4 * mm, _PAGE_W - _MARGIN_X, y + 4 * mm)
            self.setFont("Helvetica-Bold", 8)
            page_text = f"Page {page} / {total}"
            self.drawRightString(_PAGE_W - _MARGIN_X, y, page_text)
            room = _CONTENT_W - stringWidth(page_text, "Helvetica-Bold", 8) - 8 * mm
            self.setFont("Helvetica", 8)
            self.drawString(_MARGIN_X, y, _fit(f"Dossier N° {order}", "Helvetica", 8, room))
            self.drawString(_MARGIN_X, y - 4 * mm, _fit(validated, "Helvetica", 8, room))
            if trace:
                self.setFont("Helvetica", 6)
                self.drawRightString(_PAGE_W - _MARGIN_X, y - 4 * mm, f"Réf. {trace}")
            self.restoreState()

    return NumberedCanvas


def render_report(data: ReportData) -> bytes:
    """The lab report as PDF bytes (A4, French)."""
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        # The frame pads its content by 6 pt: content starts exactly at the margins.
        leftMargin=_MARGIN_X - _FRAME_PAD,
        rightMargin=_MARGIN_X - _FRAME_PAD,
        topMargin=_MARGIN_TOP - _FRAME_PAD,
        bottomMargin=_MARGIN_BOTTOM - _FRAME_PAD,
        title=pdf_text(f"Compte rendu {data.order_number}"),
        author=pdf_text(data.lab_name),
        subject="Compte rendu d'examens de biologie médicale",
        creator=CREATOR,
        producer=CREATOR,
        keywords=[],
        lang="fr-FR",
    )
    story: list[Flowable] = _header(data)
    if data.amended:
        note = data.amendment_note or ""
        note = (note + " — " if note else "") + "Ce compte rendu annule et remplace le précédent."
        story.append(_banner("COMPTE RENDU RECTIFICATIF", note, _CRITICAL))
    if data.partial:
        story.append(
            _banner(
                "RÉSULTAT(S) PARTIEL(S)",
                "Des analyses sont en cours ; un compte rendu complet suivra.",
                colors.HexColor("#B35C00"),
            )
        )
    for section in data.sections:
        story.append(_section_table(section))
    story += _closing(data)
    doc.build(story, canvasmaker=_canvas_maker(data))
    return buffer.getvalue()


# --------------------------------------------------------------------------- labels

_LABEL_W = 70 * mm
_LABEL_H = 37 * mm
_LABEL_PAD = 4 * mm


def _draw_label(canvas: Canvas, label: Label) -> None:
    """One 70 x 37 mm label with its bottom-left corner at the origin."""
    inner = _LABEL_W - 2 * _LABEL_PAD
    x, top = 0.0, _LABEL_H
    left = _LABEL_PAD
    canvas.setFillColor(colors.black)

    canvas.setFont("Helvetica-Bold", 9)
    canvas.drawString(left, top - 6.5 * mm, _fit(label.patient_line, "Helvetica-Bold", 9, inner))

    # Bar width chosen so that the symbol, quiet zones included, fits the label.
    probe = Code128(label.barcode, barWidth=1, barHeight=10 * mm, quiet=True)
    bar_width = min(0.33 * mm, inner / probe.width)
    barcode = Code128(label.barcode, barWidth=bar_width, barHeight=10 * mm, quiet=True)
    barcode.drawOn(canvas, x + (_LABEL_W - barcode.width) / 2, top - 19 * mm)

    canvas.setFont("Helvetica", 7.5)
    canvas.drawCentredString(x + _LABEL_W / 2, top - 22.3 * mm, pdf_text(label.barcode))

    order = pdf_text(f"N° {label.order_number}")
    canvas.setFont("Helvetica", 7.5)
    canvas.drawRightString(x + _LABEL_W - _LABEL_PAD, top - 27 * mm, order)
    room = inner - stringWidth(order, "Helvetica", 7.5) - 2 * mm
    canvas.setFont("Helvetica-Bold", 8)
    canvas.drawString(left, top - 27 * mm, _fit(label.specimen, "Helvetica-Bold", 8, room))
    if label.collected_at:
        canvas.setFont("Helvetica", 7)
        canvas.drawString(
            left, top - 30.8 * mm, _fit(f"Prélevé le {label.collected_at}", "Helvetica", 7, inner)
        )


def render_labels(labels: list[Label], *, columns: int = 3, rows: int = 8) -> bytes:
    """A4 sheet(s) of adhesive labels, `columns` x `rows` per sheet, filled row by row."""
    if columns < 1 or rows < 1:
        raise ValueError("columns and rows must be positive")
    for label in labels:
        if not label.barcode or not label.barcode.isascii() or not label.barcode.isprintable():
            raise ValueError(f"not encodable in Code 128: {label.barcode!r}")
    cell_w = min(_LABEL_W, _PAGE_W / columns)
    cell_h = min(_LABEL_H, _PAGE_H / rows)
    # Centre the grid on the sheet (70 x 37 mm x 3 x 8 leaves 0.5 mm top and bottom).
    origin_x = (_PAGE_W - cell_w * columns) / 2
    origin_top = _PAGE_H - (_PAGE_H - cell_h * rows) / 2

    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, lang="fr-FR")
    canvas.setTitle("Étiquettes")
    canvas.setSubject("Étiquettes de prélèvement")
    canvas.setCreator(CREATOR)
    canvas.setProducer(CREATOR)
    per_page = columns * rows
    # A denser grid than 3 x 8 gets proportionally smaller labels.
    scale = min(cell_w / _LABEL_W, cell_h / _LABEL_H)
    for index, label in enumerate(labels):
        if index and index % per_page == 0:
            canvas.showPage()
        slot = index % per_page
        col, row = slot % columns, slot // columns
        canvas.saveState()
        canvas.translate(
            origin_x + col * cell_w + (cell_w - _LABEL_W * scale) / 2,
            origin_top - (row + 1) * cell_h + (cell_h - _LABEL_H * scale) / 2,
        )
        canvas.scale(scale, scale)
        _draw_label(canvas, label)
        canvas.restoreState()
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


# --------------------------------------------------------------------------- receipt


@dataclass
class Receipt:
    """The slip handed to the patient at collection: what was taken, and how to see the
    results online. The activation code appears only on this paper."""

    lab_name: str
    lab_address: str
    order_number: str
    patient_name: str
    collected_at: str
    tests: list[str]
    portal_url: str
    activation_code: str = ""  # empty when the patient already has an account


def render_receipt(receipt: Receipt) -> bytes:
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer, pagesize=A4, leftMargin=_MARGIN_X, rightMargin=_MARGIN_X,
        topMargin=_MARGIN_TOP, bottomMargin=_MARGIN_BOTTOM,
        title=pdf_text(f"Reçu {receipt.order_number}"), author=pdf_text(receipt.lab_name),
        subject="Reçu de prélèvement", creator=CREATOR, producer=CREATOR, lang="fr-FR")
    story: list[Flowable] = [
        Paragraph(markup(receipt.lab_name), STYLES["lab_name"]),
        Paragraph(markup(receipt.lab_address), STYLES["lab"]),
        Spacer(1, 8 * mm),
        Paragraph("Reçu de prélèvement", STYLES["title"]),
        Spacer(1, 6 * mm),
        Paragraph(f"<b>Patient :</b> {markup(receipt.patient_name)}", STYLES["ident"]),
        Paragraph(f"<b>Dossier N° :</b> {markup(receipt.order_number)}", STYLES["ident"]),
        Paragraph(f"<b>Prélevé le :</b> {markup(receipt.collected_at)}", STYLES["ident"]),
        Spacer(1, 4 * mm),
        Paragraph("<b>Analyses demandées :</b> " + markup(", ".join(receipt.tests)),
                  STYLES["ident"]),
        Spacer(1, 8 * mm),
    ]
    if receipt.activation_code:
        story += [
            Paragraph("Vos résultats en ligne", STYLES["section"]),
            Spacer(1, 2 * mm),
            Paragraph(
                f"Rendez-vous sur <b>{markup(receipt.portal_url)}</b>, choisissez "
                "« Activer mon compte » et saisissez ce code avec votre date de naissance. "
                "Le code sert une seule fois et expire dans 90 jours. Ne le communiquez "
                "à personne : le laboratoire ne vous le demandera jamais.", STYLES["ident"]),
            Spacer(1, 4 * mm),
            Paragraph(f"<font size=18><b>{markup(receipt.activation_code)}</b></font>",
                      paragraph_style("code", alignment=TA_CENTER, leading=24)),
        ]
    else:
        story.append(Paragraph(
            f"Vos résultats seront disponibles sur <b>{markup(receipt.portal_url)}</b> "
            "dès leur validation par le biologiste.", STYLES["ident"]))
    doc.build(story)
    return buffer.getvalue()
