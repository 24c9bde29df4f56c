"""Signaling benchmark (`python -m bench.signaling [--quick]`)."""
