"""``python -m densenet COMMAND ...``: the library's command line, one module per command.

    python -m densenet convert IN OUT [--classes chexnet|chexpert|xrv|FILE] [--multilabel] ...
    python -m densenet audit --model PATH|demo --data DIR [--labels CSV] ...
    python -m densenet audit rescore OUT --threshold 0.4

Each command lives in its own module with ``configure(parser)`` (adds its arguments) and
``run(args) -> int`` (the exit status); a module is imported only when its command runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("densenet.convert", "turn any checkpoint load_checkpoint reads into a self-describing .safetensors"),
    "audit": ("densenet.audit.cli", "explain and score a whole dataset: pointing game, IoU, report.html"),
    "audit-rescore": ("densenet.audit.rescore", "re-score a finished audit from its stored maps (also: audit rescore OUT)"),
    "classroom-timing": ("densenet.classroom.timing", "time the classroom experiments at their defaults"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["audit", "rescore"]:  # a sub-command of audit, spelled as people expect
        argv = ["audit-rescore"] + argv[2:]
    parser = argparse.ArgumentParser(prog="python -m densenet", description="DenseNet Explorer's command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # only the command being run pays for its imports
            modules[name] = importlib.import_module(module_name)
            modules[name].configure(command)
    args = parser.parse_args(argv)
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
