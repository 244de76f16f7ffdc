"""What the browser tests share: where Chromium is, screenshots, logging in through the
real pages (password, then the second factor)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from coffre.accounts import mfa
from tests.conftest import STAFF_PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"
PASSWORD = STAFF_PASSWORD


def shoot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def inline_code(page) -> dict:
    """What a strict CSP would block: scripts, inline styles, event handlers."""
    return page.evaluate("""() => ({
        scripts: document.scripts.length,
        styles: document.querySelectorAll('style, [style]').length,
        handlers: [...document.querySelectorAll('*')].filter(
            el => [...el.attributes].some(a => a.name.startsWith('on'))).length,
        stylesheets: [...document.styleSheets].filter(s => s.cssRules.length).map(
            s => s.href),
    })""")


# The TOTP secret each account enrolled in this test, read from the enrollment page.
SECRETS: dict[str, str] = {}


def second_factor(page, username: str, enroll_shot: str | None = None,
                  code_shot: str | None = None) -> None:
    """The pages after the password: enrollment (first login) or the code, with the code
    computed the way an authenticator app does (``mfa.current_code``)."""
    page.wait_for_url(re.compile(r".*/connexion/(activation-2fa|code)/.*"))
    if "/activation-2fa/" in page.url:
        SECRETS[username] = page.locator("#mfa-secret").inner_text().replace(" ", "")
        found = inline_code(page)
        assert (found["scripts"], found["styles"], found["handlers"]) == (0, 0, 0)
        if enroll_shot:
            shoot(page, enroll_shot)
        page.get_by_label("Code à 6 chiffres").fill(mfa.current_code(SECRETS[username]))
        page.get_by_role("button", name="Activer").click()
        page.get_by_role("heading", name="Double authentification activée").wait_for()
        assert page.locator(".recovery-codes li").count() == 10
        page.get_by_role("link", name="J'ai noté mes codes, continuer").click()
    else:
        if code_shot:
            shoot(page, code_shot)
        # The previous login of this test may have used the current step's code: the
        # next step's is accepted too (one step of clock drift) and not yet used.
        page.get_by_label("Code").fill(
            mfa.current_code(SECRETS[username], time.time() + 30))
        page.get_by_role("button", name="Valider").click()


def log_in(page, username: str = "alice", shot: str | None = None, **shots) -> None:
    page.goto("/connexion/")
    page.get_by_label("Identifiant").fill(username)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    if shot:
        shoot(page, shot)
    page.get_by_role("button", name="Se connecter").click()
    second_factor(page, username, **shots)
    page.wait_for_url("**/patients/")
