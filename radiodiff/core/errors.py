"""The project's exceptions: each names the file or parameter key at fault."""


class RadiodiffError(Exception):
    """A user-facing error; the CLI prints it on one line and exits non-zero."""


class ParamsError(RadiodiffError):
    """An invalid or missing value in params.yaml (the message names the key)."""


class DataError(RadiodiffError):
    """A missing, corrupt or inconsistent data file (the message names the file)."""
