"""WSGI entry point. Refuses to start unless the master key opens the database and every
lab key in it."""

import os
import sys

from django.core.wsgi import get_wsgi_application

os.umask(0o077)  # files the server creates (logs, SQLite WAL) are owner-only
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coffre.settings")
application = get_wsgi_application()

from django.db import InterfaceError, OperationalError  # noqa: E402

from coffre.backups.service import RestoreUnfinished, finish_restore  # noqa: E402
from coffre.keyring import services as keyring  # noqa: E402  (needs Django set up)
from coffre.vault import VaultError  # noqa: E402

# gunicorn's "worker failed to boot": its arbiter stops the whole server. Any other exit
# code makes it start the worker again and again, a server that never serves and never
# says why to systemd (which restarts `coffre serve`, whose own check names the problem).
WORKER_BOOT_ERROR = 3

try:
    keyring.check()
    # A restore killed before its erasures were re-applied is finished before anything
    # is served (coffre.backups.service.finish_restore).
    done = finish_restore()
    if done:
        sys.stderr.write(f"coffre: {done}\n")
except (VaultError, RestoreUnfinished) as exc:
    sys.stderr.write(f"coffre: refusing to start: {exc}\n")
    raise SystemExit(WORKER_BOOT_ERROR) from None
except (OperationalError, InterfaceError):
    # The database is away while this worker starts (gunicorn replaced a worker during
    # an outage). Refusing would make gunicorn stop the whole server; the worker starts
    # and answers 503 until the database returns. Nothing opens unchecked: every key is
    # unwrapped with the master key when first used, and a wrong key fails there.
    sys.stderr.write("coffre: the database is unreachable while this worker starts; "
                     "it answers 503 until the database returns\n")
