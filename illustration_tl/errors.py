"""The one exception type the command line turns into a one-line error."""


class UserError(Exception):
    """Bad input from the user: a missing folder, a bad flag value, a broken file.

    The message names the file or flag and says how to fix it; the CLI prints
    it on one line and exits with status 2 instead of showing a traceback.
    """
