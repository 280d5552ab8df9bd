"""The ``mmperf`` console script: a registry of subcommands, each in ``pytest_mmperf.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pytest_mmperf import __version__

COMMANDS: tuple[str, ...] = (
    "compare",
    "baseline",
    "history",
    "report",
    "export",
    "merge",
    "ab",
    "bisect",
    "speedups",
    "phases",
    "doctor",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmperf",
        description="pytest-mmperf: benchmark results, baselines, history and reports.",
    )
    parser.add_argument("--version", action="version", version=f"pytest-mmperf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"pytest_mmperf.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"pytest_mmperf.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args))
    except KeyboardInterrupt:
        print("mmperf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
