"""The socket server shell: Daphne with a drain, and every patch of a
library's internals (devices/patches)."""
