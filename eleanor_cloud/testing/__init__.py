"""Test helpers shipped with the package: the backend conformance suite (needs pytest)."""
