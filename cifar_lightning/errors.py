"""Errors that reach the user as one line: what went wrong and how to fix it."""


class UserError(Exception):
    """A problem with the user's input (data, config, checkpoint), not a bug.

    The CLI prints these as a single ``error: ...`` line and exits with status 2;
    set ``CIFAR_LIGHTNING_VERBOSE=1`` to see the traceback as well.
    """


class DataError(UserError):
    """The data set cannot be found, unpacked or decoded."""


class CheckpointError(UserError):
    """A checkpoint cannot be used with the configured model."""
