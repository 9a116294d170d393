"""Channels: X, the forum, mail (and the outbox that stands in for all three by default)."""
