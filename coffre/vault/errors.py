"""Vault errors. Messages name the problem and never contain key material or data."""


class VaultError(Exception):
    """Base class: every vault failure is one of these, so callers can fail closed."""


class KeyProviderError(VaultError):
    """The master key is missing, unreadable, malformed or does not match the data."""


class DecryptionError(VaultError):
    """A ciphertext did not open: wrong key, wrong context (moved row/column) or tampering.

    One exception type for every cause, as pyca's ``InvalidToken``. Its message may say
    whether the format or the key id was wrong (public facts an operator needs), never
    anything about the plaintext, and never which of context or content was altered.
    """
