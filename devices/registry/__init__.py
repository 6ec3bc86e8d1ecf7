"""The registry: apps, devices, tags, tokens, audiences (docs/architecture.md)."""
