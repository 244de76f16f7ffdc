"""Pytest plugin (loaded with ``-p coffre.testing`` before Django's settings): every test
run gets a private COFFRE_HOME and master key, so no test touches ./coffre-data.
"""

import os
import tempfile
from pathlib import Path

_home = Path(tempfile.mkdtemp(prefix="coffre-test-"))
os.environ["COFFRE_HOME"] = str(_home)
os.environ.pop("COFFRE_KEY_FILE", None)
os.environ.pop("COFFRE_MASTER_KEY", None)

from coffre.vault import create_key_file  # noqa: E402

create_key_file(_home / "keys" / "master.key")

# Cheap Argon2 parameters for the accounts tests create (settings.PASSWORD_HASHERS);
# tests/test_passwords.py checks the production hasher explicitly.
os.environ["COFFRE_ARGON2_TEST_CHEAP"] = "1"
