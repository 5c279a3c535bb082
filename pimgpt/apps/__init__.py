"""Applications: command-line handlers, the demo, the paper evaluation, accuracy and benchmarks.

The top layer: it may import every other layer; nothing imports it but :mod:`pimgpt.cli`.
"""
