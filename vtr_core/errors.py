"""User-facing errors.

Every failure a user can cause (a bad file, a wrong index, an empty query) is raised as a
`VtrError` whose message is one line naming the thing at fault, so the CLI and the app can
show it as is instead of a stack trace.
"""


class VtrError(Exception):
    """An error caused by input, with a one-line message meant for the user.

    `setting` names the library setting at fault ("backbone", "num_frames", "checkpoint", ...),
    so a front end can point at its own control for it (the CLI names its flag) while the message
    itself speaks of the library only.
    """

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


class VideoError(VtrError):
    """A file that cannot be decoded as a video."""


class BackboneError(VtrError):
    """A backbone that cannot be built or loaded."""


class IndexFormatError(VtrError):
    """A directory that is not a readable video index (missing, corrupt, newer format)."""


class IndexMismatchError(VtrError):
    """An index used with features it was not built with (backbone, frames, dimensions)."""


class QueryError(VtrError):
    """A query that cannot be searched (empty, not text)."""


class CheckpointError(VtrError):
    """A checkpoint that does not fit: another method, backbone or dimension, or not a checkpoint."""
