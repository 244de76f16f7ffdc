"""WSGI entry point. Refuses to start unless the master key opens the database."""

import os
import sys

from django.core.wsgi import get_wsgi_application

os.umask(0o077)  # files the server creates (logs, SQLite WAL) are owner-only
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coffre.settings")
application = get_wsgi_application()

from django.db import InterfaceError, OperationalError  # noqa: E402

from coffre.keyring import services as keyring  # noqa: E402  (needs Django set up)
from coffre.vault import VaultError  # noqa: E402

try:
    keyring.check()
except VaultError as exc:
    sys.stderr.write(f"coffre: refusing to start: {exc}\n")
    raise SystemExit(2) from None
except (OperationalError, InterfaceError):
    # The database is away while this worker starts (gunicorn replaced a worker during
    # an outage). Refusing would make gunicorn stop the whole server; the worker starts
    # and answers 503 until the database returns. Nothing opens unchecked: every key is
    # unwrapped with the master key when first used, and a wrong key fails there.
    sys.stderr.write("coffre: the database is unreachable while this worker starts; "
                     "it answers 503 until the database returns\n")
