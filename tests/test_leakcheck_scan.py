"""The leak scanner on its own: folding, variants, file reading, matching, reporting.

Random bytes come from seeded generators so a failure can be replayed; the
chance that they produce a false hit is far below one in a million anyway.
"""

import os
import random
import sqlite3
import time
from pathlib import Path

import pytest

from coffre.leakcheck.scan import (
    Needle,
    ScanLimits,
    ScanReport,
    fold,
    format_report,
    mask,
    scan,
    unsearched_share,
    variants,
)
from coffre.leakcheck.scan import testable as is_testable  # not collected as a test

NIR = "2 85 03 75 056 123 45"
EMAIL = "Claire.Lefevre@example.fr"
SMALL_CHUNKS = ScanLimits(chunk_size=4096, overlap=512)


def random_bytes(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def hits_of(report: ScanReport) -> set[tuple[str, str, str]]:
    return {(hit.file, hit.owner, hit.field) for hit in report.hits}


def test_fold_ignores_case_accents_spacing_and_punctuation() -> None:
    assert fold("06 12 34 56 78") == fold("06.12.34.56.78") == "0612345678"
    assert fold("Lefèvre") == fold("LEFEVRE") == "lefevre"
    assert fold("Jean.Dupont@example.fr") == "jeandupontexamplefr"
    assert fold("Lætitia Œuvray") == fold("LAETITIA OEUVRAY")


def test_an_e164_phone_is_also_searched_in_national_form() -> None:
    assert variants(Needle("p1", "phone", "+33 6 12 34 56 78")) == {"33612345678", "0612345678"}
    assert variants(Needle("p1", "phone", "+262 692 12 34 56")) >= {"0692123456"}


def test_a_multi_line_note_is_searched_line_by_line() -> None:
    forms = variants(Needle("p1", "notes", "Grossesse en cours\nsuivi VIH depuis 2015"))
    assert {"grossesseencours", "suivivihdepuis2015"} <= forms


def test_a_needle_repr_does_not_show_the_value() -> None:
    assert "Lefèvre" not in repr(Needle("p1", "birth_name", "Lefèvre"))


def test_short_values_are_untestable_and_long_ones_testable() -> None:
    assert not is_testable(fold("Paris"), 10_000)
    assert is_testable(fold(NIR), 10**12)
    assert is_testable("0612345678", 10**5)
    assert not is_testable("0612345678", 10**7)  # 16**-10 per byte: too likely in hex
    assert not is_testable("", 0)


def test_a_log_line_with_the_name_in_another_case_and_without_accents_is_a_hit(
    tmp_path: Path,
) -> None:
    (tmp_path / "logs").mkdir()
    log = b"2024-05-02 10:01:07 INFO\n2024-05-02 10:01:08 WARNING patient LEFEVRE CLAIRE ANNE\n"
    (tmp_path / "logs" / "coffre.log").write_bytes(log)
    report = scan(tmp_path, [Needle("p1", "name", "Lefèvre Claire Anne")])
    assert hits_of(report) == {("logs/coffre.log", "p1", "name")}
    assert report.hits[0].offset == log.index(b"2024-05-02 10:01:08")


def test_a_nir_with_spaces_inside_random_binary_is_a_hit(tmp_path: Path) -> None:
    blob = random_bytes(200_000) + b"\x00" + NIR.encode() + b"\x00" + random_bytes(5_000, 2)
    (tmp_path / "backup.bin").write_bytes(blob)
    report = scan(tmp_path, [Needle("p1", "nir", NIR.replace(" ", ""))])
    assert hits_of(report) == {("backup.bin", "p1", "nir")}
    assert report.hits[0].offset == 200_001


def test_a_national_phone_in_sqlite_is_found_from_an_e164_needle(tmp_path: Path) -> None:
    database = sqlite3.connect(tmp_path / "lab.db")
    database.execute("create table patient (id integer primary key, phone text, note blob)")
    database.execute("insert into patient values (1, ?, ?)", ("0612345678", random_bytes(300)))
    database.commit()
    database.close()
    report = scan(tmp_path, [Needle("p1", "phone", "+33612345678")])
    assert hits_of(report) == {("lab.db", "p1", "phone")}


def test_hex_of_random_bytes_as_in_a_pg_dump_gives_no_false_hit(tmp_path: Path) -> None:
    rows = [f"{i}\t\\\\x{random_bytes(2048, i).hex()}\n" for i in range(1024)]
    (tmp_path / "dump.sql").write_text("COPY patient (id, nir) FROM stdin;\n" + "".join(rows))
    rng = random.Random(7)
    needles = []
    for i in range(2000):
        needles.append(Needle(f"p{i}", "nir", str(rng.randrange(10**14, 10**15))))
        needles.append(Needle(f"p{i}", "phone", f"+336{rng.randrange(10**8):08d}"))
        needles.append(Needle(f"p{i}", "email", f"user{i}.name@example.fr"))
        needles.append(Needle(f"p{i}", "name", f"Dupont{i} Marie"))
    report = scan(tmp_path, needles)
    assert report.hits == []
    assert report.bytes_scanned > 4_000_000
    # the national phone form (10 digits) is too likely in 4 MB of hex: counted
    assert report.variants_untestable == 2000
    assert report.needles_untestable == 0  # the E.164 form (11 digits) is still searched


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_a_value_across_a_chunk_boundary_is_found(tmp_path: Path, binary: bool) -> None:
    filler = random_bytes(70) if binary else b"x" * 70 + b"\n"
    prefix = (filler * 200)[:12_200] + b"\n"
    prefix += b"a" * (3 * 4096 - 10 - len(prefix))  # the third read ends inside the value
    (tmp_path / "app.log").write_bytes(prefix + EMAIL.encode() + b"\n" + filler)
    report = scan(tmp_path, [Needle("p1", "email", EMAIL)], limits=SMALL_CHUNKS)
    assert hits_of(report) == {("app.log", "p1", "email")}
    assert report.hits[0].offset == 12_201


@pytest.mark.parametrize("filler", [b'"k": "v", ', b'"k": "v"\xff'], ids=["text", "binary"])
def test_a_value_across_a_chunk_boundary_inside_a_run_longer_than_a_chunk_is_found(
    tmp_path: Path, filler: bytes
) -> None:
    # No control byte: the reader cuts this run into pieces that overlap by
    # 512 bytes: [7680, 12288), [11776, 16384)... (\xff is invalid UTF-8 and
    # cuts the run into shorter ones, but not into pieces).
    line = bytearray(filler * 3000)
    line[11_780 : 11_780 + len(NIR)] = NIR.encode()  # in both pieces
    line[12_278 : 12_278 + len(EMAIL)] = EMAIL.encode()  # across their boundary
    (tmp_path / "export.json").write_bytes(bytes(line) + b"\n")
    needles = [Needle("p1", "email", EMAIL), Needle("p1", "nir", NIR)]
    report = scan(tmp_path, needles, limits=SMALL_CHUNKS)
    assert sorted(hit.field for hit in report.hits) == ["email", "nir"]  # each once


def test_a_utf8_log_and_a_binary_file_give_the_same_hits(tmp_path: Path) -> None:
    text = "état=validé\npatient Hélène LEFÈVRE-Dupontel, tél. +33 6 12 34 56 78\n"
    (tmp_path / "a.log").write_text(text)
    (tmp_path / "b.bin").write_bytes(text.encode() + b"\xff\xfe")  # not UTF-8: other reader
    needles = [
        Needle("p1", "name", "Helene Lefevre Dupontel"),
        Needle("p1", "phone", "+33612345678"),
    ]
    report = scan(tmp_path, needles)
    found = {(hit.file, hit.field, hit.offset) for hit in report.hits}
    assert found == {
        (name, field, 14) for name in ("a.log", "b.bin") for field in ("name", "phone")
    }


def test_scan_limits_refuse_an_overlap_as_long_as_a_chunk() -> None:
    with pytest.raises(ValueError, match="overlap"):
        ScanLimits(chunk_size=4096, overlap=4096)


def test_a_value_cut_by_a_binary_byte_is_not_a_hit(tmp_path: Path) -> None:
    (tmp_path / "split.bin").write_bytes(b"DU\x00PONT")
    (tmp_path / "whole.bin").write_bytes(b"\x00DUPONT\x01")
    report = scan(tmp_path, [Needle("p1", "birth_name", "Dupont")])
    assert report.variants_tested == 1
    assert hits_of(report) == {("whole.bin", "p1", "birth_name")}


def test_columns_separated_by_tabs_are_still_read_as_one_run(tmp_path: Path) -> None:
    (tmp_path / "dump.sql").write_text("17\tLEFEVRE\tClaire Anne\t1985-03-14\n")
    report = scan(tmp_path, [Needle("p1", "name", "Lefèvre Claire Anne")])
    assert hits_of(report) == {("dump.sql", "p1", "name")}


def test_hits_are_reported_once_per_run(tmp_path: Path) -> None:
    line = f"nir={NIR} again {NIR}\n".encode()
    (tmp_path / "a.log").write_bytes(line * 2)
    report = scan(tmp_path, [Needle("p1", "nir", NIR)])
    assert [hit.offset for hit in report.hits] == [0, len(line)]


def test_the_masked_value_never_contains_the_full_value(tmp_path: Path) -> None:
    values = [NIR, EMAIL, "Lefèvre Claire Anne", "+33612345678", "Dupontel-Lagarde"]
    (tmp_path / "leak.txt").write_text("\n".join(v.upper() for v in values) + "\n")
    needles = [Needle("p1", f"f{i}", value) for i, value in enumerate(values)]
    report = scan(tmp_path, needles)
    assert len(report.hits) == len(values)
    text = "\n".join([*format_report(report), *(repr(hit) for hit in report.hits)])
    for value in values:
        assert value not in text and value.upper() not in text and fold(value) not in text
    assert mask("DUPONT") == "DU***NT"
    assert mask("Marc") == "***"


def test_values_too_short_to_test_are_counted_not_dropped(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(random_bytes(100_000))
    needles = [Needle("p1", "city", "Paris"), Needle("p1", "sex", "F"), Needle("p1", "nir", NIR)]
    report = scan(tmp_path, needles)
    assert (report.needles_total, report.needles_untestable) == (3, 2)
    assert (report.variants_tested, report.variants_untestable) == (1, 2)
    assert (
        "2 of 3 values (66.7%) too short to search on their own (2 forms not searched): "
        "city 1 of 1 (100%), sex 1 of 1 (100%)." in format_report(report)
    )
    assert unsearched_share(report) == pytest.approx(2 / 3)


def test_a_clean_scan_above_the_bound_of_unsearched_values_is_inconclusive(
    tmp_path: Path,
) -> None:
    (tmp_path / "data.bin").write_bytes(random_bytes(100_000))
    needles = [Needle("p1", "city", "Paris"), Needle("p1", "nir", NIR)]
    report = scan(tmp_path, needles)
    assert format_report(report, max_unsearched=0.5)[-1] == (
        "Verdict: no patient value found in clear."
    )
    assert format_report(report, max_unsearched=0.4)[-1] == (
        "Verdict: inconclusive, no patient value found but 50.0% of the values were too "
        "short to search (more than 40%)."
    )


def test_the_verdict_is_inconclusive_when_nothing_could_be_tested(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(random_bytes(100_000))
    report = scan(tmp_path, [Needle("p1", "city", "Paris")])
    assert report.bytes_scanned == 0
    assert format_report(report)[-1] == (
        "Verdict: inconclusive, no value was long enough to be tested."
    )


def test_the_verdict_says_no_value_found_when_clean(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(random_bytes(100_000))
    lines = format_report(scan(tmp_path, [Needle("p1", "nir", NIR)]))
    assert lines[0].startswith("Scanned 1 files, 100,000 bytes (")
    assert lines[-1] == "Verdict: no patient value found in clear."


def test_a_file_that_vanishes_during_the_scan_is_reported_as_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text(f"{NIR}\n")
    (tmp_path / "b.log").write_text(f"{NIR}\n")

    def delete_b(label: str, done: int, total: int) -> None:
        (tmp_path / "b.log").unlink(missing_ok=True)

    report = scan(tmp_path, [Needle("p1", "nir", NIR)], progress=delete_b)
    assert hits_of(report) == {("a.log", "p1", "nir")}
    assert report.errors == ["b.log: No such file or directory"]
    assert format_report(report)[-1].endswith("; 1 unreadable, not checked.")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_reported_as_an_error(tmp_path: Path) -> None:
    secret = tmp_path / "secret.db"
    secret.write_text(f"{NIR}\n")
    secret.chmod(0)
    report = scan(tmp_path, [Needle("p1", "nir", NIR)])
    assert report.errors == ["secret.db: Permission denied"]


def test_symlinks_are_not_followed_and_fifos_are_skipped(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "leak.txt").write_text(f"{NIR}\n")
    root = tmp_path / "home"
    root.mkdir()
    (root / "link.txt").symlink_to(outside / "leak.txt")
    (root / "linkdir").symlink_to(outside)
    os.mkfifo(root / "pipe")
    report = scan(root, [Needle("p1", "nir", NIR)])
    assert report.hits == []
    assert sorted(report.skipped) == ["link.txt", "linkdir", "pipe"]


def test_needles_in_several_batches_give_the_same_hits_from_memory_and_from_rereading(
    tmp_path: Path,
) -> None:
    needles = [Needle(f"p{i}", "nir", f"{10**14 + i * 7919}") for i in range(1000)]
    (tmp_path / "a.bin").write_bytes(random_bytes(50_000) + f"\n{10**14 + 5 * 7919}\n".encode())
    (tmp_path / "b.log").write_text(f"x {10**14 + 999 * 7919} y\n")
    expected = {("a.bin", "p5", "nir"), ("b.log", "p999", "nir")}
    for cache_limit in (10**9, 0):
        limits = ScanLimits(variants_per_automaton=100, cache_limit=cache_limit)
        report = scan(tmp_path, iter(needles), limits=limits)
        assert hits_of(report) == expected
        assert report.needles_total == 1000


def test_scale_smoke_200k_needles_over_20_mib_finds_a_planted_value(tmp_path: Path) -> None:
    rng = random.Random(3)
    nirs = [str(rng.randrange(10**14, 10**15)) for _ in range(200_000)]
    planted = " ".join([nirs[123_456][:1], nirs[123_456][1:7], nirs[123_456][7:]])
    size = 20 * 1024 * 1024
    blob = bytearray(random_bytes(size, 4))
    blob[size // 2 : size // 2 + len(planted) + 2] = f"\x00{planted}\x00".encode()
    (tmp_path / "coffre.sqlite3").write_bytes(bytes(blob))
    needles = (Needle(f"p{i}", "nir", nir) for i, nir in enumerate(nirs))
    calls: list[tuple[float, int]] = []  # the needles are all read before the first call
    started = time.perf_counter()
    report = scan(tmp_path, needles, lambda _f, done, _t: calls.append((time.perf_counter(), done)))
    elapsed = time.perf_counter() - started
    assert hits_of(report) == {("coffre.sqlite3", "p123456", "nir")}
    (first, first_done), (last, last_done) = calls[0], calls[-1]
    rate = (last_done - first_done) / (last - first)  # bytes/s, reading and matching
    needles_time = elapsed - size / rate
    print(
        f"\nsmoke: 200,000 needles over 20 MiB in {elapsed:.2f} s: needles "
        f"{200_000 / needles_time:,.0f}/s, files {rate / 1e6:.0f} MB/s"
    )


def test_a_phone_is_tested_in_a_large_encrypted_file_but_not_in_as_much_hex_text(
    tmp_path: Path,
) -> None:
    """Random bytes rarely form text runs; hex text is all text runs."""
    needle = Needle("p1", "phone", "+33612345678")
    binary = tmp_path / "binary"
    binary.mkdir()
    (binary / "db.sqlite3").write_bytes(random_bytes(30_000_000))
    in_binary = scan(binary, [needle])
    assert in_binary.text_bytes < in_binary.bytes_scanned / 50
    assert in_binary.needles_untestable == 0
    hexdir = tmp_path / "hex"
    hexdir.mkdir()
    (hexdir / "dump.sql").write_text(random_bytes(15_000_000).hex())
    in_hex = scan(hexdir, [needle])
    assert in_hex.text_bytes >= in_hex.bytes_scanned - 16
    assert in_hex.needles_untestable == 1
