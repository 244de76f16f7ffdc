"""Controlled exports: requested with a purpose, approved by a second person, minimised,
encrypted to the recipient, watermarked, and deleted from staging."""
