"""The one error the loaders raise: a ValueError whose message names the file and what was expected."""


class DataError(ValueError):
    """A dataset file is missing, unreadable or not in the format its loader reads."""
