"""The crypto core of Coffre. It imports nothing from Django.

Public calls: :class:`Key` (seal / open / wrap / unwrap), :func:`context` (associated
data naming a value's place), :class:`BlindIndexer` and :func:`index_bits`, the master
key providers, the TOTP functions of the second factor (``otp_*``), and the errors.
Primitives stay private to this package.
"""

from coffre.vault.aead import Key, context, context_prefix, key_id_of
from coffre.vault.blind import BlindIndexer, combined_bits, index_bits, plan_index_bits
from coffre.vault.digest import ScratchDigest, file_sha256, mac_hex, same_digest, token_digest
from coffre.vault.errors import DecryptionError, KeyProviderError, VaultError
from coffre.vault.master import (
    ENV_VAR,
    MasterKeys,
    add_key_version,
    create_key_file,
    load_master_keys,
)
from coffre.vault.otp import (
    new_otp_secret,
    otp_base32,
    otp_code,
    otp_counter,
    otp_match,
    otp_secret_from_base32,
    otp_uri,
)
from coffre.vault.recipient import (
    RecipientKeyError,
    check_recipient,
    decrypt_with,
    encrypt_stream_to,
    encrypt_to,
    fingerprint,
    new_recipient_identity,
)
from coffre.vault.stream import decrypt_stream, encrypt_stream, read_header

__all__ = [
    "ENV_VAR",
    "BlindIndexer",
    "DecryptionError",
    "Key",
    "KeyProviderError",
    "MasterKeys",
    "RecipientKeyError",
    "ScratchDigest",
    "VaultError",
    "add_key_version",
    "check_recipient",
    "combined_bits",
    "context",
    "context_prefix",
    "create_key_file",
    "decrypt_stream",
    "decrypt_with",
    "encrypt_stream",
    "encrypt_stream_to",
    "encrypt_to",
    "file_sha256",
    "fingerprint",
    "index_bits",
    "key_id_of",
    "load_master_keys",
    "mac_hex",
    "new_otp_secret",
    "new_recipient_identity",
    "otp_base32",
    "otp_code",
    "otp_counter",
    "otp_match",
    "otp_secret_from_base32",
    "otp_uri",
    "plan_index_bits",
    "read_header",
    "same_digest",
    "token_digest",
]
