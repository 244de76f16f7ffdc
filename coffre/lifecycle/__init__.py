"""End of life of patient data: erasure by key destruction, the erasure ledger, retention
rules, legal holds and the purge."""
