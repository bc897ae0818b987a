"""Thin transport adapters: bytes in, typed requests to the service core, bytes out."""
