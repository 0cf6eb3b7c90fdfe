"""Schemas of every table, column-name constants and the table registry."""
