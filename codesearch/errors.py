"""The one exception type for expected failures: its message is written for a human."""


class CodesearchError(Exception):
    """A failure the user can act on (missing model, bad query, corrupt index, ...).

    The CLI prints its message on one stderr line and exits 2.
    """
