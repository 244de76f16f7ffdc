"""LabActor is the type of an actor of one lab; at run time it is Actor itself."""

import pytest

from coffre.tenancy.actors import Actor, LabActor, NoLab, cli_actor, lab_actor


def test_lab_actor_narrows_an_actor_of_a_lab_to_itself():
    actor = Actor("alice", 7, "biologist", "web")
    assert lab_actor(actor) is actor


def test_an_installation_wide_actor_has_no_lab():
    with pytest.raises(NoLab, match="no laboratory"):
        lab_actor(cli_actor(None))


def test_a_lab_actor_is_an_actor_in_every_way_at_run_time():
    built = LabActor("alice", 7, "biologist", "web", address="192.0.2.1")
    plain = Actor("alice", 7, "biologist", "web", address="192.0.2.1")
    assert type(built) is Actor
    assert built == plain and hash(built) == hash(plain)
    assert repr(built) == repr(plain)
    assert cli_actor(3) == Actor(cli_actor(3).person, 3, "cli", "cli")
