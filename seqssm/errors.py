"""Errors that reach the user as one clear line (the CLIs print them without a traceback)."""


class SeqssmError(Exception):
    """Base class: the message names the file, key or value and what was expected."""


class ConfigError(SeqssmError):
    """A configuration value is missing, of the wrong type, or impossible."""


class DataError(SeqssmError):
    """An input file is missing or malformed."""


class CheckpointError(SeqssmError):
    """A checkpoint does not exist or belongs to another model."""
