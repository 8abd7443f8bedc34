"""Where and for whom the app listens: address, port and credentials from flags, Gradio's own
environment variables and $VTR_AUTH, checked in one place before anything heavy loads.

Precedence, as every Gradio app: a command-line flag, then the environment (`GRADIO_SERVER_NAME`,
`GRADIO_SERVER_PORT`, `VTR_AUTH`), then the default (127.0.0.1:7860, no credentials). An app that
listens beyond this machine must ask for credentials (Gradio's own login); starting it without them
needs `no_auth`, said explicitly.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Mapping

from vtr_core.errors import VtrError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


@dataclass(frozen=True)
class ServeSettings:
    host: str
    port: int
    auth: tuple[str, str] | None  # (user, password) for Gradio's login, or None: open

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _port(text: str, source: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise VtrError(f"{source}: {text!r} is not a port number (1-65535)", setting="port")
    return port


def _credentials(text: str, source: str) -> tuple[str, str]:
    user, colon, password = text.partition(":")
    if not colon or not user or not password:
        raise VtrError(f"{source}: credentials must read USER:PASSWORD, both non-empty", setting="auth")
    return user, password


def serve_settings(host: str | None = None, port: int | None = None, auth: str | None = None,
                   no_auth: bool = False, share: bool = False, environ: Mapping[str, str] | None = None
                   ) -> ServeSettings:
    """The app's address, port and credentials (flags first, then the environment, then defaults).
    A public share link counts as listening beyond this machine."""
    env = os.environ if environ is None else environ
    host = host or env.get("GRADIO_SERVER_NAME") or DEFAULT_HOST
    if port is None:
        port = _port(env["GRADIO_SERVER_PORT"], "GRADIO_SERVER_PORT") if env.get("GRADIO_SERVER_PORT") else DEFAULT_PORT
    else:
        port = _port(str(port), "port")
    if auth and no_auth:
        raise VtrError("credentials were given and refused at once: choose one", setting="auth")
    text = auth or ("" if no_auth else env.get("VTR_AUTH", ""))
    credentials = _credentials(text, "credentials" if auth else "VTR_AUTH") if text else None
    if credentials is None and not no_auth and (share or not is_loopback(host)):
        where = "a public share link" if share else f"listening on {host}"
        raise VtrError(f"{where} lets anyone who can reach this app search and add clips: give credentials, "
                       "or refuse them explicitly", setting="auth")
    return ServeSettings(host, port, credentials)
