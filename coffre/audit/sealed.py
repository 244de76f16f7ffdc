"""What the audit key seals, for `coffre keys rotate --installation audit`
(coffre.keyring.installation): alert comments, canary marks and the chain head's keys
are re-sealed under the new version; the access log's sealed purposes are not (the
chain's MACs cover their bytes), so their version stays until they are purged; the
checkpoint-signing key changes with a signed rotation line (chain.record_key_rotation).
"""

from __future__ import annotations

from coffre.audit import canaries, chain
from coffre.keyring.installation import SealedColumn, on_rotation, register
from coffre.vault import context


def register_sealed() -> None:
    purpose = chain.AUDIT_KEY
    register(SealedColumn(purpose, "audit.AccessEvent", "purpose",
                          lambda row: context("audit", "purpose"), resealable=False))
    register(SealedColumn(purpose, "audit.Alert", "comment",
                          lambda row: context("audit", f"alert-comment-{row.pk}")))
    register(SealedColumn(purpose, "audit.CanaryMark", "sealed", lambda row: canaries._AD))
    register(SealedColumn(purpose, "audit.ChainHead", "key", lambda row: chain._HEAD_AD))
    register(SealedColumn(purpose, "audit.ChainHead", "first_key",
                          lambda row: chain._FIRST_AD,
                          where=(("first_key_holder", "installation"),)))
    on_rotation(purpose, chain.record_key_rotation)
