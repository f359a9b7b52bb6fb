"""The ids the sandboxes make up: recognisably sandbox ones, and never the same twice.

A counter alone repeated across processes: `paybot chat` beside `paybot demo`, or two workers,
each started at 1 and handed out the same message and payment ids (a unique column in the ledger
then refused the second). A random token per sandbox instance keeps them apart; the counter after
it keeps one run's ids in order for a person reading them.
"""

from __future__ import annotations

import secrets


class SandboxIds:
    def __init__(self) -> None:
        self.run = secrets.token_hex(6)  # 48 random bits per sandbox, so per process
        self.count = 0

    def next(self, prefix: str, width: int = 4) -> str:
        """E.g. ``pi_sandbox_3fa94c1b2e7d_000001`` for prefix ``pi_sandbox`` and width 6."""
        self.count += 1
        return f"{prefix}_{self.run}_{self.count:0{width}d}"
