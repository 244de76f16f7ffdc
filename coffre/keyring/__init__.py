"""The keyring: the bridge between the vault and the database (no Django import here)."""

# The installation keys whose material `coffre keys rotate --installation` renews.
ROTATABLE_INSTALLATION_KEYS = ("accounts", "audit", "exports", "export-text", "legal-hold")
