"""Errors that are the user's to fix.

A :class:`UserError` ends the command with one clear message and exit code 2, without a
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (config, paths, data) with a message that says how to fix it."""

    exit_code = 2
    #: Met by one process of a multi-process run only (a bad file in its share of the
    #: data, a NaN loss there): that process reports it, not just rank 0.
    rank_specific = False


class ConfigError(UserError):
    """A bad config file, key or value."""


class DataError(UserError):
    """Missing, empty, unreadable or inconsistent data."""


class NonFiniteLossError(UserError):
    """A loss became NaN or infinite during training."""

    exit_code = 3
