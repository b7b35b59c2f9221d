"""User-facing errors: a message that says what to fix, never a traceback."""


class InputError(ValueError):
    """Bad user input (missing file, wrong column, undecodable image, nonsensical config).

    The message is shown as is in the CLI and the app, so it must say what to fix.
    """


class CurvatureError(RuntimeError):
    """The curvature matrix cannot be inverted as asked (e.g. singular without damping)."""


class DataWarning(UserWarning):
    """Something in the user's data was left out or changed on the way in (e.g. undecodable images
    skipped); the run goes on, and the app shows the message beside the result."""
