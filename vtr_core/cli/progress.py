"""What a long command shows on stderr while it works: a tqdm bar behind the library's
`progress(done, total, item)` callback, and the studies' running log."""

from __future__ import annotations

import sys


def progress_bar(description: str, unit: str = "video"):
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int, item: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=description, unit=unit, dynamic_ncols=True, file=sys.stderr)
        bar.n = done
        bar.set_postfix_str(item[-40:], refresh=False)
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def log_to_stderr(message: str) -> None:
    """The `log` of the long studies: their running commentary goes to stderr, results to stdout."""
    print(message, file=sys.stderr)
