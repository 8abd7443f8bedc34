"""Command line: `python -m vtr_core COMMAND ...`, or `vtr COMMAND ...` once installed.

Thin: parses arguments, shows progress, prints results; the work is done by the library. A
`VtrError` (bad input) is printed as one line `error: ...` with exit status 2.

Modules: `parser` (the arguments of every command), `collection` (index, search, info, remove),
`training` (train, eval, report, accuracy), `studies` (bench), `moments` (build-moments, eval-moments),
`progress` (the progress bar).
"""

from __future__ import annotations

import logging
import sys

from vtr_core.cli.parser import build_parser
from vtr_core.errors import VtrError

__all__ = ["SETTING_FLAGS", "build_parser", "main"]

# the library names its settings in errors (VtrError.setting); the command line names its flags
SETTING_FLAGS = {"backbone": "--backbone", "num_frames": "--frames", "faiss_factory": "--faiss",
                 "store_patches": "--no-patches", "checkpoint": "--checkpoint / --zero-shot", "output": "--output",
                 "moments": "--moments", "moment_spec": "--moments", "arch": "--arch", "format": "--format",
                 "image_stages": "--image-stages"}


def _set_up_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _error_line(exc: VtrError) -> str:
    """`error: MESSAGE`, plus the flag that sets what the library's error names."""
    flag = SETTING_FLAGS.get(exc.setting or "")
    return f"error: {exc}" + (f" ({flag})" if flag else "")


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status: 0 done, 1 some files failed, 2 bad input, 130 interrupted."""
    _set_up_logging()
    args = build_parser().parse_args(argv)
    if (getattr(args, "frames", None) or 12) < 1:
        print("error: --frames must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except VtrError as exc:
        print(_error_line(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: work committed so far is kept", file=sys.stderr)
        return 130
