"""Error types shared by the pure modules. Each carries a short machine-readable reason."""
from __future__ import annotations


class InvalidImage(ValueError):
    """An input image/message that cannot be turned into an RGB frame.

    `reason` is a short stable key used as a counter label (e.g. 'unknown_encoding',
    'size_mismatch', 'truncated', 'empty', 'too_large', 'nan', 'decode_failed'); the message
    says what was wrong in words a person can act on.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
