"""The root of every error the harness raises on purpose.

A caller (the CLI, the pytest plugin, a user's script) catches ``HarnessError``
to tell "the lab could not do what was asked" from a bug; each part of the
harness derives its own errors from it.
"""


class HarnessError(Exception):
    """Something the lab could not do, with a one-line reason fit for a user."""
