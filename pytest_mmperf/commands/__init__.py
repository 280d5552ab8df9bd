"""Subcommands of the ``mmperf`` console script, one module each.

Each module exposes ``register(subparsers)``: it adds its parser and sets ``func`` to a
``run(args) -> int`` that returns the exit status (0 ok, 1 a regression or failure found,
2 bad input with a one-line message on stderr).
"""
