"""Benchmarks: speed and memory figures measured side by side in one run (``speechbraid bench``).

Figures are reported, never asserted: timing depends on the machine.
"""
