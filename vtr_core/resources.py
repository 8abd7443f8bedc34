"""Where the shipped files are: trained heads, the demo collection's index, the results table.

Library code never assumes it runs from a checkout; it asks here. The answer, first that exists:
1. `$VTR_DATA_DIR`: a folder laid out like the repository (precomputed/heads, precomputed/demo_index,
   docs/results.json), for a deployment that keeps them elsewhere;
2. the source checkout this package sits in (running from the repository, or `pip install -e .`);
3. `<prefix>/share/vtr_core`, where `pip install .` puts the shipped heads and the results table.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR_VARIABLE = "VTR_DATA_DIR"


def data_dir() -> Path:
    """The folder the shipped files are read from (see the module docstring for the order)."""
    override = os.environ.get(DATA_DIR_VARIABLE)
    if override:
        return Path(override).expanduser()
    checkout = PACKAGE_DIR.parent
    if (checkout / "precomputed").is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "vtr_core"


def bundled_dir() -> Path:
    """Everything under here ships with the program and is never written to."""
    return data_dir() / "precomputed"


def shipped_heads_dir() -> Path:
    return bundled_dir() / "heads"


def shipped_text_towers_dir() -> Path:
    """Text towers tuned for a lite image tower (`lite0:NAME` loads text_towers/lite0-NAME.pt)."""
    return bundled_dir() / "text_towers"


def demo_index_dir() -> Path:
    return bundled_dir() / "demo_index"


def results_json() -> Path:
    return data_dir() / "docs" / "results.json"
