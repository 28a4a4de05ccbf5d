"""The `quic-edge` command line. Each subcommand lives in quic_edge/commands/<name>.py and defines
`register(subparsers)`; this file only finds them and reports errors as one clear line."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands

# Errors a user can fix: printed as one line with exit code 2, never as a traceback.
# quic_edge's own errors (BundleError, DeltaError, DataError, ExportError, CheckpointError, ...) are ValueErrors;
# OSError covers missing files, permissions and a full disk.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quic-edge",
        description="Fine-tune foundation models on the device with QuIC adapters (a few thousand Givens "
        "rotation angles on a frozen int8 base), exported to ONNX Runtime and ExecuTorch training.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        print(f"quic-edge {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"quic-edge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
