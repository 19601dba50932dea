"""One exception type for input a user can fix; the CLI prints its message as one line and exits 2."""


class UserError(ValueError):
    """Bad input (config, data, checkpoint): the message says what is wrong and how to fix it."""
