"""`python app.py` in a subprocess on a free local port, for the tests that call it over HTTP."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_app(work: Path, *args: str, start_timeout_s: float = 180) -> Iterator[tuple[str, subprocess.Popen]]:
    """The app's URL and process; uploads, copies and Gradio's cache go under `work`."""
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", GRADIO_TEMP_DIR=str(work / "gradio"))
    with open(work / "app.log", "w") as log:
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--device", "cpu",
                                    "--workdir", str(work / "explorer"), *args],
                                   cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("the app did not start:\n" + (work / "app.log").read_text()[-3000:])
            time.sleep(0.5)
        try:
            yield url, process
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
