"""Django settings. Every value comes from the environment through coffre.config."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

from coffre import config
from coffre.files import write_private

BASE_DIR = Path(__file__).resolve().parent
COFFRE_HOME = config.home()


def _secret_key() -> str:
    """Django's SECRET_KEY signs sessions and CSRF tokens; it never protects patient data.

    It lives in its own file under COFFRE_HOME (or COFFRE_SECRET_KEY), created on first
    use; no vault key is derived from it.
    """
    if os.environ.get("COFFRE_SECRET_KEY"):
        return os.environ["COFFRE_SECRET_KEY"]
    path = COFFRE_HOME / "secret_key"
    if not path.exists():
        try:
            COFFRE_HOME.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private(path, secrets.token_urlsafe(50), replace=False)
        except FileExistsError:
            pass  # another process made it meanwhile: everyone reads that one
        except OSError as exc:
            raise config.ConfigError(config.disk_problem(exc, path)) from None
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = config.env_bool("COFFRE_DEBUG", False)
ALLOWED_HOSTS = [host for host in
                 os.environ.get("COFFRE_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if host]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "coffre.tenancy",
    "coffre.keyring",
    "coffre.identity",
    "coffre.accounts",
    "coffre.audit",
    "coffre.labwork",
    "coffre.portal",
    "coffre.lifecycle",
    "coffre.exports",
    "coffre.apiclients",
    "coffre.fhir",
    "coffre.breach",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "coffre.accounts.security.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # One log line per request (route, status, duration, actor; never the query string),
    # then 503 instead of 500 while the database is away (coffre.serving).
    "coffre.serving.logs.RequestLogMiddleware",
    "coffre.serving.outage.DatabaseOutageMiddleware",
    # Django's, writing the session's sliding expiry at most once a minute.
    "coffre.accounts.sessions.SlidingSessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # PostgreSQL row-level security: each request starts unlimited, then staff and
    # portal views limit it to their labs (coffre.tenancy.rls).
    "coffre.tenancy.rls.ScopeResetMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "coffre.accounts.sessions.SessionEpochMiddleware",  # "log out everywhere"
    # A temporary password is replaced before any other page (coffre.accounts.temporary).
    "coffre.accounts.temporary.TemporaryPasswordMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "coffre.urls"
WSGI_APPLICATION = "coffre.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "coffre.accounts.context.acting_lab",
                "coffre.accounts.context.alerts_badge",
                "coffre.accounts.context.capabilities",
            ],
        },
    },
]


def _pool_available() -> bool:
    try:
        import psycopg_pool  # noqa: F401
    except ImportError:
        return False
    return True


def _postgresql(url: str) -> dj_database_url.DBConfig:
    """PostgreSQL with a psycopg 3 connection pool per process (each gunicorn worker has
    its own: pools do not cross a fork). The pool's size is the worker's thread count:
    a thread holds at most one connection. Without psycopg_pool (or with
    COFFRE_DB_POOL_SIZE=0), persistent connections instead; `coffre check --production`
    reports it."""
    database = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    database["TEST"] = {"NAME": os.environ.get("COFFRE_TEST_DATABASE_NAME")
                        or f"test_{database['NAME']}"}
    options = database.setdefault("OPTIONS", {})
    # A vanished server fails a new connection in seconds (a 503), not after minutes.
    options.setdefault("connect_timeout", config.env_int("COFFRE_DB_CONNECT_TIMEOUT", 5))
    # Names this process's sessions in pg_stat_activity (a server's workers share their
    # master's): `coffre restore` tells its own pooled sessions from everyone else's.
    options.setdefault("application_name", f"coffre {os.getpid()}")
    size = config.env_int("COFFRE_DB_POOL_SIZE", 4)
    if size > 0 and _pool_available():
        database["CONN_MAX_AGE"] = 0  # Django refuses persistent connections with a pool
        options["pool"] = {
            "min_size": 1, "max_size": size,
            # How long a request waits for a free connection (or for the database to come
            # back) before it is answered 503.
            "timeout": float(config.env_int("COFFRE_DB_POOL_TIMEOUT", 3)),
            "max_idle": 300, "name": "coffre",
            # After a database outage the pool retries with a doubling delay; giving up
            # after 10 s bounds that delay, and the next request starts a fresh attempt,
            # so service resumes within seconds of the database's return.
            "reconnect_timeout": 10.0,
        }
    return database


def _databases() -> dict:
    url = config.database_url()
    if url:
        return {"default": _postgresql(url)}
    path = config.sqlite_path()
    return {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            # A test database is a file under COFFRE_HOME too, so the leak check sees it.
            "TEST": {"NAME": COFFRE_HOME / "test.sqlite3"},
            "OPTIONS": {
                # WAL for concurrent readers; secure_delete so freed pages (a shredded
                # data key, an erased patient) are overwritten, not left in the file.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA secure_delete=ON; "
                                "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }


DATABASES = _databases()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Argon2id with parameters measured on the target hardware (coffre/accounts/hashers.py,
# bench/login.py). Hashes made with other Argon2 parameters still verify (they are all
# "argon2$...") and are re-hashed with these at the next login.
PASSWORD_HASHERS = ["coffre.accounts.hashers.CoffreArgon2Hasher"]
# The test run (coffre/testing.py) sets COFFRE_ARGON2_TEST_CHEAP=1: the suite creates
# hundreds of accounts, and production parameters made it much slower. Never set it in
# production; tests/test_passwords.py checks the production parameters themselves.
if config.env_bool("COFFRE_ARGON2_TEST_CHEAP", False):
    PASSWORD_HASHERS = ["coffre.accounts.hashers.CheapTestArgon2Hasher"]
# The CNIL's password rule (coffre/accounts/passwords.py) replaces Django's length and
# all-digits validators: it measures entropy and refuses predictable shapes.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "coffre.accounts.passwords.CnilPasswordValidator"},
]
# CNIL délibération n° 2022-100 (21 July 2022), password recommendation: at least 80
# bits of entropy when nothing else protects the account, 50 bits when failed login
# attempts are limited, which the AXES_* settings below do.
COFFRE_PASSWORD_MIN_BITS = config.env_int("COFFRE_PASSWORD_MIN_BITS", 50)

# Failed logins (django-axes, coffre/accounts/locks.py): 5 failures for one username, or
# 20 from one address, within COFFRE_LOGIN_LOCK_MINUTES lock further attempts for as
# long after the last failure; a wrong second-factor code is a failure too. Axes' backend
# comes first so a locked account is refused before its password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
COFFRE_LOGIN_ACCOUNT_FAILURES = config.env_int("COFFRE_LOGIN_ACCOUNT_FAILURES", 5)
COFFRE_LOGIN_ADDRESS_FAILURES = config.env_int("COFFRE_LOGIN_ADDRESS_FAILURES", 20)
AXES_HANDLER = "coffre.accounts.locks.CoffreAxesHandler"
AXES_FAILURE_LIMIT = COFFRE_LOGIN_ACCOUNT_FAILURES
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_COOLOFF_TIME = timedelta(minutes=config.env_int("COFFRE_LOGIN_LOCK_MINUTES", 15))
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "coffre.accounts.locks.lockout_response"
# Patient portal activation (coffre/portal/activation.py): attempts per address in a
# window, counted in the cache before any Argon2 work, so a stranger can neither probe
# codes nor make the server hash for them (the code itself only counts wrong birth dates).
COFFRE_ACTIVATION_ADDRESS_ATTEMPTS = config.env_int("COFFRE_ACTIVATION_ADDRESS_ATTEMPTS", 20)
COFFRE_ACTIVATION_WINDOW_MINUTES = config.env_int("COFFRE_ACTIVATION_WINDOW_MINUTES", 15)
AXES_ENABLE_ADMIN = False
# Axes keeps the posted fields of a failed attempt: not the codes of the code page (a
# mistyped recovery code is close to a real one), nor the password (masked by axes).
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "code"]
# The address is the client's, as every other consumer sees it (API token lockout and
# rate limits, access-log entries): coffre.serving.proxy.client_address, which believes
# X-Forwarded-For only from COFFRE_TRUSTED_PROXIES.
AXES_CLIENT_IP_CALLABLE = "coffre.serving.proxy.client_address"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_AGE = config.env_int("COFFRE_SESSION_SECONDS", 30 * 60)
# Inactivity expiry, not a fixed lifetime: coffre.accounts.sessions.SlidingSessionMiddleware
# moves it forward (at most one write a minute, instead of SESSION_SAVE_EVERY_REQUEST).
SESSION_SAVE_EVERY_REQUEST = False
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True  # no JavaScript reads the token: forms carry it
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if config.env_bool("COFFRE_HTTPS", False):
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_SSL_REDIRECT = True
# Behind a TLS reverse proxy on this host (docs/deploy.md): trust its X-Forwarded-Proto
# for "is this HTTPS". Never set it without a proxy that overwrites the header: a client
# could forge it.
COFFRE_BEHIND_PROXY = config.env_bool("COFFRE_BEHIND_PROXY", False)
if COFFRE_BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The proxies whose X-Forwarded-For gives the client's address (a number of proxies, or
# their addresses); none by default. Without it, behind a proxy every client has the
# proxy's address: one client's failures would lock out all (coffre check --production
# says so).
COFFRE_TRUSTED_PROXIES = config.trusted_proxies()

LANGUAGE_CODE = "fr"
LANGUAGES = [("fr", "Français"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "Europe/Paris"
USE_TZ = True

STATIC_URL = "static/"
# The project's own static files (coffre/static) belong to no app, so the finders (and
# WhiteNoise through them) only see them when listed here.
STATICFILES_DIRS = [BASE_DIR / "static"]
# Development serves static files through the finders straight from the package (no
# collect step, short cache). Production sets COFFRE_STATIC_ROOT: `coffre serve
# --production` (and `coffre init`) collect them there with hashed, pre-compressed names
# that WhiteNoise serves with a one-year immutable cache header: a changed file gets a
# new name, so no browser keeps a stale one.
STATIC_ROOT = config.static_root()
if STATIC_ROOT:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
else:
    WHITENOISE_USE_FINDERS = True

# Rate limits (API tokens) and detection caches use django.core.cache.cache: shared by
# every worker in Redis when COFFRE_REDIS_URL is set; otherwise in each process's memory,
# so a limit of N per minute becomes N per worker.
if config.redis_url():
    CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": config.redis_url(),
        "KEY_PREFIX": "coffre",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Logs never carry patient values: only ids, counts and outcomes are logged by Coffre,
# and Django's request logger (which can echo URLs and POST data on errors) is muted.
# They go to COFFRE_HOME/logs, where `coffre leakcheck` searches them too.
# COFFRE_LOG_FORMAT=json writes one JSON object per line (coffre.serving.logs), for a
# log collector; request lines carry a request id, the route pattern, the status, the
# duration and the actor's account id, role and lab.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "coffre.serving.logs.JsonFormatter"},
    },
    "handlers": {
        # Says once, on stderr, why it cannot write (full disk, read-only) instead of a
        # traceback per line; the request itself goes on.
        "file": {"class": "coffre.serving.logs.LogFileHandler",
                 "filename": config.subdir("logs") / "coffre.log",
                 "maxBytes": 20 * 1024 * 1024, "backupCount": 10,
                 "formatter": config.log_format()},
    },
    "loggers": {
        "coffre": {"handlers": ["file"], "level": "INFO"},
        "django.request": {"handlers": [], "level": "CRITICAL", "propagate": False},
        "django.security": {"handlers": ["file"], "level": "WARNING", "propagate": False},
    },
}

# Alerts are mailed to the lab's data-protection officers. Without SMTP settings the
# mails are written to COFFRE_HOME/mail (and checked by the leak check like any file).
EMAIL_BACKEND = os.environ.get("COFFRE_EMAIL_BACKEND",
                               "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = COFFRE_HOME / "mail"
EMAIL_HOST = os.environ.get("COFFRE_EMAIL_HOST", "localhost")
EMAIL_PORT = config.env_int("COFFRE_EMAIL_PORT", 25)
DEFAULT_FROM_EMAIL = os.environ.get("COFFRE_EMAIL_FROM", "coffre@localhost")

# Blind index truncation is sized for the planned number of patients (coffre.vault.blind).
COFFRE_EXPECTED_PATIENTS = config.env_int("COFFRE_EXPECTED_PATIENTS", 500_000)

# Uploads above 2.5 MB (a leaked file given to the breach scan) are spooled to disk:
# under COFFRE_HOME (owner-only, searched by the leak check), never the shared /tmp.
FILE_UPLOAD_TEMP_DIR = str(config.subdir("tmp"))
