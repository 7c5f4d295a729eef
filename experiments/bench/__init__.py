"""Benchmarks: each prints numbers and writes JSON (``synctwin bench ...``)."""
