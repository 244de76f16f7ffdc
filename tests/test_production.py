"""Production mode: the gunicorn server, `coffre check --production`, 503 while the
database is away, and clear errors for a read-only or full COFFRE_HOME."""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection
from faker import Faker

from coffre import config
from coffre.serving import checks
from coffre.serving.logs import JsonFormatter, LogFileHandler
from tests.app_role import admin_url
from tests.cli_helpers import Cli, drop_database, make_cli, printed_auditor_key

ON_POSTGRESQL = bool(config.database_url())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fetch(url: str, headers: dict[str, str] | None = None, timeout: float = 30):
    """(status, headers, body); redirects are not followed."""
    parts = urllib.parse.urlsplit(url)
    client = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        client.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                       headers=headers or {})
        response = client.getresponse()
        return response.status, response.headers, response.read()
    finally:
        client.close()


class Server(subprocess.Popen):
    """The server process; what it prints goes to a file, not a pipe nobody reads while
    the test runs (a full pipe would block its workers' log writes)."""

    output: Path

    def printed(self) -> str:
        return self.output.read_text(errors="replace")


@contextlib.contextmanager
def running_server(cli: Cli, *args: str, extra_env: dict[str, str] | None = None
                   ) -> Iterator[tuple[Server, str]]:
    port = free_port()
    output = cli.home.parent / f"server-{port}.log"
    with output.open("w") as sink:
        process = Server(
            [sys.executable, "-m", "coffre", "serve", "--production", "--port", str(port),
             "--workers", "2", *args],
            env={**cli.env, **(extra_env or {})}, stdout=sink, stderr=subprocess.STDOUT,
            text=True)
    process.output = output
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            if process.poll() is not None:
                raise AssertionError(f"server exited {process.returncode}: "
                                     f"{process.printed()}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            time.sleep(0.2)
        yield process, base
    except BaseException:
        # The server's side of a failure, for the test report.
        sys.stderr.write(f"--- server output ---\n{process.printed()[-20000:]}\n")
        raise
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def installation(tmp_path) -> Iterator[Cli]:
    cli, database = make_cli(tmp_path / "home")
    cli.env["COFFRE_STATIC_ROOT"] = str(tmp_path / "static")
    cli.run("init")
    try:
        yield cli
    finally:
        drop_database(database)


def test_the_production_server_serves_logs_json_without_queries_and_stops_on_sigterm(
        installation):
    name = Faker("fr_FR").last_name().upper()
    with running_server(installation, "--skip-checks",
                        extra_env={"COFFRE_LOG_FORMAT": "json"}) as (process, base):
        status, headers, body = fetch(f"{base}/connexion/")
        assert status == 200 and b"<form" in body and headers["Server"] == "gunicorn"
        css = re.search(rb'href="(/static/coffre/coffre\.[0-9a-f]{12}\.css)"', body)
        assert css, "the page links the hashed (collected) stylesheet"
        status, headers, _ = fetch(base + css.group(1).decode(), {"Accept-Encoding": "gzip"})
        assert status == 200 and "immutable" in headers["Cache-Control"]
        assert int(re.search(r"max-age=(\d+)", headers["Cache-Control"]).group(1)) >= 31536000
        assert headers["Content-Encoding"] == "gzip"
        query = urllib.parse.urlencode({"name": name, "birth_date": "1985-03-14"})
        status, _, _ = fetch(f"{base}/patients/?{query}")
        assert status == 302  # to the login page
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
        stderr = process.printed()
    assert "Shutting down" in stderr and name not in stderr
    text = (installation.home / "logs" / "coffre.log").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    requests = {(line["route"], line["status"]) for line in lines
                if line.get("event") == "request"}
    assert {("/connexion/", 200), ("/patients/", 302)} <= requests
    assert all(line["request_id"] for line in lines if line.get("event") == "request")
    for value in (name, urllib.parse.quote(name), "?", "1985"):
        assert value not in text


def test_serve_production_refuses_to_start_when_a_check_fails_or_debug_is_on(installation):
    refused = installation.run("serve", "--production", "--port", str(free_port()),
                               check=False)
    assert refused.returncode == 1
    assert "FAIL https" in refused.stderr and "refusing to start" in refused.stderr
    debug = installation.run("serve", "--production", "--skip-checks", "--port",
                             str(free_port()), check=False, extra_env={"COFFRE_DEBUG": "true"})
    assert debug.returncode == 1 and "COFFRE_DEBUG" in debug.stderr
    assert "Traceback" not in refused.stderr + debug.stderr


def test_check_production_lists_each_problem_of_a_development_setup(installation):
    result = installation.run("check", "--production", check=False)
    assert result.returncode == 1
    failed = {line.split(":")[0][5:] for line in result.stdout.splitlines()
              if line.startswith("FAIL")}
    expected = {"https", "allowed hosts", "master key", "cache", "mail", "password hashing",
                "django security.W010", "django security.W016", "django security.W008"}
    if not ON_POSTGRESQL:
        expected.add("database")
    assert expected <= failed
    assert "fix: chmod" not in result.stdout  # the key file is 0600: not reported
    assert result.stdout.count("fix:") == len(failed)  # every problem says how to fix it
    # Without COFFRE_STATIC_ROOT the static files are not collected: reported too.
    bare = installation.run("check", "--production", check=False,
                            extra_env={"COFFRE_STATIC_ROOT": ""})
    assert "FAIL static files" in bare.stdout


def failed(result) -> dict[str, str]:
    """The FAIL lines of `coffre check --production`, by item, each with its fix line."""
    lines = result.stdout.splitlines()
    return {line[5:].split(":")[0]: line + "\n" + (lines[i + 1] if i + 1 < len(lines) else "")
            for i, line in enumerate(lines) if line.startswith("FAIL")}


def test_check_production_fails_while_the_auditor_key_lies_under_home(installation):
    # The installation's own `init` printed the key once and left it nowhere.
    assert "auditor key" not in failed(installation.run("check", "--production",
                                                        check=False))
    stray = installation.home / "audit" / "auditor-private.key"
    stray.write_text("anything\n")  # where `init` used to write it: refused by its place
    result = installation.run("check", "--production", check=False)
    assert result.returncode == 1
    report = failed(result)["auditor key"]
    assert str(stray) in report and "shred -u" in report and "--auditor-key" in report
    stray.unlink()
    assert "auditor key" not in failed(installation.run("check", "--production",
                                                        check=False))
    # The key printed by `coffre audit auditor-key` (no entry yet in this installation),
    # saved under another name inside COFFRE_HOME, is recognised by its content.
    printed = installation.run("audit", "auditor-key").stdout
    renamed = installation.home / "backups" / "notes.txt"
    renamed.parent.mkdir(exist_ok=True)
    renamed.write_text(printed_auditor_key(printed) + "\n")
    result = installation.run("check", "--production", check=False)
    assert result.returncode == 1 and str(renamed) in failed(result)["auditor key"]


def test_check_production_fails_on_the_test_only_cheap_argon2(installation):
    cheap = installation.run("check", "--production", check=False,
                             extra_env={"COFFRE_ARGON2_TEST_CHEAP": "1"})
    assert cheap.returncode == 1
    report = failed(cheap)["password hashing"]
    assert "COFFRE_ARGON2_TEST_CHEAP is set" in report and "fix: unset" in report
    real = installation.run("check", "--production", check=False,
                            extra_env={"COFFRE_ARGON2_TEST_CHEAP": ""})
    assert "password hashing" not in failed(real)
    assert "ok   password hashing: Argon2id time_cost 3" in real.stdout


@contextlib.contextmanager
def smtp_listener() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def redis_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ON_POSTGRESQL, reason="a production setup needs PostgreSQL")
def test_check_production_passes_on_a_good_setup_and_the_server_starts(installation,
                                                                       tmp_path):
    if not redis_reachable():
        pytest.skip("no Redis on 127.0.0.1:6379")
    key = tmp_path / "etc" / "master.key"
    key.parent.mkdir()
    shutil.move(installation.home / "keys" / "master.key", key)
    # The installation serves as the application role (tests/cli_helpers.make_cli).
    url = installation.env["COFFRE_DATABASE_URL"]
    with smtp_listener() as smtp_port:
        good = {"COFFRE_HTTPS": "true", "COFFRE_BEHIND_PROXY": "true",
                "COFFRE_ALLOWED_HOSTS": "coffre.labo-exemple.fr",
                "COFFRE_KEY_FILE": str(key), "COFFRE_REDIS_URL": "redis://127.0.0.1:6379/15",
                "COFFRE_EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "COFFRE_EMAIL_HOST": "127.0.0.1", "COFFRE_EMAIL_PORT": str(smtp_port),
                "COFFRE_DATABASE_URL": url, "COFFRE_TRUSTED_PROXIES": "127.0.0.1,::1",
                "COFFRE_ARGON2_TEST_CHEAP": ""}
        result = installation.run("check", "--production", extra_env=good)
        assert "ready for production" in result.stdout and "FAIL" not in result.stdout
        as_owner = installation.run("check", "--production", check=False, extra_env={
            **good, "COFFRE_DATABASE_URL": installation.owner_url})
        assert "FAIL database role: postgres is SUPERUSER" in as_owner.stdout
        with running_server(installation, extra_env=good) as (process, base):
            status, _, _ = fetch(f"{base}/connexion/", {
                "Host": "coffre.labo-exemple.fr", "X-Forwarded-Proto": "https"})
            assert status == 200
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=40) == 0


# --- the database goes away and comes back ------------------------------------------

@contextlib.contextmanager
def database_away() -> Iterator[None]:
    """Refuse new sessions to this test database and end the open ones, as a crashed or
    unreachable server would look; the PostgreSQL server itself keeps running."""
    import psycopg

    name = connection.settings_dict["NAME"]
    admin = psycopg.connect(admin_url(), autocommit=True)
    try:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s AND pid <> pg_backend_pid()", [name])
        yield
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()


def staff_client(actor):
    from django.contrib.auth import get_user_model
    from django.test import Client

    from tests.conftest import second_factor_done

    # The test client re-raises a view's exception by default; a server answers instead.
    client = Client(raise_request_exception=False)
    client.force_login(get_user_model().objects.get(username=actor.person))
    second_factor_done(client)
    return client


@pytest.mark.skipif(not ON_POSTGRESQL, reason="terminates PostgreSQL sessions")
@pytest.mark.django_db(transaction=True)
def test_a_vanished_database_gives_503_pages_and_keeps_acknowledged_writes(staff, patient):
    from coffre.labwork.models import Order

    client = staff_client(staff.secretary)
    created = client.post(f"/patients/{patient.id}/demandes/nouvelle/", {
        "quick_codes": "iono", "prescriber_rpps": "10003456786",
        "prescriber_name": "Paul Bernard"})
    assert created.status_code == 302
    order_url = created["Location"]
    with database_away():
        page = client.get(order_url)
        api = client.get("/fhir/Patient", HTTP_AUTHORIZATION="Bearer not-a-token")
    assert page.status_code == 503 and page["Retry-After"]
    text = page.content.decode()
    assert "Service momentanément indisponible" in text
    for leak in ("Traceback", "SELECT", "psycopg", "LEFÈVRE", "Lefèvre", str(patient.id)):
        assert leak not in text
    assert api.status_code == 503 and api["Content-Type"] == "application/fhir+json"
    body = json.loads(api.content)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "transient"
    # Back without a restart: the next requests get a new connection.
    deadline = time.monotonic() + 30
    while (status := client.get(order_url).status_code) != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status == 200
    assert Order.unscoped.filter(id=order_url.strip("/").rsplit("/", 1)[1]).exists()


@pytest.mark.skipif(not ON_POSTGRESQL, reason="terminates PostgreSQL sessions")
def test_the_running_server_answers_503_while_the_database_is_away_and_recovers(
        installation):
    """The same through gunicorn: its workers' pools lose every connection, answer 503
    (the session and the API token are looked up in the database) and serve again
    without a restart."""
    import psycopg

    name = installation.env["COFFRE_DATABASE_URL"].rsplit("/", 1)[1]
    cookie = {"Cookie": "sessionid=" + "x" * 32}
    token = {"Authorization": "Bearer not-a-token"}
    with running_server(installation, "--skip-checks",
                        extra_env={"COFFRE_DB_POOL_TIMEOUT": "2"}) as (process, base):
        assert fetch(f"{base}/", cookie)[0] == 302  # an unknown session: to the login page
        # Only the database's owner (here the superuser) may close it to new sessions.
        with psycopg.connect(admin_url(), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s", [name])
            try:
                status, headers, body = fetch(f"{base}/", cookie)
                api = fetch(f"{base}/fhir/Patient", token)
                # gunicorn replaces a worker that dies during the outage; the new one
                # cannot check the keys against the database and must start anyway
                # (a worker that fails to boot makes gunicorn stop the whole server).
                replaced = workers_of(process)[0]
                os.kill(replaced, signal.SIGKILL)
                wait_for(lambda: len(set(workers_of(process)) - {replaced}) == 2)
                time.sleep(1)  # the new worker's start, against the absent database
                assert process.poll() is None, "the server stopped during the outage"
                still = fetch(f"{base}/", cookie)[0]
            finally:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert still == 503
        assert status == 503 and headers["Retry-After"] == "30"
        assert "Service momentanément indisponible" in body.decode()
        assert b"Traceback" not in body and b"SELECT" not in body
        assert api[0] == 503 and json.loads(api[2])["issue"][0]["code"] == "transient"
        # Each worker's pool recovers on its own: the server is back when every request
        # of a run (which lands on any worker) is served again.
        started, in_a_row = time.monotonic(), 0
        while in_a_row < 20 and time.monotonic() - started < 60:
            in_a_row = in_a_row + 1 if fetch(f"{base}/", cookie)[0] == 302 else 0
            if not in_a_row:
                time.sleep(0.5)
        assert in_a_row == 20, "the server did not serve again within 60 s"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
    printed = process.printed()
    assert "the database is unreachable while this worker starts" in printed
    assert "Traceback" not in printed


def test_a_command_names_an_unreachable_database_instead_of_calling_it_uninitialised(
        installation):
    away = "postgresql://coffre:s3cret-pw@127.0.0.1:9/coffre"  # nothing listens on port 9
    result = installation.run("keys", "status", check=False, extra_env={
        "COFFRE_DATABASE_URL": away, "COFFRE_DB_CONNECT_TIMEOUT": "2",
        "COFFRE_DB_POOL_TIMEOUT": "2"})
    assert result.returncode != 0
    assert "the database (127.0.0.1) cannot be reached" in result.stderr
    assert "not initialised" not in result.stderr and "s3cret-pw" not in result.stderr
    assert "Traceback" not in result.stderr


def workers_of(server: Server) -> list[int]:
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text()
    return [int(pid) for pid in children.split()]


def wait_for(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


# --- read-only and full disks --------------------------------------------------------

def test_disk_errors_are_explained_in_one_line():
    home = config.home()
    read_only = config.disk_problem(OSError(errno.EROFS, "Read-only file system",
                                            str(home / "logs")))
    assert read_only.startswith(f"COFFRE_HOME {home} is read-only") and "\n" not in read_only
    full = config.disk_problem(OSError(errno.ENOSPC, "No space left", "/srv/x.cbk"))
    assert "no space left on the disk holding /srv/x.cbk" in full
    denied = config.disk_problem(OSError(errno.EACCES, "Permission denied", str(home)))
    assert "is not writable by this user" in denied


def _can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.skipif(not _can_mount(), reason="needs root to mount a small tmpfs")
def test_a_read_only_home_stops_init_and_the_server_with_a_clear_message(installation,
                                                                         tmp_path):
    with tmpfs(tmp_path / "ro", "16m") as home:
        # An initialised home (key, database, logs) that has become read-only.
        shutil.copytree(installation.home, home, dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(home)], check=True)
        cli = Cli(home, {**installation.env, "COFFRE_HOME": str(home)})
        for args in (("init",), ("serve", "--production", "--skip-checks", "--port",
                                 str(free_port())), ("backup",)):
            result = cli.run(*args, check=False)
            assert result.returncode != 0, args
            assert f"COFFRE_HOME {home} is read-only" in result.stderr, (args, result.stderr)
            assert "Traceback" not in result.stderr, args


@pytest.mark.skipif(not _can_mount(), reason="needs root to mount a small tmpfs")
def test_a_full_disk_is_reported_by_the_log_handler_and_the_server_start(installation,
                                                                        tmp_path, capsys):
    with tmpfs(tmp_path / "full", "1m") as disk:
        filler = disk / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as out:
            while True:
                out.write(b"\0" * 65536)
        handler = LogFileHandler(str(disk / "coffre.log"), maxBytes=10**6, backupCount=1)
        handler.setFormatter(JsonFormatter())
        LogFileHandler._last_complaint = 0.0
        record = logging.LogRecord("coffre", logging.INFO, __file__, 1, "x" * 8192, None, None)
        handler.handle(record)
        handler.handle(record)
        handler.close()
        err = capsys.readouterr().err
        assert err.count("coffre: log lines are being lost: no space left on the disk") == 1
        assert "Traceback" not in err
        # The server collects its static files at start: into a full disk, it stops.
        result = installation.run("serve", "--production", "--skip-checks", "--port",
                                  str(free_port()), check=False,
                                  extra_env={"COFFRE_STATIC_ROOT": str(disk / "static")})
        assert result.returncode == 1, result.stderr
        assert "no space left on the disk holding" in result.stderr
        assert "Traceback" not in result.stderr


def test_the_checks_report_a_world_readable_home_and_an_open_key(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)  # not mkdir's mode: the process umask may be 077 (coffre.cli.main)
    key = tmp_path / "master.key"
    key.write_text("{}")
    key.chmod(0o644)
    monkeypatch.setenv("COFFRE_HOME", str(home))
    monkeypatch.setenv("COFFRE_KEY_FILE", str(key))
    monkeypatch.delenv("COFFRE_MASTER_KEY", raising=False)
    items = {item.name: item for item in [*checks.home(), *checks.key_provider()]}
    assert not items["COFFRE_HOME"].ok and "chmod 700" in items["COFFRE_HOME"].fix
    assert not items["master key"].ok and items["master key"].fix == f"chmod 600 {key}"
    home.chmod(0o700)
    key.chmod(0o600)
    items = {item.name: item for item in [*checks.home(), *checks.key_provider()]}
    assert items["COFFRE_HOME"].ok and items["master key"].ok


@pytest.mark.django_db
def test_a_patient_search_leaves_no_searched_value_in_the_log(staff, patient, caplog):
    caplog.set_level(logging.INFO, logger="coffre.request")
    client = staff_client(staff.secretary)
    log_file = config.home() / "logs" / "coffre.log"
    before = log_file.read_text() if log_file.exists() else ""
    page = client.post("/patients/", {"name": "lefevre", "birth_date": "1985-03-14"})
    assert str(patient.id) in page.content.decode()  # the search did find the patient
    client.get("/patients/", {"name": "lefevre", "phone": "0612345678"})
    written = log_file.read_text()[len(before):]
    assert "POST /patients/ 200" in written and "GET /patients/ 200" in written
    for value in ("lefevre", "Lefèvre", "LEFÈVRE", "1985", "0612345678", "?"):
        assert value not in written
    fields = [record.coffre for record in caplog.records if hasattr(record, "coffre")]
    search = next(f for f in fields if f["method"] == "POST" and f["route"] == "/patients/")
    assert search["role"] == "secretary" and search["lab"] == patient.lab_id
    assert isinstance(search["user"], int) and search["status"] == 200
    line = json.loads(JsonFormatter().format(next(
        r for r in caplog.records if getattr(r, "coffre", None) is search)))
    assert line["route"] == "/patients/" and line["request_id"] == search["request_id"]


def test_a_log_line_asking_for_an_exception_outside_one_is_still_written():
    """``exc_info=True`` with no exception being handled gives (None, None, None): the
    formatter used to fail on it, and logging then printed the message and its
    arguments to stderr instead of the line."""
    record = logging.LogRecord("coffre.x", logging.ERROR, __file__, 1, "no exception", (),
                               (None, None, None))
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "no exception" and "exception" not in line


def test_behind_the_proxy_the_client_address_is_the_one_the_proxy_appended(rf, settings):
    from coffre.serving.proxy import client_address

    settings.COFFRE_TRUSTED_PROXIES = ("127.0.0.1/32", "::1/128")
    forged = rf.get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7", REMOTE_ADDR="127.0.0.1")
    assert client_address(forged) == "203.0.113.7"
    assert client_address(rf.get("/", REMOTE_ADDR="198.51.100.2")) == "198.51.100.2"
    # (tests/test_client_address.py has the rest: counts, networks, the consumers)
