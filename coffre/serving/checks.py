"""``coffre check --production``: every missing or unsafe item, with how to fix it, before
the server starts (``coffre serve --production`` runs the same list).

Where Django's own deployment checks (``check --deploy``) cover an item (DEBUG, secret
key, HTTPS cookies, HSTS, allowed hosts) their message is reported as is, followed by the
Coffre setting that fixes it; the other items are Coffre's.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings

from coffre import config

MIN_FREE_BYTES = 2 * 1024**3  # a backup and a few exports


@dataclasses.dataclass(frozen=True)
class Item:
    name: str
    ok: bool
    message: str
    fix: str = ""

    def lines(self) -> list[str]:
        head = f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.message}"
        return [head] + ([f"     fix: {self.fix}"] if self.fix and not self.ok else [])


def _ok(name: str, message: str) -> Item:
    return Item(name, True, message)


def _fail(name: str, message: str, fix: str) -> Item:
    return Item(name, False, message, fix)


# Django deployment check id -> the Coffre setting that fixes it.
DJANGO_FIXES = {
    "security.W004": "set COFFRE_HTTPS=true (HSTS for one year)",
    "security.W008": "set COFFRE_HTTPS=true (and COFFRE_BEHIND_PROXY=true behind the proxy)",
    "security.W009": "unset COFFRE_SECRET_KEY (Coffre then keeps a random key in "
                     "COFFRE_HOME/secret_key) or give it 50+ random characters",
    # W010 rather than W012: Django names W012 only for its own session middleware, and
    # Coffre's subclasses it (coffre.accounts.sessions.SlidingSessionMiddleware).
    "security.W010": "set COFFRE_HTTPS=true",
    "security.W012": "set COFFRE_HTTPS=true",
    "security.W016": "set COFFRE_HTTPS=true",
    "security.W018": "unset COFFRE_DEBUG (or set it to false)",
    "security.W020": "set COFFRE_ALLOWED_HOSTS to the server's public name",
}
# Site choices, not faults: subdomains and preload lists belong to the whole domain.
DJANGO_IGNORED = {"security.W005", "security.W021"}


def django_deploy() -> Iterator[Item]:
    from django.core import checks

    found = [message for message in checks.run_checks(include_deployment_checks=True)
             if message.level >= checks.WARNING and message.id not in DJANGO_IGNORED]
    for message in found:
        text = str(message.msg).split(". ")[0].strip().rstrip(".")  # first sentence
        yield _fail(f"django {message.id}", text,
                    DJANGO_FIXES.get(message.id, message.hint or "see Django's deployment "
                                                                 "checklist"))
    if not found:
        yield _ok("django check --deploy", "no warning")


def https() -> Iterator[Item]:
    hosts = settings.ALLOWED_HOSTS
    if "*" in hosts or set(hosts) <= {"127.0.0.1", "localhost", "::1", "[::1]"}:
        yield _fail("allowed hosts", f"COFFRE_ALLOWED_HOSTS is {','.join(hosts) or 'empty'}",
                    "set COFFRE_ALLOWED_HOSTS to the public name(s) of the server, "
                    "e.g. coffre.labo-exemple.fr")
    else:
        yield _ok("allowed hosts", ",".join(hosts))
    if not settings.SESSION_COOKIE_SECURE:
        yield _fail("https", "COFFRE_HTTPS is not set: cookies would travel in clear",
                    "terminate TLS at the reverse proxy and set COFFRE_HTTPS=true")
    elif not settings.COFFRE_BEHIND_PROXY:
        # gunicorn speaks plain HTTP here: without the proxy's header every request
        # looks like HTTP and SECURE_SSL_REDIRECT would loop.
        yield _fail("reverse proxy", "COFFRE_HTTPS is set but COFFRE_BEHIND_PROXY is not",
                    "serve through the TLS reverse proxy (docs/deploy.md) and set "
                    "COFFRE_BEHIND_PROXY=true")
    else:
        yield _ok("https", "TLS at the reverse proxy, secure cookies, HSTS")


def client_address() -> Iterator[Item]:
    """Behind a proxy, lockouts, rate limits and the access log need the client's address,
    not the proxy's (coffre.serving.proxy)."""
    from coffre.serving.proxy import describe

    trusted = settings.COFFRE_TRUSTED_PROXIES
    if trusted:
        yield _ok("client address", f"X-Forwarded-For believed from {describe(trusted)}")
    elif settings.COFFRE_BEHIND_PROXY:
        yield _fail("client address", "COFFRE_BEHIND_PROXY is set but COFFRE_TRUSTED_PROXIES "
                                      "is not: every client has the proxy's address, so a "
                                      "flood of failed logins or token requests from one "
                                      "locks out all, they share one address in the access "
                                      "log",
                    "set COFFRE_TRUSTED_PROXIES=127.0.0.1,::1 for the proxy on this host "
                    "(docs/deploy.md), or the proxies' addresses, or their number")
    else:
        yield _ok("client address", "REMOTE_ADDR (no proxy trusted)")


def key_provider() -> Iterator[Item]:
    from coffre.vault import ENV_VAR

    if os.environ.get(ENV_VAR):
        yield _ok("master key", f"from {ENV_VAR} (keep it out of shell history and "
                                "world-readable unit files)")
        return
    path = config.key_file()
    if not path.exists():
        yield _fail("master key", f"{path} does not exist",
                    "restore the key file or set COFFRE_KEY_FILE (docs/operations.md)")
        return
    info = path.stat()
    if stat.S_IMODE(info.st_mode) & 0o077:
        yield _fail("master key", f"{path} has mode {stat.S_IMODE(info.st_mode):04o}",
                    f"chmod 600 {path}")
    elif info.st_uid != os.geteuid():
        yield _fail("master key", f"{path} belongs to uid {info.st_uid}, not to this user",
                    "chown the file to the user that runs Coffre")
    elif config._is_under(path, config.home()):
        yield _fail("master key", f"{path} is inside COFFRE_HOME {config.home()}: a copy "
                                  "of the data directory would carry its key",
                    "move it, e.g. to /etc/coffre/master.key (0600, owned by coffre), and "
                    "set COFFRE_KEY_FILE")
    else:
        yield _ok("master key", f"{path} (0600, outside COFFRE_HOME)")


def auditor_key() -> Iterator[Item]:
    """The auditor's private key must not lie with the data: a server holding it could
    rewrite the access log from its first entry (docs/audit.md)."""
    from coffre.audit import chain

    found = chain.private_keys_under_home()
    for path in found:
        yield _fail("auditor key", f"{path} holds the auditor's private key, inside "
                                   "COFFRE_HOME: a compromised server could rewrite the "
                                   "access log with it",
                    f"give a copy to the person who verifies the log (`coffre audit verify "
                    f"--auditor-key FILE`), then delete it here: shred -u {path}")
    if not found:
        yield _ok("auditor key", "no auditor private key under COFFRE_HOME")


def password_hashing() -> Iterator[Item]:
    """Argon2 at the measured cost; the test suite's cheap parameters never in production."""
    from django.contrib.auth.hashers import get_hasher

    from coffre.accounts.hashers import CoffreArgon2Hasher

    hasher = get_hasher()
    cheap = config.env_bool("COFFRE_ARGON2_TEST_CHEAP", False)
    weaker = any(getattr(hasher, name, 0) < getattr(CoffreArgon2Hasher, name)
                 for name in ("time_cost", "memory_cost"))
    if cheap or weaker:
        cause = ("COFFRE_ARGON2_TEST_CHEAP is set" if cheap
                 else f"the password hasher is {type(hasher).__name__}")
        yield _fail("password hashing",
                    f"{cause}: passwords are hashed with Argon2 time_cost "
                    f"{getattr(hasher, 'time_cost', '?')}, memory "
                    f"{getattr(hasher, 'memory_cost', '?')} KiB (tests only), cheap to "
                    "guess from a copy of the database",
                    "unset COFFRE_ARGON2_TEST_CHEAP (environment file, systemd unit); "
                    "passwords set meanwhile are re-hashed at their next login")
    else:
        yield _ok("password hashing", f"Argon2id time_cost {hasher.time_cost}, memory "
                                      f"{hasher.memory_cost} KiB")


def database() -> Iterator[Item]:
    from django.db import DatabaseError, connection

    from coffre.tenancy.rls import TABLES

    if connection.vendor != "postgresql":
        yield _fail("database", f"{connection.vendor} ({settings.DATABASES['default']['NAME']})",
                    "set COFFRE_DATABASE_URL=postgresql://coffre_app:...@host/coffre "
                    "(docs/deploy.md): SQLite has no row-level security and one writer")
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper, rolbypassrls, current_user FROM pg_roles "
                           "WHERE rolname = current_user")
            superuser, bypass, role = cursor.fetchone()
            cursor.execute("SELECT c.relname, c.relrowsecurity AND c.relforcerowsecurity, "
                           "pg_get_userbyid(c.relowner) = current_user FROM pg_class c "
                           "WHERE c.relname = ANY(%s) AND c.relkind = 'r' "
                           "AND pg_table_is_visible(c.oid)", [list(TABLES)])
            tables = cursor.fetchall()
    except DatabaseError as exc:
        yield _fail("database", f"PostgreSQL is not reachable ({type(exc).__name__})",
                    "check COFFRE_DATABASE_URL, that PostgreSQL runs and that "
                    "pg_hba.conf lets this role in")
        return
    yield _ok("database", f"PostgreSQL, reachable as {role}")
    yield from _migrations(connection)
    if superuser or bypass:
        yield _fail("database role", f"{role} is {'SUPERUSER' if superuser else 'BYPASSRLS'}:"
                                     " row-level security does not apply to it",
                    "serve as the application role (NOSUPERUSER NOBYPASSRLS, owning no "
                    "table), run `coffre init` as the owner role (docs/deploy.md)")
    else:
        yield _ok("database role", f"{role} is subject to row-level security")
    unprotected = sorted(name for name, forced, _ in tables if not forced)
    owned = sorted(name for name, _, owner in tables if owner)
    if len(tables) < len(TABLES) or unprotected:
        yield _fail("row-level security", "not enforced on "
                    + (", ".join(unprotected) or "every table (schema not migrated?)"),
                    "run `coffre init` (the migrations enable and force it)")
    elif owned:
        yield _fail("row-level security", f"{role} owns {', '.join(owned)}: an owner can "
                                          "disable the policy",
                    "make the owner role own the tables; serve as coffre_app")
    else:
        yield _ok("row-level security", "enabled and forced on " + ", ".join(TABLES))
    if "pool" not in settings.DATABASES["default"].get("OPTIONS", {}):
        yield _fail("connection pool", "no psycopg connection pool",
                    "install psycopg[pool] and leave COFFRE_DB_POOL_SIZE unset or > 0")
    else:
        size = settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"]
        yield _ok("connection pool", f"up to {size} connections per worker")


def _migrations(connection) -> Iterator[Item]:
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        yield _fail("schema", f"{len(pending)} migration(s) not applied (after an upgrade?)",
                    "run `coffre init` as the owner role (docs/deploy.md, Upgrades)")
    else:
        yield _ok("schema", "up to date")


def blind_indexes() -> Iterator[Item]:
    """Rows still indexed under the legacy installation-wide key, or a lab whose
    re-index stopped."""
    from django.db import DatabaseError

    from coffre.identity.models import Patient
    from coffre.keyring.models import LabIndexKey

    try:
        legacy = (Patient.unscoped.filter(bi_key__isnull=True, data_key__isnull=False)
                  .values("lab_id").distinct().count())
        unfinished = LabIndexKey.objects.filter(complete=False).count()
    except DatabaseError:
        return  # the database item says why
    if legacy:
        yield _fail("blind indexes", f"{legacy} lab(s) still indexed under the installation-"
                                     "wide key: a copy links their patients across labs",
                    "run `coffre keys reindex` (resumable; docs/operations.md, Rotation)")
    elif unfinished:
        yield _fail("blind indexes", f"{unfinished} index key generation(s) not complete "
                                     "(a re-index stopped): searches try two keys",
                    "run `coffre keys reindex`")
    else:
        yield _ok("blind indexes", "every lab under its own index key")


def redis() -> Iterator[Item]:
    url = config.redis_url()
    if not url:
        yield _fail("cache", "no COFFRE_REDIS_URL: rate limits are kept per worker process",
                    "install redis-server and set COFFRE_REDIS_URL=redis://127.0.0.1:6379/0")
        return
    from django.core.cache import cache

    try:
        cache.set("coffre-check", "1", 10)
        reached = cache.get("coffre-check") == "1"
    except Exception as exc:
        reached, reason = False, type(exc).__name__
    else:
        reason = "value not read back"
    if reached:
        yield _ok("cache", f"Redis at {_no_password(url)}")
    else:
        yield _fail("cache", f"Redis at {_no_password(url)} is not reachable ({reason})",
                    "start redis-server or fix COFFRE_REDIS_URL")


def _no_password(url: str) -> str:
    parts = urlparse(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


def mail() -> Iterator[Item]:
    if settings.EMAIL_BACKEND != "django.core.mail.backends.smtp.EmailBackend":
        backend = settings.EMAIL_BACKEND.rsplit(".", 2)[-2]
        yield _fail("mail", f"alerts to the data-protection officers go to {backend} "
                            f"({settings.EMAIL_FILE_PATH})",
                    "set COFFRE_EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend, "
                    "COFFRE_EMAIL_HOST, COFFRE_EMAIL_PORT and COFFRE_EMAIL_FROM")
        return
    try:
        with socket.create_connection((settings.EMAIL_HOST, settings.EMAIL_PORT), timeout=3):
            pass
    except OSError as exc:
        yield _fail("mail", f"SMTP {settings.EMAIL_HOST}:{settings.EMAIL_PORT} is not "
                            f"reachable ({exc.strerror or type(exc).__name__})",
                    "check COFFRE_EMAIL_HOST and COFFRE_EMAIL_PORT (a local relay such as "
                    "postfix on 127.0.0.1:25 is simplest)")
        return
    yield _ok("mail", f"SMTP {settings.EMAIL_HOST}:{settings.EMAIL_PORT}")


def home() -> Iterator[Item]:
    path = config.home()
    if not path.is_dir():
        yield _fail("COFFRE_HOME", f"{path} does not exist", "run `coffre init`")
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if not os.access(path, os.W_OK):
        yield _fail("COFFRE_HOME", f"{path} is not writable", "see docs/deploy.md")
    elif mode & 0o007:
        yield _fail("COFFRE_HOME", f"{path} has mode {mode:04o}: others can enter it",
                    f"chmod 700 {path}")
    else:
        yield _ok("COFFRE_HOME", f"{path} ({mode:04o})")
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        yield _fail("disk space", f"{free // 1024**2} MiB free under {path}",
                    f"free space or grow the disk: keep at least {MIN_FREE_BYTES // 1024**3}"
                    " GiB for backups and exports")
    else:
        yield _ok("disk space", f"{free // 1024**3} GiB free under {path}")


def static_files() -> Iterator[Item]:
    root: Path | None = settings.STATIC_ROOT and Path(settings.STATIC_ROOT)
    if not root:
        yield _fail("static files", "no COFFRE_STATIC_ROOT: served from the package "
                                    "without long cache headers",
                    "set COFFRE_STATIC_ROOT=/var/lib/coffre/static (collected at each start)")
    else:
        yield _ok("static files", f"collected to {root}")


CHECKS: tuple[Callable[[], Iterator[Item]], ...] = (
    django_deploy, https, client_address, key_provider, auditor_key, password_hashing,
    database, blind_indexes, redis, mail, home, static_files)


def run() -> list[Item]:
    items: list[Item] = []
    for check in CHECKS:
        items.extend(check())
    return items
