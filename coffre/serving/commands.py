"""``coffre serve`` (the development server, or gunicorn with ``--production``) and
``coffre check [--production]``."""

from __future__ import annotations

import argparse
import sys

from coffre import config
from coffre.cmdkit import CommandError, command


def add_arguments(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the web interface (development server, or "
                                     "gunicorn with --production: docs/deploy.md)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--production", action="store_true",
                   help="gunicorn workers; refuses to start unless `coffre check "
                        "--production` passes")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default 2 x cores + 1, at most 9)")
    p.add_argument("--threads", type=int, default=None, help="threads per worker (default 4)")
    p.add_argument("--skip-checks", action="store_true",
                   help="start even if checks fail (they are still printed); for tests and "
                        "load runs on loopback, never for real patients")

    p = sub.add_parser("check", help="report what a production server still lacks")
    p.add_argument("--production", action="store_true",
                   help="HTTPS, keys, database role, cache, mail, disk (docs/deploy.md)")


@command("serve")
def serve(args: argparse.Namespace) -> int:
    from django.core.management import call_command

    if args.production:
        return _serve_production(args)
    print(f"Coffre is serving on http://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    call_command("runserver", f"{args.host}:{args.port}", use_reloader=False,
                 use_threading=True, skip_checks=True)
    return 0


def _serve_production(args: argparse.Namespace) -> int:
    from django.conf import settings

    from coffre.serving import checks, server

    if settings.DEBUG:
        raise CommandError("refusing to serve in production with COFFRE_DEBUG on: a "
                           "traceback page would show data; unset COFFRE_DEBUG")
    failed = _print_checks(checks.run(), only_failures=True)
    if failed and not args.skip_checks:
        raise CommandError(f"refusing to start: {failed} check(s) failed (above); fix them, "
                           "or pass --skip-checks for a test on loopback")
    if failed:
        print(f"coffre: WARNING: starting with {failed} failed check(s) (--skip-checks): "
              "not for real patients", file=sys.stderr, flush=True)
    if settings.STATIC_ROOT:
        _collect_static()
    print(f"Coffre (production) is serving on http://{args.host}:{args.port}/ "
          "(SIGTERM to stop)", file=sys.stderr, flush=True)
    server.run(args.host, args.port, args.workers, args.threads or server.THREADS)
    return 0


def _collect_static() -> None:
    from django.conf import settings
    from django.core.management import call_command

    try:
        call_command("collectstatic", interactive=False, verbosity=0)
    except OSError as exc:
        raise CommandError(config.disk_problem(exc, settings.STATIC_ROOT)) from None


def _print_checks(items: list, only_failures: bool = False) -> int:
    for item in items:
        if only_failures and item.ok:
            continue
        for line in item.lines():
            print(line, file=sys.stderr if only_failures else sys.stdout, flush=True)
    return sum(not item.ok for item in items)


@command("check")
def check(args: argparse.Namespace) -> int:
    """Exit 0 only when every check passes; each failure says how to fix it."""
    from django.core.management import call_command

    if not args.production:
        call_command("check")
        return 0
    from coffre.serving import checks

    failed = _print_checks(checks.run())
    print(f"{failed} problem(s)" if failed else "ready for production")
    return 1 if failed else 0

