"""The one exception type that reaches users as a one-line message.

Library code raises :class:`BamError` for anything a user can fix (bad file, bad key, stale
cache); the CLI prints ``bam: error: <message>`` and exits with status 2. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class BamError(Exception):
    """A problem with the user's input, files or configuration, described in one line."""
