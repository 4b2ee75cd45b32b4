"""The one exception a user can cause.

Anything a user can get wrong (a rule name, a rank, a path, a target) raises
`UsageError` with one line saying what was wrong and what would be right. The
CLI prints that line and exits with status 2; everything else is a bug and is
allowed to show a traceback.
"""


class UsageError(ValueError):
    """Bad input from the user: the message is one line, fit to print as is."""
