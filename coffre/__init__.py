"""Coffre: a laboratory information system whose stolen copy reveals no patient."""
