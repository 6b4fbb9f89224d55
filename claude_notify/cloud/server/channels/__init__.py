"""Channels: the catalogue of types, the adapter interface and one module per adapter."""
