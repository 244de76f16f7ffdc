"""Staff password rule, after the CNIL's délibération n° 2022-100 (21 July 2022).

The CNIL measures a password's strength as its entropy: length × log2(size of the
character pool it draws from). It asks for at least 80 bits when nothing else protects
the account, and accepts 50 bits when failed attempts are limited (Coffre locks an
account after a few failures: ``AXES_*`` in settings, ``coffre.accounts.locks``). The
threshold is ``settings.COFFRE_PASSWORD_MIN_BITS``.

Entropy alone rates "Azerty1234!!" as strong, so the predictable shapes that attackers
try first are refused whatever their length: keyboard and alphabet sequences, one
character repeated, the username, the lab's name, "coffre", a month with a year.

``password_bits`` and ``password_problems`` are plain functions; the validator class only
connects them to Django's ``AUTH_PASSWORD_VALIDATORS``.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

DIGITS = 10
LOWERCASE = 26
UPPERCASE = 26
# string.punctuation (32) plus the space: the printable ASCII characters that are
# neither letters nor digits.
SPECIALS = len(string.punctuation) + 1
ACCENTED_LOWER = "àâäáãåçéèêëíìîïñóòôöõúùûüýÿæœ"
ACCENTED_UPPER = ACCENTED_LOWER.upper()

SEQUENCES = (
    "abcdefghijklmnopqrstuvwxyz",
    "0123456789",
    # AZERTY (French keyboards) and QWERTY rows
    "azertyuiop", "qsdfghjklm", "wxcvbn",
    "qwertyuiop", "asdfghjkl", "zxcvbnm",
)
SEQUENCE_LENGTH = 4

MONTHS = (
    "janvier", "fevrier", "mars", "avril", "mai", "juin", "juillet", "aout",
    "septembre", "octobre", "novembre", "decembre",
    "january", "february", "march", "april", "may", "june", "july", "august",
    "september", "october", "november", "december",
)
_MONTHS = "|".join(sorted(MONTHS, key=len, reverse=True))
_YEAR = r"(?:19|20)?\d{2}"
MONTH_YEAR = re.compile(rf"(?:{_MONTHS})[\W_]*{_YEAR}|{_YEAR}[\W_]*(?:{_MONTHS})")

FORBIDDEN_WORDS = ("coffre",)
# Common look-alike substitutions ("C0ffr3"): undone before looking for words.
LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t",
                      "@": "a", "$": "s", "!": "i", "€": "e"})


def character_pool(text: str) -> int:
    """Size of the character pool a password draws from, by the classes it uses."""
    pool = 0
    if any(c in string.digits for c in text):
        pool += DIGITS
    if any(c in string.ascii_lowercase for c in text):
        pool += LOWERCASE
    if any(c in string.ascii_uppercase for c in text):
        pool += UPPERCASE
    if any(c in string.punctuation or c == " " for c in text):
        pool += SPECIALS
    if any(c in ACCENTED_LOWER for c in text):
        pool += len(ACCENTED_LOWER)
    if any(c in ACCENTED_UPPER for c in text):
        pool += len(ACCENTED_UPPER)
    # Anything else (other scripts, symbols such as €) counts only for itself.
    known = string.printable + ACCENTED_LOWER + ACCENTED_UPPER
    pool += len({c for c in text if c not in known})
    return pool


def password_bits(text: str) -> float:
    """The CNIL's entropy estimate: length × log2(pool size)."""
    pool = character_pool(text)
    return len(text) * math.log2(pool) if pool > 1 else 0.0


def _fold(text: str) -> str:
    """Lowercase without accents: "Févr" -> "fevr", "Sœur" -> "soeur"."""
    text = text.lower().replace("œ", "oe").replace("æ", "ae")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _forms(text: str) -> set[str]:
    """The folded password, and the same with look-alike digits and symbols undone."""
    folded = _fold(text)
    return {folded, folded.translate(LEET), folded.translate(LEET).replace("i", "l")}


def _compact(text: str) -> str:
    return re.sub(r"[\W_]+", "", _fold(text))


def _has_sequence(folded: str) -> bool:
    for sequence in SEQUENCES:
        for chain in (sequence, sequence[::-1]):
            for start in range(len(chain) - SEQUENCE_LENGTH + 1):
                if chain[start:start + SEQUENCE_LENGTH] in folded:
                    return True
    return False


def _longest_run(text: str) -> int:
    longest = run = 0
    previous = None
    for char in text:
        run = run + 1 if char == previous else 1
        previous = char
        longest = max(longest, run)
    return longest


def _context_words(username: str, lab_names: Iterable[str]) -> list[str]:
    """Words tied to the account that a password must not contain."""
    words = []
    if len(_compact(username)) >= 3:
        words.append(_compact(username))
    for name in lab_names:
        if len(_compact(name)) >= 4:
            words.append(_compact(name))
        words.extend(w for w in re.split(r"[\W_]+", _fold(name)) if len(w) >= 5)
    return words


def min_bits() -> int:
    return settings.COFFRE_PASSWORD_MIN_BITS


def password_problems(text: str, username: str = "", lab_names: Iterable[str] = (),
                      minimum_bits: int | None = None) -> list[str]:
    """Why a password is refused, in the active language (French by default); [] if it
    is accepted."""
    minimum = min_bits() if minimum_bits is None else minimum_bits
    problems = []
    bits = password_bits(text)
    if bits < minimum:
        problems.append(_(
            "Ce mot de passe est trop faible : environ %(bits)d bits d'entropie, il en faut "
            "au moins %(minimum)d. Allongez-le ou mêlez minuscules, majuscules, chiffres "
            "et caractères spéciaux.") % {"bits": math.floor(bits), "minimum": minimum})
    forms = _forms(text)
    if any(_has_sequence(form) for form in forms):
        problems.append(_(
            "Ce mot de passe contient une suite de caractères (comme abcd, 1234, azerty "
            "ou qwerty)."))
    run = _longest_run(_fold(text))
    if text and run >= 3 and run * 2 >= len(text):
        problems.append(_("Ce mot de passe est surtout fait d'un même caractère répété."))
    words = _context_words(username, lab_names)
    compact_username = _compact(username)
    for word in words:
        if any(word in form for form in forms):
            if word == compact_username:
                problems.append(_("Ce mot de passe contient votre identifiant."))
            else:
                problems.append(_("Ce mot de passe contient le nom de votre laboratoire."))
            break
    if any(word in form for word in FORBIDDEN_WORDS for form in forms):
        problems.append(_("Ce mot de passe contient le nom du logiciel (« coffre »)."))
    if any(MONTH_YEAR.search(form) for form in forms):
        problems.append(_(
            "Ce mot de passe contient un mois suivi d'une année (comme Janvier2024)."))
    return problems


class CnilPasswordValidator:
    """Django password validator applying ``password_problems`` to an account."""

    def validate(self, password, user=None):
        username = user.get_username() if user is not None else ""
        problems = password_problems(password, username=username or "",
                                     lab_names=_lab_names(user))
        if problems:
            raise ValidationError(
                [ValidationError(problem, code="password_cnil") for problem in problems])

    def get_help_text(self):
        return _(
            "Votre mot de passe doit atteindre au moins %(minimum)d bits d'entropie "
            "(recommandation de la CNIL), par exemple 12 caractères mêlant minuscules, "
            "majuscules, chiffres et caractères spéciaux, sans suite (abcd, azerty), sans "
            "mois ni année, ni votre identifiant ou le nom du laboratoire."
        ) % {"minimum": min_bits()}


def _lab_names(user) -> list[str]:
    if user is None or getattr(user, "pk", None) is None:
        return []
    from coffre.accounts.models import Membership

    return list(Membership.objects.filter(user=user).values_list("lab__name", flat=True))
