"""The crypto core on its own: sealing, binding, wrapping, blind indexes, key files."""

import base64
import json
import math
import os

import pytest

from coffre.vault import (
    BlindIndexer,
    DecryptionError,
    Key,
    KeyProviderError,
    add_key_version,
    context,
    create_key_file,
    index_bits,
    load_master_keys,
)
from coffre.vault.aead import HEADER_BYTES


def test_a_sealed_value_opens_with_its_key_and_context():
    key = Key.generate()
    blob = key.seal("DUPONT", context("patient", "birth_name", "row-1"))
    assert key.open(blob, context("patient", "birth_name", "row-1")) == "DUPONT"
    assert b"DUPONT" not in blob


def test_a_tag_checks_only_its_data_under_its_key():
    key, other = Key.generate(), Key.generate()
    tag = key.mac(b"result\x1f718-7\x1fpublished")
    assert len(tag) == 16 and key.mac(b"result\x1f718-7\x1fpublished") == tag
    assert key.mac_matches(b"result\x1f718-7\x1fpublished", tag)
    assert not key.mac_matches(b"result\x1f1988-5\x1fpublished", tag)
    assert not other.mac_matches(b"result\x1f718-7\x1fpublished", tag)
    # A key re-made from the same material (a patient's data key unwrapped again) agrees.
    again = Key(key.key_id, key._material)
    assert again.mac_matches(b"result\x1f718-7\x1fpublished", tag)


def test_a_ciphertext_moved_to_another_row_does_not_open():
    key = Key.generate()
    blob = key.seal("DUPONT", context("patient", "birth_name", "row-1"))
    with pytest.raises(DecryptionError):
        key.open(blob, context("patient", "birth_name", "row-2"))


def test_a_ciphertext_moved_to_another_column_does_not_open():
    key = Key.generate()
    blob = key.seal("DUPONT", context("patient", "birth_name", "row-1"))
    with pytest.raises(DecryptionError):
        key.open(blob, context("patient", "used_name", "row-1"))


def test_a_ciphertext_does_not_open_under_another_key():
    blob = Key.generate().seal("x", b"ad")
    with pytest.raises(DecryptionError):
        Key.generate().open(blob, b"ad")


def test_a_flipped_bit_anywhere_is_refused():
    key = Key.generate()
    blob = bytearray(key.seal("secret", b"ad"))
    for position in (0, 3, HEADER_BYTES + 2, len(blob) - 1):
        damaged = bytearray(blob)
        damaged[position] ^= 1
        with pytest.raises(DecryptionError):
            key.open(bytes(damaged), b"ad")


def test_every_ciphertext_carries_its_key_id():
    key = Key.generate()
    assert key.seal("x", b"ad")[1:HEADER_BYTES] == key.key_id


def test_padding_hides_whether_a_note_is_empty():
    key = Key.generate()
    empty = key.seal("", b"ad", min_size=128)
    short = key.seal("Suivi diabète de type 2", b"ad", min_size=128)
    assert len(empty) == len(short)
    assert key.open(empty, b"ad") == ""


def test_the_same_value_seals_differently_each_time():
    key = Key.generate()
    assert key.seal("DUPONT", b"ad") != key.seal("DUPONT", b"ad")


def test_a_wrapped_key_unwraps_only_in_its_slot():
    kek, dek = Key.generate(), Key.generate()
    wrapped = kek.wrap(dek, context("patient", "data-key", "row-1"))
    unwrapped = kek.unwrap(wrapped, context("patient", "data-key", "row-1"))
    assert unwrapped.key_id == dek.key_id
    assert unwrapped.open(dek.seal("v", b"ad"), b"ad") == "v"
    with pytest.raises(DecryptionError):
        kek.unwrap(wrapped, context("patient", "data-key", "row-2"))


def test_a_key_never_prints_its_material():
    key = Key.generate()
    assert key._material.hex() not in repr(key)


@pytest.mark.parametrize("rows", [10, 1_000, 100_000, 491_840, 50_000_000])
def test_index_bits_follow_the_cipher_sweet_rule(rows):
    bits = index_bits(rows)
    coincidences = rows / 2**bits
    assert 2 <= coincidences <= math.sqrt(rows)
    assert rows / 2 ** (bits + 1) < 2  # the largest such truncation


def test_blind_indexes_are_deterministic_truncated_and_separated_per_index():
    indexer = BlindIndexer(Key.generate(), bits=17)
    value = indexer.compute("nir", "185057800608436")
    assert value == indexer.compute("nir", "185057800608436")
    assert 0 <= value < 2**17
    others = {indexer.compute("nir", f"18505780060{i:04d}") for i in range(200)}
    assert len(others) > 150  # spread over the range
    assert indexer._key("email") != indexer._key("phone")


def test_blind_index_keys_differ_between_installations():
    one, two = BlindIndexer(Key.generate(), 17), BlindIndexer(Key.generate(), 17)
    values = [f"NAME{i}|2000-01-01" for i in range(50)]
    assert [one.compute("name_dob", v) for v in values] != \
        [two.compute("name_dob", v) for v in values]


def test_a_new_key_file_is_private_and_loads(tmp_path):
    path = tmp_path / "keys" / "master.key"
    created = create_key_file(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_master_keys(path, {}).current.key_id == created.current.key_id


def test_a_key_file_is_never_overwritten(tmp_path):
    path = tmp_path / "master.key"
    create_key_file(path)
    with pytest.raises(KeyProviderError, match="already exists"):
        create_key_file(path)


def test_a_missing_key_file_is_named_in_the_error(tmp_path):
    with pytest.raises(KeyProviderError, match="does not exist"):
        load_master_keys(tmp_path / "nope.key", {})


def test_a_key_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "master.key"
    create_key_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyProviderError, match="chmod 600"):
        load_master_keys(path, {})


def test_a_damaged_key_file_is_refused(tmp_path):
    path = tmp_path / "master.key"
    create_key_file(path)
    document = json.loads(path.read_text())
    document["keys"][0]["key"] = base64.b64encode(os.urandom(32)).decode()
    path.write_text(json.dumps(document))
    with pytest.raises(KeyProviderError, match="damaged"):
        load_master_keys(path, {})


def test_a_file_that_is_not_a_key_file_is_refused(tmp_path):
    path = tmp_path / "master.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"\x00\x01garbage")
    os.close(fd)
    with pytest.raises(KeyProviderError, match="not a Coffre key file"):
        load_master_keys(path, {})


def test_the_environment_variable_provides_the_key(tmp_path):
    material = base64.b64encode(os.urandom(32)).decode()
    keys = load_master_keys(tmp_path / "absent.key", {"COFFRE_MASTER_KEY": material})
    assert keys.source == "COFFRE_MASTER_KEY"


@pytest.mark.parametrize("value", ["", "not base64!", base64.b64encode(b"short").decode()])
def test_a_bad_environment_key_is_refused_with_a_reason(tmp_path, value):
    with pytest.raises(KeyProviderError, match="COFFRE_MASTER_KEY"):
        load_master_keys(tmp_path / "absent.key", {"COFFRE_MASTER_KEY": value})


def test_a_new_master_version_keeps_the_old_one_for_unwrapping(tmp_path):
    path = tmp_path / "master.key"
    old = create_key_file(path).current
    keys = add_key_version(path)
    assert keys.current.key_id != old.key_id
    assert keys.by_id(old.key_id).key_id == old.key_id
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_streamed_age_file_opens_whole_and_a_producer_error_comes_back_as_is():
    import io

    from coffre.vault import decrypt_with, encrypt_stream_to, new_recipient_identity

    identity, recipient = new_recipient_identity()
    lines = [b"%d;ligne\n" % n for n in range(50_000)]
    out = io.BytesIO()
    encrypt_stream_to(recipient, iter(lines), out)
    assert decrypt_with(identity, out.getvalue()) == b"".join(lines)

    def broken():
        yield b"debut\n"
        raise LookupError("the producer failed")

    with pytest.raises(LookupError, match="the producer failed"):
        encrypt_stream_to(recipient, broken(), io.BytesIO())


def test_the_digests_outside_encryption():
    import hashlib

    from coffre.vault import ScratchDigest, mac_hex, same_digest, token_digest

    assert token_digest("abc") == hashlib.sha256(b"abc").hexdigest()
    assert mac_hex(b"k" * 32, b"entry") != mac_hex(b"j" * 32, b"entry")
    assert same_digest(mac_hex(b"k" * 32, b"x"), mac_hex(b"k" * 32, b"x"))
    one, two = ScratchDigest(), ScratchDigest()
    assert one("Martin") == one("Martin") != two("Martin")  # a key of its own per run
    assert len(one("Martin")) == 16
