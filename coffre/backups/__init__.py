"""Encrypted, verified backups and restores (no models: a backup lives outside the
database it copies)."""
