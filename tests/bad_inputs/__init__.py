"""The bad-input contract: a table of wrong values sent to every public entry point (docs/errors.md)."""
