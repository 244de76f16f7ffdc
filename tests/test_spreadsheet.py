"""coffre.spreadsheet: a cell that a spreadsheet would run as a formula is written as
text, and read back exactly."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from coffre.spreadsheet import csv_line, neutralise, restore


def test_formula_cells_get_an_apostrophe_and_numbers_do_not():
    assert neutralise("=1+1") == "'=1+1"
    assert neutralise("@SUM(A1:A9)") == "'@SUM(A1:A9)"
    assert neutralise("-2+3+cmd|' /C calc'!A0") == "'-2+3+cmd|' /C calc'!A0"
    assert neutralise("+33 6 12") == "'+33 6 12"
    assert neutralise("\t=1") == "'\t=1" and neutralise("\r=1") == "'\r=1"
    for plain in ("+33612345678", "-3", "-1.5", "Dupont", "", "12 rue des Lilas"):
        assert neutralise(plain) == plain


def test_a_written_line_reads_back_as_text_cells():
    line = csv_line(["=cmd", "a,b", "-", "ok"])
    assert next(csv.reader(io.StringIO(line))) == ["'=cmd", "a,b", "'-", "ok"]


@given(st.text())
def test_restore_undoes_neutralise(value):
    assert restore(neutralise(value)) == value
