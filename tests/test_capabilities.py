"""Who may do what is one table, coffre/tenancy/capabilities.py: every role in it is a role,
every capability is asked somewhere, and no other module lists roles (a set of roles,
a ``*_ROLES`` name, a role compared with a named role, a template testing a role)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import coffre
from coffre.accounts.models import Role
from coffre.tenancy.actors import Actor
from coffre.tenancy.capabilities import (
    CAPABILITIES,
    NotAllowed,
    held_by,
    may,
    require,
    roles,
)

ROOT = Path(coffre.__file__).parent
TABLE = ROOT / "tenancy" / "capabilities.py"
NON_MEMBERS = {"cli", "analyser", "patient", "prescriber", "api_client"}
# The table's names for roles, as other modules import them.
ROLE_CONSTANTS = {"CLI", "ANALYSER", "PATIENT", "PRESCRIBER", "API_CLIENT", "SECRETARY",
                  "TECHNICIAN", "BIOLOGIST", "LAB_MANAGER", "DPO"}
# Whom a lab manager may manage, not what a role may do: a platform administrator's
# membership is not the lab's to change.
ALLOWED_COMPARISONS = {("accounts/managing.py", "PLATFORM_ADMIN")}
# Data, not a rule: generated results are signed by the lab's biologist and technician.
ALLOWED_LISTS = {"labwork/synthetic.py"}


def sources() -> list[tuple[str, ast.Module]]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if path == TABLE or "migrations" in path.parts:
            continue
        found.append((str(path.relative_to(ROOT)), ast.parse(path.read_text())))
    return found


def role_ref(node: ast.AST) -> str | None:
    """The role a node names: a staff role's value, ``Role.X``, or the table's constant."""
    if isinstance(node, ast.Constant) and node.value in set(Role.values):
        return node.value
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "Role" and node.attr in Role.names):
        return node.attr
    if isinstance(node, ast.Name) and node.id in ROLE_CONSTANTS:
        return node.id
    if isinstance(node, ast.Attribute) and node.attr in ROLE_CONSTANTS:
        return node.attr
    return None


def collection_items(node: ast.AST) -> list[ast.AST] | None:
    if isinstance(node, ast.Set | ast.Tuple | ast.List):
        return list(node.elts)
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in {"frozenset", "set", "tuple"} and node.args):
        return collection_items(node.args[0])
    return None


def is_role(node: ast.AST) -> bool:
    return ((isinstance(node, ast.Attribute) and node.attr == "role")
            or (isinstance(node, ast.Name) and node.id == "role"))


def offences() -> list[str]:
    return [found for name, tree in sources() for found in offences_in(name, tree)]


def offences_in(name: str, tree: ast.Module) -> list[str]:
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (isinstance(target, ast.Name)
                        and re.search(r"(_ROLES|REVIEWERS|VIEWERS)$", target.id)
                        and not isinstance(node.value, ast.Dict)):
                    found.append(f"{name}:{node.lineno} defines {target.id}")
    for node in ast.walk(tree):
        items = collection_items(node)
        if (items and sum(role_ref(item) is not None for item in items) >= 2
                and name not in ALLOWED_LISTS):
            found.append(f"{name}:{node.lineno} lists roles")
        if isinstance(node, ast.Compare) and (
                is_role(node.left) or any(is_role(c) for c in node.comparators)):
            named = [role_ref(n) for n in ast.walk(node)]
            for role in filter(None, named):
                if (name, role) not in ALLOWED_COMPARISONS:
                    found.append(f"{name}:{node.lineno} compares a role with {role}")
        if isinstance(node, ast.Name) and node.id == "requires_role":
            found.append(f"{name}:{node.lineno} uses requires_role")
    return found


def test_no_module_but_the_table_lists_roles():
    assert offences() == []


def test_no_template_tests_a_role():
    found = []
    for path in sorted(ROOT.rglob("*.html")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\brole\s*(==|!=|\bin\b|\bnot in\b)", line):
                found.append(f"{path.relative_to(ROOT)}:{number}")
    assert found == []


def test_the_check_finds_what_it_looks_for():
    """The walk above is not blind: these lines would each be refused."""
    sample = ast.parse(
        'ERASE_ROLES = frozenset({"lab_manager", "dpo", "cli"})\n'
        "def view(request):\n"
        "    if request.membership.role == Role.DPO: pass\n"
        "    allowed = (Role.DPO, Role.LAB_MANAGER)\n")
    assert offences_in("sample.py", sample) == [
        "sample.py:1 defines ERASE_ROLES", "sample.py:1 lists roles",
        "sample.py:1 lists roles", "sample.py:3 compares a role with DPO",
        "sample.py:4 lists roles"]


def test_every_role_in_the_table_is_a_role():
    named = set().union(*CAPABILITIES.values())
    assert named <= set(Role.values) | NON_MEMBERS
    assert Role.PLATFORM_ADMIN not in named  # installation-wide: no lab capability


def test_every_capability_is_asked_somewhere():
    asked = set()
    for path in list(ROOT.rglob("*.py")) + list(ROOT.rglob("*.html")):
        if path != TABLE:
            asked |= set(re.findall(r'"([a-z_]+\.[a-z_]+)"', path.read_text()))
    assert set(CAPABILITIES) - asked == set()


def test_may_and_require():
    biologist = Actor("b", 1, "biologist", "web")
    secretary = Actor("s", 1, "secretary", "web")
    assert may(biologist, "result.publish") and not may(secretary, "result.publish")
    assert not may(None, "result.read")
    require(biologist, "result.publish")
    with pytest.raises(NotAllowed, match=r"'secretary' may not result\.publish"):
        require(secretary, "result.publish")
    with pytest.raises(KeyError):
        may(biologist, "no.such")
    assert held_by("dpo") == {name for name in CAPABILITIES if "dpo" in roles(name)}


def test_a_service_raises_its_own_refusal(actor_a):
    from coffre.identity.access import BreakGlassRefused, break_glass_find
    from coffre.lifecycle.erasure import ErasureRefused, erase_patient

    manager = Actor("m", actor_a.lab_id, "lab_manager", "web")
    with pytest.raises(BreakGlassRefused):
        break_glass_find(manager, "a reason long enough here", nir="1")
    with pytest.raises(ErasureRefused):
        erase_patient(actor_a, "00000000-0000-0000-0000-000000000000", "asked by the patient")
