"""The one exception type that means "the user gave us something wrong".

The CLI turns it into a single line on stderr and exit status 2; anything else is
a bug in mnist-dnn and keeps its traceback.
"""


class UserInputError(ValueError):
    """A bad path, file, or config value; the message names it and says what was expected."""
