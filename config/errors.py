"""The one error type configuration raises.

A bad config, genesis or secret file is the operator's mistake, not a bug, so
it surfaces as one line naming the file, the key and what was expected; the
CLI catches ConfigError at its boundary and prints ``str(err)`` without a
traceback.
"""


class ConfigError(Exception):
    """A configuration, genesis or secret file is missing, malformed or impossible."""
