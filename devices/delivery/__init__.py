"""The delivery core: messages, deliveries and their one write path, the
node, sessions, the device consumer and the wire protocol
(docs/architecture.md)."""
