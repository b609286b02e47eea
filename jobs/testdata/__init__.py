"""Test-data tools (sample drops with answer keys); not part of the data path."""
