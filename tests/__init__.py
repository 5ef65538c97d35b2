"""imuflow test suite (a package, so test-only node kinds are importable as tests.<module>.<Class>)."""
