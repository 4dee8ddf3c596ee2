"""The entry points of the `ep-*` commands (and of the thin `ep_*.py` scripts at the repository root)."""
