"""Moments: the time ranges a long video is cut into, each searched as one unit (no decoding here).

A policy says how to cut: at shot boundaries (`shots`) or into fixed overlapping windows
(`window`). A video up to WHOLE_VIDEO_S (or the policy's length, if longer) stays one moment,
whatever the policy, so short clips (all of MSR-VTT, up to 30.7 s) are indexed exactly as whole
videos were before moments existed.

`MomentPlanner` turns cut times into moments while a video is being decoded, emitting each range
as soon as nothing later in the video can change it; `window_ranges` and `shot_ranges` are the
same rules applied to a whole video at once (they run the planner), so both always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vtr_core.errors import VtrError

MOMENT_KINDS = ("shots", "window")
# a video up to 32 s is one moment under any policy: every MSR-VTT clip (up to 30.7 s) stays whole,
# so clip collections and every existing figure are unchanged
WHOLE_VIDEO_S = 32.0
DEFAULT_MOMENT_LENGTH_S = 32.0
# a shot shorter than this joins the next one (a last shot joins the previous one): `shots` alone means
# shots:8/32, the best minimum on the val split's long videos (R@1@0.5 over the four heads: 2 s 5-11,
# 4 s 15-18, 8 s 18-22; docs/bench/moments-val-tuning.json)
DEFAULT_MIN_SHOT_S = 8.0
# The default policy: 12 s windows every 6 s, the best of the seven policies compared on the val
# split's long videos (R@1@0.5 22-28 over the four heads, against 18-22 for shots:8/32 and 19-25 for
# window:8/4; test300 never took part). It costs 1.7x the frames of shots:8/32 on that content.
DEFAULT_MOMENTS = "window:12/6"
GRAMMAR = "shots, shots:MIN/MAX or window:LENGTH/STRIDE, in seconds (e.g. shots:8/32, window:12/6)"
_EPS = 1e-9  # float slack on range arithmetic (times are seconds, decoders give microseconds at best)

Range = tuple[float, float]


def _number(value: float) -> str:
    """Shortest text that parses back to the same float (32.0 -> '32', 2.5 -> '2.5')."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


@dataclass(frozen=True)
class MomentPolicy:
    """How a video is cut into moments.

    `length_s` is the window length and the length up to which a video (or a shot) stays one
    moment; `stride_s` is the step between windows (for shots: half the length, as the text form
    `shots:MIN/MAX` cannot say otherwise); `min_shot_s` is the shortest shot kept on its own
    (0 for windows, which have no shots). Leave `stride_s` / `min_shot_s` as None for their defaults.
    """

    kind: str = "shots"
    length_s: float = DEFAULT_MOMENT_LENGTH_S
    stride_s: float | None = None
    min_shot_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in MOMENT_KINDS:
            raise VtrError(f"moments: unknown kind {self.kind!r}: expected {GRAMMAR}", setting="moments")
        length = self._checked("length", self.length_s)
        stride = length / 2 if self.stride_s is None else self._checked("stride", self.stride_s)
        if self.kind == "window":
            min_shot = 0.0 if self.min_shot_s is None else self._checked("minimum shot", self.min_shot_s, zero=True)
            if min_shot != 0.0:
                raise VtrError(f"moments {self._spec_of(length, stride, min_shot)}: windows have no minimum shot",
                               setting="moments")
        else:
            min_shot = DEFAULT_MIN_SHOT_S if self.min_shot_s is None else self.min_shot_s
            min_shot = self._checked("minimum shot", min_shot, zero=True)
            if stride != length / 2:
                raise VtrError(f"moments {self.kind}: long shots are cut into windows that step by half the "
                               f"length ({_number(length / 2)} s), not {_number(stride)} s", setting="moments")
        spec = self._spec_of(length, stride, min_shot)
        if stride > length:
            raise VtrError(f"moments {spec}: the stride ({_number(stride)} s) must not exceed the length "
                           f"({_number(length)} s)", setting="moments")
        if min_shot > length:
            raise VtrError(f"moments {spec}: the minimum shot ({_number(min_shot)} s) must not exceed the "
                           f"longest moment ({_number(length)} s)", setting="moments")
        object.__setattr__(self, "length_s", length)
        object.__setattr__(self, "stride_s", stride)
        object.__setattr__(self, "min_shot_s", min_shot)

    def _checked(self, name: str, value: float, zero: bool = False) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
            limit = "0 or more" if zero else "more than 0"
            raise VtrError(f"moments {self.kind}: the {name} must be a number of seconds {limit}, not {value!r}",
                           setting="moments")
        return number

    def _spec_of(self, length: float, stride: float, min_shot: float) -> str:
        if self.kind == "window":
            return f"window:{_number(length)}/{_number(stride)}"
        return f"shots:{_number(min_shot)}/{_number(length)}"

    @property
    def whole_s(self) -> float:
        """A video up to this long stays one moment."""
        return max(WHOLE_VIDEO_S, self.length_s)

    @property
    def spec(self) -> str:
        """The text form, which `parse` turns back into an equal policy."""
        return self._spec_of(self.length_s, self.stride_s, self.min_shot_s)

    @classmethod
    def parse(cls, text: str) -> MomentPolicy:
        """`shots` (the defaults), `shots:MIN/MAX` or `window:LENGTH/STRIDE`, numbers in seconds."""
        if not isinstance(text, str):
            raise VtrError(f"moments {text!r}: expected {GRAMMAR}", setting="moments")
        kind, colon, numbers = text.strip().lower().partition(":")
        parts = numbers.split("/") if colon else []
        if kind not in MOMENT_KINDS or (colon and len(parts) != 2) or (kind == "window" and not colon):
            raise VtrError(f"moments {text.strip()!r}: expected {GRAMMAR}", setting="moments")
        try:
            values = [float(part) for part in parts]
        except ValueError:
            raise VtrError(f"moments {text.strip()!r}: expected {GRAMMAR}", setting="moments") from None
        if not values:
            return cls(kind)
        if kind == "window":
            return cls(kind, length_s=values[0], stride_s=values[1])
        return cls(kind, length_s=values[1], min_shot_s=values[0])


def sample_times(start_s: float, end_s: float, num_frames: int) -> np.ndarray:
    """Centres of `num_frames` equal segments of [start, end]: `uniform_frame_indices` in seconds."""
    if num_frames <= 0:
        raise ValueError("need at least one sampled frame")
    return start_s + (np.arange(num_frames, dtype=np.float64) + 0.5) * (end_s - start_s) / num_frames


@dataclass
class MomentFrames:
    """One moment of a video: its time range and the frames sampled inside it."""

    start_s: float
    end_s: float
    frames: np.ndarray  # uint8 [T, H, W, 3], RGB
    timestamps_s: np.ndarray  # float64 [T], start time of each sampled frame


class MomentPlanner:
    """Moment ranges of a video being decoded, each emitted as soon as it is final.

    Feed cut times (`add_cut`, time order) and how far the video is known to reach (`advance`),
    then `finish(duration)`. Rules, the same for a whole video at once (`shot_ranges`):

    - a video no longer than `whole_s` is one moment, so nothing is emitted before the video
      is known to be longer;
    - shots: a cut less than `min_shot_s` after the previous kept cut (or the start) is dropped, so
      a short shot joins the one after it; a last cut less than `min_shot_s` before the end is
      dropped too (the last short shot joins the one before). The first cut of a cluster is the
      one kept: a transition, a flash or an encoder's blurred first frame gives the detector
      several cuts a frame or two apart, and the first is where the scene changes. A cut is
      final `min_shot_s` after it (the end of the video cannot drop it any more);
    - a shot (or the whole video, for windows) longer than `length_s` is cut into windows of
      `length_s` every `stride_s`; a tail shorter than the stride is absorbed by the last window,
      which ends at the shot's end (so a moment lasts less than length + stride).

    `keep_from` is the earliest time a moment not yet emitted can start: older frames can go.
    """

    def __init__(self, policy: MomentPolicy):
        self.policy = policy
        self._start = 0.0  # start of the open moment: 0 or a kept cut
        self._windows_done = 0  # windows of the open moment already emitted
        self._pending: float | None = None  # the latest cut, neither kept nor dropped yet
        self._seen = 0.0  # the video lasts at least this long
        self._held: list[Range] = []  # emitted while the video might still be one moment

    @property
    def keep_from(self) -> float:
        if self._seen <= self.policy.whole_s:
            return 0.0
        return self._start + self._windows_done * self.policy.stride_s

    def add_cut(self, time_s: float) -> list[Range]:
        """A shot boundary at `time_s` (the start of the new shot); returns moments made final."""
        ready = self.advance(time_s)  # a pending cut min_shot_s before this one is kept now
        last = self._start if self._pending is None else self._pending
        if self.policy.kind == "shots" and time_s - last >= max(self.policy.min_shot_s, _EPS):
            self._pending = time_s
        return ready

    def advance(self, seen_s: float) -> list[Range]:
        """The video lasts at least `seen_s`; returns the moments this makes final."""
        self._seen = max(self._seen, seen_s)
        ready: list[Range] = []
        if self._pending is not None and self._seen - self._pending >= self.policy.min_shot_s:
            ready += self._close(self._pending)
        known_end = self._seen if self._pending is None else self._pending
        length, stride = self.policy.length_s, self.policy.stride_s
        while self._start + (self._windows_done + 1) * stride + length <= known_end + _EPS:
            window_start = self._start + self._windows_done * stride
            ready.append((window_start, window_start + length))
            self._windows_done += 1
        return self._release(ready)

    def finish(self, duration_s: float) -> list[Range]:
        """The video ends at `duration_s`: the remaining moments (a pending cut too near the end is dropped)."""
        ready = self.advance(duration_s)
        self._pending = None
        if self._seen <= self.policy.whole_s:  # one moment: whatever was held goes
            self._held = []
            return [(0.0, max(duration_s, 0.0))]
        return ready + self._release(self._close(max(duration_s, self._start)))

    def _close(self, end_s: float) -> list[Range]:
        """End the open moment at `end_s`: its windows not emitted yet; a new moment opens there."""
        ranges = window_ranges(end_s - self._start, self.policy)[self._windows_done:]
        closed = [(self._start + start, self._start + end) for start, end in ranges]
        self._start, self._windows_done, self._pending = end_s, 0, None
        return closed

    def _release(self, ready: list[Range]) -> list[Range]:
        self._held += ready
        if self._seen <= self.policy.whole_s:
            return []
        released, self._held = self._held, []
        return released


def window_ranges(duration_s: float, policy: MomentPolicy) -> list[Range]:
    """Windows of `policy.length_s` every `policy.stride_s` covering [0, duration].

    One range when the duration is at most the length. The last window ends at the duration:
    rather than a tail window shorter than the stride, the window before it is stretched.
    """
    if not duration_s >= 0:
        raise ValueError(f"a duration must be 0 or more seconds, not {duration_s}")
    length, stride = policy.length_s, policy.stride_s
    if duration_s <= length + _EPS:
        return [(0.0, float(duration_s))]
    last = int(math.floor((duration_s - length) / stride + _EPS))
    ranges = [(k * stride, k * stride + length) for k in range(last + 1)]
    ranges[-1] = (ranges[-1][0], float(duration_s))
    return ranges


def shot_ranges(cuts_s: list[float] | np.ndarray, duration_s: float, policy: MomentPolicy) -> list[Range]:
    """Moments from shot boundaries (cut times, the start of each new shot) of a whole video.

    Short shots are merged and long ones cut into windows as `MomentPlanner` says; cuts outside
    (0, duration) are ignored. One range for a video no longer than `policy.whole_s`.
    """
    if policy.kind != "shots":
        raise ValueError(f"shot_ranges needs a shots policy, not {policy.spec}")
    planner = MomentPlanner(policy)
    ranges: list[Range] = []
    for cut in sorted(float(c) for c in cuts_s):
        if 0 < cut < duration_s:
            ranges += planner.add_cut(cut)
    return ranges + planner.finish(duration_s)

