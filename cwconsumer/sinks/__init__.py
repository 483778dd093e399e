"""Sinks: one HTTP sender, one module per wire format. Nothing here knows AWS."""
