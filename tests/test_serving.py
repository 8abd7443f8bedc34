"""Where and for whom the app listens: flags over Gradio's environment variables over defaults, and
no app beyond this machine without credentials unless refused explicitly."""

from __future__ import annotations

import http.cookiejar
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.app_server import free_port
from tests.conftest import REPO
from vtr_core.errors import VtrError
from vtr_core.explorer.serving import ServeSettings, is_loopback, serve_settings


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
                                            ("localhost", True), ("0.0.0.0", False), ("10.0.0.7", False),
                                            ("::", False), ("example.org", False)])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_flags_then_environment_then_defaults():
    assert serve_settings(environ={}) == ServeSettings("127.0.0.1", 7860, None)
    env = {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "8123", "VTR_AUTH": "ann:s3cret:x"}
    assert serve_settings(environ=env) == ServeSettings("0.0.0.0", 8123, ("ann", "s3cret:x"))
    assert serve_settings("127.0.0.1", 9000, "bob:pw", environ=env) == ServeSettings("127.0.0.1", 9000, ("bob", "pw"))
    # --no-auth drops $VTR_AUTH too: an explicit refusal wins over the environment
    assert serve_settings(no_auth=True, environ=env) == ServeSettings("0.0.0.0", 8123, None)


@pytest.mark.parametrize("kwargs, env, message", [
    ({"host": "0.0.0.0"}, {}, "listening on 0.0.0.0 lets anyone"),
    ({}, {"GRADIO_SERVER_NAME": "192.168.1.4"}, "listening on 192.168.1.4"),
    ({"share": True}, {}, "a public share link lets anyone"),
    ({}, {"GRADIO_SERVER_PORT": "http"}, "GRADIO_SERVER_PORT: 'http' is not a port number"),
    ({"port": 70000}, {}, "port: '70000' is not a port number"),
    ({"auth": "nopassword"}, {}, "credentials must read USER:PASSWORD"),
    ({"host": "0.0.0.0"}, {"VTR_AUTH": ":pw"}, "VTR_AUTH: credentials must read USER:PASSWORD"),
    ({"auth": "a:b", "no_auth": True}, {}, "given and refused at once"),
])
def test_refusals_are_one_line(kwargs, env, message):
    with pytest.raises(VtrError, match=message) as error:
        serve_settings(**kwargs, environ=env)
    assert "\n" not in str(error.value) and error.value.setting in {"auth", "port"}


def app_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_SERVER", "VTR_AUTH"))}
    return env | {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"} | extra


@pytest.mark.parametrize("args, env", [(["--host", "0.0.0.0"], {}), ([], {"GRADIO_SERVER_NAME": "0.0.0.0"})])
def test_the_app_refuses_the_network_without_credentials(args, env, tmp_path):
    done = subprocess.run([sys.executable, "app.py", "--device", "cpu", "--workdir", str(tmp_path), *args], cwd=REPO,
                          env=app_env(**env), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "error: listening on 0.0.0.0 lets anyone who can reach this app search and add clips: give credentials, or "
        "refuse them explicitly (--auth USER:PASSWORD or $VTR_AUTH; --no-auth to serve without)")


def status(url: str, opener: urllib.request.OpenerDirector, data: dict | None = None) -> int:
    body = urllib.parse.urlencode(data).encode() if data else None
    try:
        with opener.open(url, data=body, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:  # not listening yet
        return 0


def test_the_app_takes_gradios_port_and_asks_for_vtr_auth(tmp_path):
    port = free_port()
    env = app_env(GRADIO_SERVER_PORT=str(port), VTR_AUTH="ann:s3cret", GRADIO_TEMP_DIR=str(tmp_path / "gradio"))
    with open(tmp_path / "app.log", "w") as log:
        process = subprocess.Popen([sys.executable, "app.py", "--device", "cpu", "--workdir", str(tmp_path / "work")],
                                   cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    plain = urllib.request.build_opener()
    try:
        deadline = time.monotonic() + 180
        while status(f"{url}/", plain) != 200:
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "app.log").read_text()[-3000:]
            time.sleep(0.5)
        assert status(f"{url}/config", plain) == 401  # the page loads a login form; the app's data does not
        assert status(f"{url}/login", plain, {"username": "ann", "password": "wrong"}) == 400
        session = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        assert status(f"{url}/login", session, {"username": "ann", "password": "s3cret"}) == 200
        assert status(f"{url}/config", session) == 200
    finally:
        process.terminate()
        process.wait(15)
