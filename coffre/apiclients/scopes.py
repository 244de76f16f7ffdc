"""The scope grammar of API clients: ``system/<Type|*>.<read|write|*>`` (SMART on FHIR v1).

Clients authenticate with client credentials, a machine acting for the lab: there is no
patient or user in the token, so ``patient/...`` and ``user/...`` scopes (which SMART
ties to a launch context) are refused rather than silently widened to the whole lab.
"""

from __future__ import annotations

from dataclasses import dataclass

# The FHIR resource types the API serves (coffre.fhir); a scope naming another is refused.
RESOURCE_TYPES = frozenset({"Patient", "Practitioner", "Organization", "ServiceRequest",
                            "Specimen", "Observation", "DiagnosticReport"})
ACCESSES = ("read", "write")
ALL_SCOPES = "system/*.read system/*.write"


class ScopeError(ValueError):
    """A scope string is malformed or asks for something the API does not grant."""


@dataclass(frozen=True, order=True)
class Scope:
    resource: str  # a FHIR type or "*"
    access: str  # "read", "write" or "*"

    def __str__(self) -> str:
        return f"system/{self.resource}.{self.access}"

    def covers(self, resource: str, access: str) -> bool:
        return self.resource in ("*", resource) and self.access in ("*", access)

    def includes(self, other: Scope) -> bool:
        """Whether every request ``other`` allows is allowed by this scope too."""
        return (self.resource in ("*", other.resource)
                and self.access in ("*", other.access))


def parse_one(text: str) -> Scope:
    context, _, rest = text.partition("/")
    if context in ("patient", "user"):
        raise ScopeError(f"scope {text!r}: {context}/ scopes need a launch context that "
                         "client credentials do not carry; use system/<Type>.<read|write>")
    if context != "system" or not rest:
        raise ScopeError(f"scope {text!r} is not of the form system/<Type|*>.<read|write|*>")
    resource, dot, access = rest.rpartition(".")
    if not dot or access not in (*ACCESSES, "*"):
        raise ScopeError(f"scope {text!r}: the access must be read, write or *")
    if resource != "*" and resource not in RESOURCE_TYPES:
        raise ScopeError(f"scope {text!r}: unknown resource type {resource!r} (known: "
                         f"{', '.join(sorted(RESOURCE_TYPES))}, or *)")
    return Scope(resource, access)


def parse(text: str) -> tuple[Scope, ...]:
    """Space-separated scopes (RFC 6749 §3.3), deduplicated and sorted; none is an error."""
    scopes = tuple(sorted({parse_one(part) for part in text.split()}))
    if not scopes:
        raise ScopeError("no scope given: list at least one, e.g. system/Observation.read")
    return scopes


def render(scopes: tuple[Scope, ...]) -> str:
    return " ".join(str(s) for s in scopes)


def allows(scopes: tuple[Scope, ...], resource: str, access: str) -> bool:
    """Whether the scopes allow ``access`` on ``resource``; resource "*" asks only for a
    valid token (the CapabilityStatement)."""
    return resource == "*" or any(s.covers(resource, access) for s in scopes)


def narrow(granted: tuple[Scope, ...], requested: tuple[Scope, ...]) -> tuple[Scope, ...]:
    """The requested scopes when each is within the granted ones (RFC 6749 §3.3)."""
    for scope in requested:
        if not any(g.includes(scope) for g in granted):
            raise ScopeError(f"scope {scope} was not granted to this client")
    return requested
