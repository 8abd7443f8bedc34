"""What every Gradio tab of the explorer shares: errors as one-line messages, moment pickers, and
the player that starts a video at a moment. The ui_* modules are the only ones here that import
Gradio; app.py puts their tabs together."""

from __future__ import annotations

import functools
import itertools
import logging
import urllib.parse

import gradio as gr

from vtr_core.errors import VtrError
from vtr_core.explorer.panels import moment_choices
from vtr_core.explorer.records import MomentSpan

log = logging.getLogger("vtr_core.app")
# the library names its settings in errors (VtrError.setting); the page says which app flag sets them
SETTING_HINTS = {"video_root": "start the app with --video-root DIR", "backbone": "--backbone",
                 "auth": "--auth USER:PASSWORD or $VTR_AUTH; --no-auth to serve without", "port": "--port"}
BEST_MOMENT = -1  # a moment picker's first choice: let the query (or the captions) choose
PLAYER_STYLE = "width:100%;max-height:300px;background:#000;border-radius:6px"
# The player starts at the moment by the URL's media fragment (#t=START, which browsers honour when
# the file loads); should a browser ignore it, this seeks once the video's metadata has loaded.
# `loadedmetadata` does not bubble, so it is caught on the way down (capture) for any new <video>.
SEEK_ON_LOAD = """
element.addEventListener('loadedmetadata', (event) => {
  const video = event.target;
  const start = parseFloat(video.dataset.start || 'NaN');
  if (Number.isFinite(start) && Math.abs(video.currentTime - start) > 0.5) { video.currentTime = start; }
}, true);
"""
_plays = itertools.count(1)


def ui_errors(fn):
    """Input errors become one-line messages in the UI; anything else too, logged in full here."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except VtrError as exc:
            hint = SETTING_HINTS.get(exc.setting or "")
            raise gr.Error(f"{exc} ({hint})" if hint else str(exc), print_exception=False) from None
        except Exception as exc:  # a bug: keep the trace in the server log, not in the user's face
            log.exception("unexpected error in %s", fn.__name__)
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            raise gr.Error(f"internal error ({type(exc).__name__}): {first}", print_exception=False) from None

    return wrapper


def moment_value(value: object) -> int | None:
    """A moment picker's value as a moment id (None: the best moment); typed text must be a number."""
    if value is None or value == "":
        return None
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        raise VtrError(f"moment {value!r}: pick one of the clip's moments") from None
    return None if number < 0 else number


def moment_dropdown(spans: list[MomentSpan], first_label: str, elem_id: str, **kwargs) -> gr.Dropdown:
    """A moment picker: `first_label` (the best moment) then each of a clip's moments. Its choices
    change with the clip, so the API may send any of the collection's moment ids (custom values)."""
    return gr.Dropdown(moment_choices(spans, (first_label, BEST_MOMENT)), value=BEST_MOMENT, label="Moment",
                       visible=len(spans) > 1, allow_custom_value=True, elem_id=elem_id, **kwargs)


def moment_picker(spans: list[MomentSpan], first_label: str, value: int | None = BEST_MOMENT) -> dict:
    """A moment dropdown's update for a clip: `first_label` (the best moment) then each moment; the
    value is kept when it is one of the clip's moments; shown only for a clip of several."""
    choices = moment_choices(spans, (first_label, BEST_MOMENT))
    keep = value if value is not None and any(v == value for _, v in choices) else BEST_MOMENT
    return gr.update(choices=choices, value=keep, visible=len(spans) > 1)


def player_html(path: str, start_s: float) -> str:
    """A <video> of a collection file (served from Gradio's file route: the collection's folders are
    allowed paths) that starts at `start_s`; each call differs, so a second click seeks again."""
    start = f"{max(0.0, float(start_s)):.3f}"
    url = "gradio_api/file=" + urllib.parse.quote(str(path))
    return (f'<video src="{url}#t={start}" data-start="{start}" data-play="{next(_plays)}" controls autoplay '
            f'playsinline preload="auto" style="{PLAYER_STYLE}"></video>')
