"""Integrations: API keys, idempotency, webhooks and their egress guard."""
