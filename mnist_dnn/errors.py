"""The one exception type that means "the user gave us something wrong".

The CLI turns it into a single line on stderr and exit status 2; anything else is
a bug in mnist-dnn and keeps its traceback.
"""


class UserInputError(ValueError):
    """A bad path, file, or config value; the message names it and says what was expected."""


def read_user_text(path, expected: str, *, missing: str = "file not found", encoding: str = "utf-8") -> str:
    """The text of a file the user named; missing, a directory or not text is their mistake, said in one line.

    `expected` says what the file should be ("a TOML file"); `missing` replaces the
    message for a file that is not there.
    """
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise UserInputError(f"{path}: {missing}") from None
    except IsADirectoryError:
        raise UserInputError(f"{path}: is a directory (expected {expected})") from None
    except UnicodeDecodeError:
        raise UserInputError(f"{path}: not a text file (expected {expected})") from None
