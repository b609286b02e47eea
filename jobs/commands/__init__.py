"""The `facelake` CLI: one registry of lazily imported commands (nothing imports this package)."""
