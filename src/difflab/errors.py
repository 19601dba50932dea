"""One exception type for input a user can fix; the CLI prints its message as one line and exits 2."""


class UserError(ValueError):
    """Bad input (config, data, checkpoint): the message says what is wrong and how to fix it."""


def need(module: str, package: str):
    """Import `module`, or say in one line which package to install."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise UserError(f"this needs the package {package}: pip install {package} (make setup installs it)") from None
