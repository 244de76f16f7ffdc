"""The lab test catalogue (plain Python: no database)."""

from __future__ import annotations

import re

import pytest

from coffre.labwork import catalogue as cat

ADULT = 40 * 365
CHILD = 6 * 365

HB = cat.test("HB")
K = cat.test("K")
CREA = cat.test("CREA")
EGFR = cat.test("DFG")
LDL = cat.test("LDL")


def egfr(creatinine_umol: str, sex: str, age: int) -> str | None:
    return cat.calculate(EGFR, {"14682-9": creatinine_umol}, sex, age)


def ldl(total: str, hdl: str, triglycerides: str) -> str | None:
    inputs = {"2093-3": total, "2085-9": hdl, "2571-8": triglycerides}
    return cat.calculate(LDL, inputs, "F", 50)


# --- Catalogue integrity ---------------------------------------------------------------

def test_the_catalogue_holds_about_sixty_tests():
    assert 55 <= len(cat.TESTS) <= 80


def test_every_loinc_is_unique_and_is_the_key():
    assert all(key == t.loinc for key, t in cat.TESTS.items())
    assert len({t.loinc for t in cat.TESTS.values()}) == len(cat.TESTS)


def test_every_loinc_has_the_loinc_shape():
    assert all(re.fullmatch(r"\d{1,6}-\d", loinc) for loinc in cat.TESTS)


def test_every_local_code_is_unique_and_never_a_panel_code():
    codes = [t.code.upper() for t in cat.TESTS.values()]
    assert len(set(codes)) == len(codes)
    assert not set(codes) & set(cat.PANELS)


def test_every_panel_member_exists_and_panels_are_keyed_by_code():
    for code, panel in cat.PANELS.items():
        assert code == panel.code
        assert panel.loincs and all(loinc in cat.TESTS for loinc in panel.loincs)


def test_every_test_names_a_known_specimen_bench_and_kind():
    for t in cat.TESTS.values():
        assert t.specimen in cat.SPECIMEN_TYPES, t.code
        assert t.bench in cat.BENCHES, t.code
        assert t.kind in ("numeric", "text", "coded"), t.code
        assert t.label and t.label == t.label.strip(), t.code


def test_coded_tests_have_choices_and_numeric_tests_do_not():
    for t in cat.TESTS.values():
        assert bool(t.choices) == (t.kind == "coded"), t.code


def test_calculated_tests_have_known_inputs_and_a_formula():
    calculated = [t for t in cat.TESTS.values() if t.calculated]
    assert {t.code for t in calculated} >= {"DFG", "LDL"}
    for t in calculated:
        assert t.inputs and all(loinc in cat.TESTS for loinc in t.inputs)
        assert cat.calculate(t, {}, "M", 50) is None


def test_ranges_are_ordered_low_below_high_and_inside_critical_limits():
    for t in cat.TESTS.values():
        for r in t.ranges:
            if r.low is not None and r.high is not None:
                assert r.low < r.high, t.code
            if r.critical_low is not None and r.low is not None:
                assert r.critical_low < r.low, t.code
            if r.critical_high is not None and r.high is not None:
                assert r.critical_high > r.high, t.code


def test_well_known_loinc_codes_are_the_real_ones():
    expected = {
        "HB": "718-7", "GB": "6690-2", "PLQ": "777-3", "NA": "2951-2", "K": "2823-3",
        "CREA": "14682-9", "DFG": "98979-8", "LDL": "13457-7", "INR": "6301-6",
        "ABO": "883-9", "RAI": "890-4", "COV2": "94500-6", "GLY": "14749-6",
    }
    assert {code: cat.test(code).loinc for code in expected} == expected


# --- Lookup ------------------------------------------------------------------------------

def test_a_test_is_found_by_loinc_or_by_local_code_in_any_case():
    assert cat.test("718-7") is HB
    assert cat.test("hb") is HB
    assert cat.find(" K ") is K


def test_an_unknown_code_raises_unknown_test_naming_the_code():
    with pytest.raises(cat.UnknownTest, match="XYZ"):
        cat.test("XYZ")
    assert str(cat.UnknownTest("unknown test code 'XYZ'")) == "unknown test code 'XYZ'"


def test_find_returns_none_for_an_unknown_code():
    assert cat.find("XYZ") is None


def test_an_unknown_test_is_also_a_key_error():
    with pytest.raises(KeyError):
        cat.test("NOPE")


# --- expand --------------------------------------------------------------------------------

def test_expand_turns_a_panel_into_its_loincs_in_report_order():
    assert cat.expand(["THYROIDE"]) == ["3016-3", "14920-3"]


def test_expand_removes_duplicates_and_follows_the_catalogue_order():
    result = cat.expand(["K", "NFS", "2823-3", "HB", "iono"])
    assert len(result) == len(set(result))
    order = list(cat.TESTS)
    assert result == sorted(result, key=order.index)
    assert result[0] == "718-7"
    assert "2823-3" in result


def test_expand_adds_egfr_when_creatinine_is_ordered():
    assert cat.expand(["CREA"]) == ["14682-9", "98979-8"]


def test_expand_adds_friedewald_ldl_only_when_all_three_lipids_are_ordered():
    assert "13457-7" in cat.expand(["CT", "HDL", "TG"])
    assert "13457-7" not in cat.expand(["CT", "HDL"])


def test_ordering_a_calculated_test_brings_its_inputs():
    assert cat.expand(["LDL"]) == ["2093-3", "2085-9", "2571-8", "13457-7"]


def test_expand_raises_unknown_test_for_a_bad_code():
    with pytest.raises(cat.UnknownTest, match="BOGUS"):
        cat.expand(["NFS", "BOGUS"])


def test_expand_of_nothing_is_empty():
    assert cat.expand([]) == []


# --- Reference ranges ------------------------------------------------------------------------

def test_hemoglobin_ranges_depend_on_sex():
    assert cat.reference_range(HB, "M", ADULT).low == 13.0
    assert cat.reference_range(HB, "F", ADULT).low == 12.0


def test_an_unknown_sex_gets_the_any_sex_range():
    rng = cat.reference_range(HB, "", ADULT)
    assert rng.sex == "" and (rng.low, rng.high) == (12.0, 17.0)


def test_a_child_gets_the_child_hemoglobin_range_whatever_the_sex():
    for sex in ("M", "F", ""):
        rng = cat.reference_range(HB, sex, CHILD)
        assert (rng.low, rng.high) == (11.0, 14.5)


def test_a_child_gets_a_higher_alkaline_phosphatase_range():
    pal = cat.test("PAL")
    assert cat.reference_range(pal, "M", CHILD).high > cat.reference_range(pal, "M", ADULT).high


def test_max_age_is_exclusive():
    ntbnp = cat.test("NTBNP")
    limit = ntbnp.ranges[0].max_age_days
    assert cat.reference_range(ntbnp, "F", limit - 1).high == 125
    assert cat.reference_range(ntbnp, "F", limit).high == 450


def test_a_male_only_range_does_not_apply_to_women():
    assert cat.reference_range(cat.test("PSA"), "F", ADULT) is None


def test_a_test_without_ranges_has_no_range():
    assert cat.reference_range(cat.test("ABO"), "M", ADULT) is None


# --- Flags ---------------------------------------------------------------------------------

def test_a_normal_potassium_is_not_flagged():
    assert cat.flag(K, "4.2", "M", ADULT) == ""


def test_a_low_potassium_is_flagged_L():
    assert cat.flag(K, "3.2", "M", ADULT) == "L"


def test_a_high_potassium_is_flagged_H():
    assert cat.flag(K, "5.6", "M", ADULT) == "H"


def test_a_critical_potassium_is_flagged_HH():
    assert cat.flag(K, "6.5", "F", ADULT) == "HH"


def test_a_critically_low_potassium_is_flagged_LL():
    assert cat.flag(K, "2.5", "F", ADULT) == "LL"


def test_the_limits_themselves_are_not_flagged():
    assert cat.flag(K, "3.5", "M", ADULT) == ""
    assert cat.flag(K, "5.0", "M", ADULT) == ""
    assert cat.flag(K, "6.2", "M", ADULT) == "H"


def test_the_same_hemoglobin_is_low_for_a_man_and_normal_for_a_woman():
    assert cat.flag(HB, "12.5", "M", ADULT) == "L"
    assert cat.flag(HB, "12.5", "F", ADULT) == ""


def test_a_critical_hemoglobin_flags_even_in_a_newborn():
    assert cat.flag(HB, "6.0", "F", 10) == "LL"
    assert cat.flag(HB, "16.0", "F", 10) == ""


def test_critical_platelets_and_inr_are_flagged():
    assert cat.flag(cat.test("PLQ"), "15", "M", ADULT) == "LL"
    assert cat.flag(cat.test("INR"), "5.5", "M", ADULT) == "HH"


def test_a_comparator_value_is_flagged_by_its_number():
    assert cat.flag(cat.test("CRP"), "<0.5", "M", ADULT) == ""
    assert cat.flag(cat.test("CRP"), ">300", "M", ADULT) == "H"


def test_coded_and_text_results_are_never_flagged():
    assert cat.flag(cat.test("VIH"), "positif", "M", ADULT) == ""
    assert cat.flag(cat.test("ECBU"), "E. coli 10^5/mL", "M", ADULT) == ""


def test_no_range_means_no_flag():
    assert cat.flag(cat.test("PSA"), "50.00", "F", ADULT) == ""


# --- parse_value ---------------------------------------------------------------------------

def test_parse_value_accepts_a_decimal_comma_or_point():
    assert cat.parse_value(HB, "12,5") == "12.5"
    assert cat.parse_value(HB, " 12.5 ") == "12.5"


def test_parse_value_rounds_half_up_to_the_test_decimals():
    assert cat.parse_value(HB, "12,45") == "12.5"
    assert cat.parse_value(HB, "12") == "12.0"
    assert cat.parse_value(cat.test("PLQ"), "245,6") == "246"
    assert cat.parse_value(cat.test("INR"), "1,1") == "1.10"


def test_parse_value_strips_spaces_inside_numbers():
    assert cat.parse_value(cat.test("LEUCU"), "10 000") == "10000"


def test_parse_value_keeps_a_comparator_with_its_number():
    assert cat.parse_value(cat.test("CRP"), "< 0,5") == "<0.5"
    assert cat.parse_value(cat.test("DDI"), ">10000") == ">10000"


@pytest.mark.parametrize("garbage", ["12,x", "abc", "1,2,3", "12..5", "<", "nan", "1e3"])
def test_parse_value_refuses_garbage_naming_the_test(garbage):
    with pytest.raises(cat.InvalidResult, match="Hémoglobine") as caught:
        cat.parse_value(HB, garbage)
    assert "not a number" in str(caught.value)


def test_parse_value_message_quotes_the_bad_value():
    with pytest.raises(cat.InvalidResult) as caught:
        cat.parse_value(HB, "12,x")
    assert str(caught.value) == "Hémoglobine: the value typed is not a number"
    assert "12,x" not in str(caught.value)  # a result value never enters an error


def test_parse_value_refuses_an_empty_result():
    with pytest.raises(cat.InvalidResult, match="empty"):
        cat.parse_value(HB, "   ")


def test_parse_value_never_stores_minus_zero():
    assert cat.parse_value(HB, "-0,01") == "0.0"


def test_a_coded_value_is_matched_case_insensitively_and_made_canonical():
    assert cat.parse_value(cat.test("ABO"), " ab ") == "AB"
    assert cat.parse_value(cat.test("VIH"), "NÉGATIF") == "négatif"


def test_a_coded_value_outside_the_choices_is_refused_listing_them():
    with pytest.raises(cat.InvalidResult, match=r"Groupe sanguin ABO.*A, B, AB, O"):
        cat.parse_value(cat.test("ABO"), "C")


def test_a_text_result_is_stripped_and_limited_to_2000_characters():
    culture = cat.test("ECBU")
    assert cat.parse_value(culture, "  Escherichia coli  ") == "Escherichia coli"
    assert cat.parse_value(culture, "x" * 2000) == "x" * 2000
    with pytest.raises(cat.InvalidResult, match="2000"):
        cat.parse_value(culture, "x" * 2001)


# --- numeric -------------------------------------------------------------------------------

def test_numeric_reads_stored_numbers_and_comparators():
    assert cat.numeric("12.5") == 12.5
    assert cat.numeric("<0.5") == 0.5
    assert cat.numeric(">100") == 100.0


def test_numeric_is_none_for_text_and_coded_values():
    assert cat.numeric("positif") is None
    assert cat.numeric("") is None
    assert cat.numeric("inf") is None


# --- Delta check ---------------------------------------------------------------------------

def test_a_creatinine_that_doubles_exceeds_its_delta():
    assert cat.delta_exceeded(CREA, "160", "80")


def test_a_small_creatinine_change_does_not_exceed_its_delta():
    assert not cat.delta_exceeded(CREA, "100", "80")


def test_the_delta_is_strictly_greater_than_the_percentage():
    assert not cat.delta_exceeded(CREA, "120", "80")  # exactly 50 %
    assert cat.delta_exceeded(HB, "9.5", "12.0")  # -20.8 %


def test_no_delta_without_a_previous_result_or_a_delta_percent():
    assert not cat.delta_exceeded(CREA, "160", None)
    assert not cat.delta_exceeded(cat.test("CL"), "80", "110")


def test_no_delta_when_a_value_is_not_numeric():
    assert not cat.delta_exceeded(CREA, "160", "hémolysé")


def test_a_change_from_zero_exceeds_the_delta():
    assert cat.delta_exceeded(cat.test("PSA"), "0.50", "0.00")
    assert not cat.delta_exceeded(cat.test("PSA"), "0.00", "0.00")


# --- Calculated results --------------------------------------------------------------------

def test_egfr_matches_ckd_epi_2021_for_a_man_of_fifty():
    # 88.4 µmol/L = 1.0 mg/dL: 142 × (1.0/0.9)^-1.200 × 0.9938^50 = 91.7
    assert egfr("88.4", "M", 50) == "92"


def test_egfr_matches_ckd_epi_2021_for_a_woman_of_fifty():
    # 142 × (1.0/0.7)^-1.200 × 0.9938^50 × 1.012 = 68.6
    assert egfr("88.4", "F", 50) == "69"


def test_egfr_uses_the_low_creatinine_branch():
    # 53 µmol/L = 0.600 mg/dL, woman of 30: 142 × (0.600/0.7)^-0.241 × 0.9938^30 × 1.012
    expected = 142 * (53 / 88.4 / 0.7) ** -0.241 * 0.9938**30 * 1.012
    assert egfr("53", "F", 30) == str(round(expected))


def test_egfr_is_not_calculated_for_a_child_or_an_unknown_sex():
    assert egfr("50", "M", 12) is None
    assert egfr("88.4", "", 50) is None


def test_egfr_is_not_calculated_from_a_bound_or_a_missing_creatinine():
    assert egfr("<20", "M", 50) is None
    assert cat.calculate(EGFR, {}, "M", 50) is None


def test_calculate_accepts_inputs_keyed_by_local_code():
    assert cat.calculate(EGFR, {"CREA": "88.4"}, "M", 50) == "92"


def test_friedewald_ldl_is_total_minus_hdl_minus_a_fifth_of_triglycerides():
    assert ldl("2.20", "0.50", "1.50") == "1.40"


def test_friedewald_is_refused_from_triglycerides_of_3_4_g_per_litre():
    assert ldl("2.80", "0.40", "3.40") is None
    assert ldl("2.80", "0.40", "3.39") == "1.72"


def test_transferrin_saturation_is_calculated_from_iron_and_transferrin():
    cst = cat.test("CST")
    assert cat.calculate(cst, {"14798-3": "20.0", "3034-6": "2.50"}, "F", 40) == "32"


def test_a_calculated_result_gets_flagged_like_any_other():
    assert cat.flag(EGFR, egfr("300", "M", 70), "M", 70 * 365) == "L"


# --- French display ------------------------------------------------------------------------

def test_format_value_uses_a_decimal_comma():
    assert cat.format_value(HB, "12.5") == "12,5"


def test_format_value_spaces_a_comparator():
    assert cat.format_value(cat.test("CRP"), "<0.5") == "< 0,5"
    assert cat.format_value(cat.test("DDI"), ">10000") == "> 10000"


def test_format_value_leaves_coded_and_text_values_alone():
    assert cat.format_value(cat.test("RH"), "positif") == "positif"


def test_format_range_shows_both_bounds_with_a_decimal_comma():
    assert cat.format_range(HB, cat.reference_range(HB, "M", ADULT)) == "13,0 – 17,0"


def test_format_range_shows_a_single_bound():
    crp = cat.test("CRP")
    hdl = cat.test("HDL")
    assert cat.format_range(crp, cat.reference_range(crp, "M", ADULT)) == "< 5,0"
    assert cat.format_range(hdl, cat.Range(low=1.5)) == "> 1,50"


def test_format_range_of_nothing_is_empty():
    assert cat.format_range(HB, None) == ""
    assert cat.format_range(HB, cat.Range(critical_low=7.0)) == ""


def test_format_range_uses_the_test_decimals():
    inr = cat.test("INR")
    assert cat.format_range(inr, inr.ranges[0]) == "0,80 – 1,20"
