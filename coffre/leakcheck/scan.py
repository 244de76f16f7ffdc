"""Search every file under a directory for patient values written in clear.

The caller decrypts each patient's values in memory and passes them as
`Needle`s; this module never sees a key and imports nothing from Django.

Both sides go through `fold` (accents, case, spacing and punctuation
removed), so "Lefèvre" is found as "LEFEVRE" and "06 12 34 56 78" as
"0612345678". Files are cut into text runs: printable ASCII, tab and
valid UTF-8 characters; control bytes and invalid UTF-8 are hard
separators, so random ciphertext cannot glue distant characters into a
false match.

A value is searched only if a random stream of the scanned size is very
unlikely to contain it (`testable`); the others are counted, never dropped
silently.
"""

import bisect
import dataclasses
import itertools
import math
import operator
import os
import re
import stat
import unicodedata
from array import array
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

import ahocorasick

# Per searched form, the expected number of random occurrences in everything
# scanned must stay below this. Summed over the ~5 million forms of the seed
# data set, that is at most a few false hits in the very worst case (every
# form at the limit and every byte hex or base64 text), far fewer in practice.
FALSE_HIT_BUDGET = 1e-6

# Probability that a given position of a random text shows a given character,
# after folding. Hex text (PostgreSQL bytea in a pg_dump) is the worst case
# for 0-9a-f; base64 is the worst case for other letters, and case folding
# merges "G" and "g", hence 2/64 rather than 1/64.
_LOG2_P_HEX = -4.0  # 1/16
_LOG2_P_OTHER = -5.0  # 1/32
_HEX = b"0123456789abcdef"

_ALNUM = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_NOT_ALNUM = bytes(b for b in range(256) if b not in _ALNUM)
_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
# NFKD leaves these letters whole; without this "Lætitia" would lose a letter
# and not match a log that wrote "Laetitia".
_LETTERS = (
    ("æ", "ae"), ("Æ", "AE"), ("œ", "oe"), ("Œ", "OE"), ("ø", "o"), ("Ø", "O"),
    ("ł", "l"), ("Ł", "L"), ("đ", "d"), ("Đ", "D"), ("ð", "d"), ("Ð", "D"),
    ("þ", "th"), ("Þ", "TH"),
)  # fmt: skip

# Control characters separate runs in files; values are cut the same way so a
# multi-line note is still found line by line. Tab is not one: it separates
# the columns of a pg_dump COPY or a TSV export, where "name<TAB>first names"
# must still be found, and random bytes gain almost nothing from it.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]+")
# A French number in E.164: metropolitan (+33) or overseas departments, whose
# national form is "0" followed by the 9 digits after the country code.
_E164_FR = re.compile(r"(?:\+|00)(?:33|262|590|594|596)([1-9]\d{8})")
_PHONE_PUNCTUATION = re.compile(r"[\s.\-/()]")

# In a buffer decoded with "surrogateescape", invalid UTF-8 bytes become lone
# surrogates: they and control characters end a run.
_NOT_RUN = r"\x00-\x08\x0a-\x1f\x7f\ud800-\udfff"
_SEPARATOR_BYTES = bytes(range(0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"
_MARK_SEPARATORS = bytes(0 if b in _SEPARATOR_BYTES else 1 for b in range(256))
_SEPARATOR = re.compile(f"[{_NOT_RUN}]")
_SEPARATORS_TO_NEWLINE = bytes(0x0A if b in _SEPARATOR_BYTES else b for b in range(256))
# fold() of a whole text buffer in one call, keeping each separator as a newline
_FOLD_KEEP_LINES = _LOWER.translate(_SEPARATORS_TO_NEWLINE)
_DROP_KEEP_LINES = bytes(b for b in _NOT_ALNUM if b not in _SEPARATOR_BYTES)
_JOIN = "|"  # never part of a folded needle, so no match crosses two runs


@dataclasses.dataclass(frozen=True)
class Needle:
    """One clear value of one patient, as the application knows it."""

    owner: str
    field: str
    value: str = dataclasses.field(repr=False)  # so a logged Needle leaks nothing


@dataclasses.dataclass(frozen=True)
class Hit:
    """A patient value found in clear.

    `offset` is the byte offset where the text run holding the value starts
    (a log line, a database cell...), not the value itself; for a run longer
    than a read chunk, where the chunk's piece of it starts.
    """

    file: str
    offset: int
    owner: str
    field: str
    masked: str


@dataclasses.dataclass
class ScanReport:
    files: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    bytes_scanned: int = 0
    text_bytes: int = 0  # bytes in text runs long enough to hold a value (Exposure)
    needles_total: int = 0
    needles_untestable: int = 0  # values with no form long enough to search
    # The same two counts per field (nir, phone, name...): which values went unsearched.
    field_totals: dict[str, int] = dataclasses.field(default_factory=dict)
    field_untestable: dict[str, int] = dataclasses.field(default_factory=dict)
    variants_tested: int = 0
    variants_untestable: int = 0
    hits: list[Hit] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)  # symlinks, fifos...


@dataclasses.dataclass(frozen=True)
class ScanLimits:
    """Sizes that bound memory; tests shrink them to reach the edge cases."""

    chunk_size: int = 8 * 1024 * 1024
    # A value whose raw bytes span more than this, inside a run longer than a
    # chunk and across a chunk boundary, is missed; 1 MiB is far above any value.
    overlap: int = 1024 * 1024
    variants_per_automaton: int = 300_000  # about 250 MB of automaton each
    cache_limit: int = 512 * 1024 * 1024  # folded text kept between automata

    def __post_init__(self) -> None:
        if not 0 < self.overlap < self.chunk_size:
            raise ValueError("overlap must be positive and smaller than chunk_size")


Progress = Callable[[str, int, int], None]
_Tag = tuple[str, str, str]  # owner, field, masked value
_HitKey = tuple[str, str, str, int]  # file, owner, field, run id


class _File(NamedTuple):
    path: Path
    rel: str
    size: int


class _Segment(NamedTuple):
    """The folded runs of one read, joined: compact and matched in one call."""

    file: str
    size: int  # bytes read
    text: str
    starts: array  # index in text of each run
    run_ids: array
    offsets: array


def fold(text: str) -> str:
    """Reduce text to [a-z0-9]: NFKD, no combining marks, casefolded."""
    return _to_ascii(text).translate(_LOWER, _NOT_ALNUM).decode("ascii")


def _to_ascii(text: str) -> bytes:
    """fold() before the last step; files in one piece go through it too."""
    if text.isascii():
        return text.encode("ascii")
    for letter, spelled in _LETTERS:  # str.translate is 10 times slower here
        if letter in text:
            text = text.replace(letter, spelled)
    decomposed = unicodedata.normalize("NFKD", text)
    # Dropping everything outside ASCII drops the combining marks too,
    # without a Python step per character.
    return decomposed.casefold().encode("ascii", "ignore")


def variants(needle: Needle) -> set[str]:
    """The folded forms under which the value may appear in a file."""
    parts = _CONTROL.split(needle.value)
    found = {fold(part) for part in parts}
    if len(parts) > 1:
        found.add(fold(needle.value))  # e.g. a JSON export escaping the newline
    national = _national_phone(needle.value)
    if national:
        found.add(national)
    found.discard("")
    return found


def _national_phone(value: str) -> str | None:
    if not value.lstrip().startswith(("+", "00")):
        return None  # most values: skip the regexes
    match = _E164_FR.fullmatch(_PHONE_PUNCTUATION.sub("", value))
    return "0" + match.group(1) if match else None


def testable(folded: str, total_bytes: int) -> bool:
    """Whether random data of total_bytes would contain `folded` with a
    chance below FALSE_HIT_BUDGET, so that a hit means a real leak."""
    if not folded:
        return False
    hex_chars = len(folded) - len(folded.encode().translate(None, _HEX))
    log2_p = hex_chars * _LOG2_P_HEX + (len(folded) - hex_chars) * _LOG2_P_OTHER
    return math.log2(max(total_bytes, 1)) + log2_p < math.log2(FALSE_HIT_BUDGET)


class Exposure(NamedTuple):
    """How many scanned bytes could hold a random match of a given length.

    A folded form of TEXT_RUN or more characters can only match inside a text run of
    at least TEXT_RUN bytes. Encrypted files (the database) are mostly random bytes,
    where such runs are rare, so counting them (`text_bytes`) rather than every byte
    makes phone numbers and other medium-length values testable in a large database
    without raising the chance of a false hit.
    """

    total_bytes: int
    text_bytes: int

    def for_length(self, length: int) -> int:
        return self.text_bytes if length >= TEXT_RUN else self.total_bytes


TEXT_RUN = 8
# Printable ASCII, tab, or a valid UTF-8 sequence: what the reader treats as text.
_TEXT_RUN = re.compile(
    rb"(?:[\x09\x20-\x7e]|[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}"
    rb"|[\xf0-\xf4][\x80-\xbf]{3}){%d,}" % TEXT_RUN
)


def _text_bytes(files: list[_File], limits: ScanLimits) -> int:
    """Bytes lying in text runs of TEXT_RUN bytes or more, over every file.

    A run cut by a chunk boundary may be missed in part, so each chunk counts
    2 * TEXT_RUN bytes more: the estimate errs towards fewer tested values.
    """
    count = 0
    for file in files:
        try:
            with _open_regular(file.path) as fh:
                while chunk := fh.read(limits.chunk_size):
                    count += 2 * TEXT_RUN + sum(
                        m.end() - m.start() for m in _TEXT_RUN.finditer(chunk))
        except OSError:
            count += file.size  # unreadable now: assume the worst (reported later)
    return count


def _min_testable_length(exposure: Exposure) -> int:
    """Shortest folded length that can be testable: shorter runs are dropped."""
    length = 1
    while not testable("z" * length, exposure.for_length(length)):  # rarest character
        length += 1
    return length


def mask(value: str) -> str:
    """Enough of a value to recognise it in a report, never the value."""
    value = " ".join(value.split())  # no newline of a note in a report line
    return "***" if len(value) <= 4 else f"{value[:2]}***{value[-2:]}"


# --- needles -------------------------------------------------------------


def _add_needle(
    needle: Needle, exposure: Exposure, report: ScanReport, pending: dict[str, list[_Tag]]
) -> None:
    report.needles_total += 1
    report.field_totals[needle.field] = report.field_totals.get(needle.field, 0) + 1
    forms = variants(needle)
    kept = [form for form in forms if testable(form, exposure.for_length(len(form)))]
    report.variants_tested += len(kept)
    report.variants_untestable += len(forms) - len(kept)
    if not kept:
        report.needles_untestable += 1
        report.field_untestable[needle.field] = report.field_untestable.get(needle.field, 0) + 1
        return
    tag = (needle.owner, needle.field, mask(needle.value))
    for form in kept:
        pending.setdefault(form, []).append(tag)


def _automaton(pending: dict[str, list[_Tag]]) -> ahocorasick.Automaton:
    automaton = ahocorasick.Automaton()
    for form, tags in pending.items():
        automaton.add_word(form, tuple(tags))
    automaton.make_automaton()
    return automaton


def _batches(
    needles: Iterable[Needle], exposure: Exposure, report: ScanReport, size: int
) -> Iterator[tuple[ahocorasick.Automaton, bool]]:
    """Consume the needles once, yielding (automaton, more batches follow).

    Only the folded forms and the masked values are kept, one batch at a time.
    """
    pending: dict[str, list[_Tag]] = {}
    stream = iter(needles)
    for needle in stream:
        _add_needle(needle, exposure, report, pending)
        if len(pending) >= size:
            automaton = _automaton(pending)
            pending.clear()  # the automaton holds its own copy of the forms
            upcoming = next(stream, None)  # peek, to know whether to cache runs
            yield automaton, upcoming is not None
            if upcoming is None:
                return
            _add_needle(upcoming, exposure, report, pending)
    if pending:
        yield _automaton(pending), False


# --- files ---------------------------------------------------------------


def _list_files(root: Path, report: ScanReport) -> list[_File]:
    if root.is_file():
        return [_File(root, root.name, root.stat().st_size)]
    files: list[_File] = []
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            where = _relative(directory, root) if directory != root else str(root)
            report.errors.append(f"{where}: {exc.strerror or exc}")
            continue
        for entry in entries:
            _classify(entry, root, pending, files, report)
    return sorted(files, key=lambda f: f.rel)


def _classify(
    entry: os.DirEntry[str],
    root: Path,
    pending: list[Path],
    files: list[_File],
    report: ScanReport,
) -> None:
    rel = _relative(Path(entry.path), root)
    try:
        if entry.is_dir(follow_symlinks=False):
            pending.append(Path(entry.path))
        elif entry.is_file(follow_symlinks=False):
            files.append(_File(Path(entry.path), rel, entry.stat(follow_symlinks=False).st_size))
        else:
            report.skipped.append(rel)
    except OSError as exc:
        report.errors.append(f"{rel}: {exc.strerror or exc}")


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _open_regular(path: Path) -> BinaryIO:
    # O_NOFOLLOW and the fstat check close the race where the file was
    # replaced by a symlink or a fifo (which would block) after listing.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(0, "no longer a regular file")
    return os.fdopen(fd, "rb")


class _Folded(NamedTuple):
    """The folded runs of one buffer that are long enough to hold a needle."""

    texts: list[str]
    run_ids: list[int]
    offsets: list[int]


def _fold_runs(
    buf: bytes, base: int, carry_id: int, pattern: re.Pattern[str], min_length: int
) -> _Folded:
    """Fold the text runs of buf, whose first byte is at file offset base.

    carry_id, when >= 0, is the id of a run that buf continues from the
    previous chunk (a run longer than a chunk).
    """
    try:
        text = buf.decode("utf-8")
    except UnicodeDecodeError:
        return _fold_binary_runs(buf, base, carry_id, pattern, min_length)
    return _fold_text_runs(text, buf, base, carry_id, min_length)


def _fold_binary_runs(
    buf: bytes, base: int, carry_id: int, pattern: re.Pattern[str], min_length: int
) -> _Folded:
    text = buf.decode("utf-8", "surrogateescape")
    folded = _Folded([], [], [])
    chars, position = 0, base  # byte offsets differ from char indexes: encode gaps once
    for match in pattern.finditer(text):
        start = position + len(text[chars : match.start()].encode("utf-8", "surrogateescape"))
        chars, position = match.end(), start + len(match.group().encode("utf-8"))
        run = fold(match.group())
        if len(run) >= min_length:
            folded.texts.append(run)
            folded.run_ids.append(carry_id if carry_id >= 0 and start == base else start)
            folded.offsets.append(start)
    return folded


def _fold_text_runs(text: str, buf: bytes, base: int, carry_id: int, min_length: int) -> _Folded:
    """The same for valid UTF-8 (logs, dumps, exports) without a Python step
    per run: 10 to 20 times faster on log files."""
    # Each separator byte becomes one newline on both sides, so the folded and
    # raw pieces correspond one to one.
    ascii_text = buf if buf.isascii() else _to_ascii(text)
    pieces = ascii_text.translate(_FOLD_KEEP_LINES, _DROP_KEEP_LINES).decode("ascii").split("\n")
    lengths = map(len, buf.translate(_SEPARATORS_TO_NEWLINE).split(b"\n"))
    starts = map(operator.add, itertools.accumulate(lengths, initial=base), itertools.count())
    wanted = list(map(min_length.__le__, map(len, pieces)))
    offsets = list(itertools.compress(starts, wanted))
    run_ids = offsets.copy()
    if carry_id >= 0 and offsets and offsets[0] == base:
        run_ids[0] = carry_id
    return _Folded(list(itertools.compress(pieces, wanted)), run_ids, offsets)


def _read_folded(
    fh: BinaryIO, pattern: re.Pattern[str], limits: ScanLimits, min_length: int
) -> Iterator[tuple[int, _Folded]]:
    """Yield (bytes read, folded complete runs) chunk by chunk.

    The run still open at the end of a chunk is carried into the next one.
    A run longer than a chunk (a minified export) is cut into pieces that
    overlap by limits.overlap bytes and share one run id.
    """
    base, carry, carry_id = 0, b"", -1
    while data := fh.read(limits.chunk_size):
        buf = carry + data
        cut = buf.translate(_MARK_SEPARATORS).rfind(0) + 1  # after the last control byte
        if len(buf) - cut <= limits.chunk_size:
            yield len(data), _fold_runs(buf[:cut], base, carry_id, pattern, min_length)
            carry_id = carry_id if cut == 0 else -1
            carry, base = buf[cut:], base + cut
            continue
        keep = _char_start(buf, max(cut, len(buf) - limits.overlap))
        yield len(data), _fold_runs(buf, base, carry_id, pattern, min_length)
        carry_id = _covering_id(buf, base, cut, keep, carry_id)
        carry, base = buf[keep:], base + keep
    yield 0, _fold_runs(carry, base, carry_id, pattern, min_length)


def _covering_id(buf: bytes, base: int, cut: int, keep: int, carry_id: int) -> int:
    """Id of the run holding buf[keep], found as _fold_runs names it: the file
    offset where it starts (no control byte lies between cut and keep)."""
    head = buf[cut:keep].decode("utf-8", "surrogateescape")
    last = _SEPARATOR.search(head[::-1])  # invalid UTF-8 also ends a run
    if last is None and cut == 0 and carry_id >= 0:
        return carry_id
    start = len(head) - last.start() if last else 0
    return base + cut + len(head[:start].encode("utf-8", "surrogateescape"))


def _char_start(buf: bytes, index: int) -> int:
    """Move index off UTF-8 continuation bytes so the carry starts on a char."""
    for _ in range(3):
        if index < len(buf) and 0x80 <= buf[index] <= 0xBF:
            index += 1
    return index


def _segment(rel: str, size: int, folded: _Folded) -> _Segment:
    lengths = map(len, folded.texts)
    starts = map(operator.add, itertools.accumulate(lengths, initial=0), itertools.count())
    return _Segment(
        rel,
        size,
        _JOIN.join(folded.texts),
        array("q", itertools.islice(starts, len(folded.texts))),
        array("q", folded.run_ids),
        array("q", folded.offsets),
    )


def _segments(
    files: list[_File], min_length: int, limits: ScanLimits, errors: list[str]
) -> Iterator[_Segment]:
    """Read every file into segments; a file that fails is reported, not fatal."""
    # Binary chunks only (text chunks are folded whole): the run pattern asks
    # for a minimum number of characters. Most fold to at most one of
    # [a-z0-9]; ß, æ, œ give two, so two characters of slack keep values with
    # up to two of them. Half the length would be exact but makes random
    # binary, where most short runs are, three times slower to read. Cost: a
    # value with three or more of ß, æ, œ and within two characters of the
    # minimum length could be missed in a binary file.
    pattern = re.compile(f"[^{_NOT_RUN}]{{{max(1, min_length - 2)},}}")
    for file in files:
        try:
            with _open_regular(file.path) as fh:
                for size, folded in _read_folded(fh, pattern, limits, min_length):
                    yield _segment(file.rel, size, folded)
        except OSError as exc:
            message = f"{file.rel}: {exc.strerror or exc}"
            if message not in errors:
                errors.append(message)


# --- matching ------------------------------------------------------------


@dataclasses.dataclass
class _Context:
    report: ScanReport
    limits: ScanLimits
    min_length: int
    progress: Progress | None
    hits: dict[_HitKey, Hit] = dataclasses.field(default_factory=dict)


def _match(segment: _Segment, automaton: ahocorasick.Automaton, hits: dict[_HitKey, Hit]) -> None:
    for end, tags in automaton.iter(segment.text):
        index = bisect.bisect_right(segment.starts, end) - 1
        for owner, field, masked in tags:
            key = (segment.file, owner, field, segment.run_ids[index])
            if key not in hits:
                hits[key] = Hit(segment.file, segment.offsets[index], owner, field, masked)


def _first_pass(
    files: list[_File],
    automaton: ahocorasick.Automaton,
    context: _Context,
    keep: bool,
) -> list[_Segment] | None:
    """Read every file, match the first batch, and keep the folded runs for
    the next batches while they fit in limits.cache_limit."""
    cache: list[_Segment] | None = [] if keep else None
    cached = 0
    total = sum(f.size for f in files)
    for segment in _segments(files, context.min_length, context.limits, context.report.errors):
        context.report.bytes_scanned += segment.size
        _match(segment, automaton, context.hits)
        if cache is not None:
            cache.append(segment)
            cached += len(segment.text) + 24 * len(segment.starts)
            if cached > context.limits.cache_limit:
                cache = None  # too big: later batches re-read the files
        if context.progress:
            context.progress(segment.file, context.report.bytes_scanned, total)
    return cache


def _later_pass(
    number: int,
    files: list[_File],
    automaton: ahocorasick.Automaton,
    cache: list[_Segment] | None,
    context: _Context,
) -> None:
    label = f"needle batch {number + 1}"
    if cache is None:
        segments = _segments(files, context.min_length, context.limits, context.report.errors)
    else:
        segments = iter(cache)
    done, total = 0, sum(f.size for f in files)
    for segment in segments:
        _match(segment, automaton, context.hits)
        done += segment.size
        if context.progress:
            context.progress(label, done, total)


def scan(
    root: Path,
    needles: Iterable[Needle],
    progress: Progress | None = None,
    limits: ScanLimits | None = None,
) -> ScanReport:
    """Search every regular file under root for any needle in clear.

    Symlinks are not followed, sockets and fifos are skipped (listed in
    report.skipped), unreadable files are listed in report.errors.

    progress, if given, is called as progress(label, done, total) with
    cumulative bytes: label is the file being read during the first pass,
    then "needle batch N" for each later batch of needles, which starts
    again from 0 (batches exist only beyond limits.variants_per_automaton).
    """
    report = ScanReport()
    files = _list_files(root, report)
    report.files = [(f.rel, f.size) for f in files]
    total = sum(f.size for f in files)
    limits = limits or ScanLimits()
    exposure = Exposure(total, _text_bytes(files, limits))
    report.text_bytes = exposure.text_bytes
    context = _Context(report, limits, _min_testable_length(exposure), progress)
    # Memory, measured: an automaton costs about 800 bytes per form, so the
    # seed set's ~5 million forms are matched in batches. Between batches the
    # folded runs stay in memory: encrypted files leave few long runs, and
    # re-reading means re-decoding every file (~40 MB/s on random bytes).
    # Runs are never spilled to disk: they may hold the very values leaked.
    cache: list[_Segment] | None = None
    batches = _batches(needles, exposure, report, limits.variants_per_automaton)
    for number, (automaton, more) in enumerate(batches):
        if number == 0:
            cache = _first_pass(files, automaton, context, keep=more)
        else:
            _later_pass(number, files, automaton, cache, context)
    report.hits = sorted(context.hits.values(), key=lambda h: (h.file, h.offset, h.owner))
    return report


# --- report --------------------------------------------------------------


def unsearched_share(report: ScanReport) -> float:
    """The share of values with no form long enough to search (0.0 when none)."""
    return report.needles_untestable / report.needles_total if report.needles_total else 0.0


def field_shares(report: ScanReport) -> list[tuple[str, int, int]]:
    """(field, values unsearched, values) for each field with unsearched values, the
    largest share first."""
    rows = [(name, report.field_untestable.get(name, 0), total)
            for name, total in report.field_totals.items() if report.field_untestable.get(name)]
    return sorted(rows, key=lambda row: (-row[1] / row[2], row[0]))


def format_report(report: ScanReport, max_unsearched: float = 1.0) -> list[str]:
    """Human-readable lines; values appear only masked. Above ``max_unsearched`` (a
    share of values too short to search), a clean scan is inconclusive, not clean."""
    checked = report.needles_total - report.needles_untestable
    lines = [
        f"Scanned {len(report.files):,} files, {report.bytes_scanned:,} bytes "
        f"({report.text_bytes:,} in text runs).",
        f"Checked {checked:,} of {report.needles_total:,} values "
        f"({report.variants_tested:,} forms searched).",
    ]
    if report.variants_untestable:  # counted, never dropped silently
        by_field = ", ".join(f"{name} {untested:,} of {total:,} ({untested / total:.0%})"
                             for name, untested, total in field_shares(report))
        lines.append(
            f"{report.needles_untestable:,} of {report.needles_total:,} values "
            f"({unsearched_share(report):.1%}) too short to search on their own "
            f"({report.variants_untestable:,} forms not searched)"
            + (f": {by_field}." if by_field else ".")
        )
    lines += [f"Skipped, not a regular file: {path}" for path in report.skipped]
    lines += [f"Could not read {error}" for error in report.errors]
    lines += [
        f"HIT {hit.file} at byte {hit.offset:,}: patient {hit.owner}, "
        f"field {hit.field}, value {hit.masked}"
        for hit in report.hits
    ]
    lines.append(_verdict(report, max_unsearched))
    return lines


def _verdict(report: ScanReport, max_unsearched: float) -> str:
    if report.variants_tested == 0:
        return "Verdict: inconclusive, no value was long enough to be tested."
    count = len(report.hits)
    if count:
        verdict = f"Verdict: {count:,} hit{'s' if count > 1 else ''}, patient values found in clear"
    elif unsearched_share(report) > max_unsearched:
        verdict = (f"Verdict: inconclusive, no patient value found but "
                   f"{unsearched_share(report):.1%} of the values were too short to search "
                   f"(more than {max_unsearched:.0%})")
    else:
        verdict = "Verdict: no patient value found in clear"
    if report.errors:  # what could not be read was not checked
        verdict += f"; {len(report.errors):,} unreadable, not checked"
    return verdict + "."
