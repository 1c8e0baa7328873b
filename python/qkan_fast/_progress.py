"""Progress for long commands: a tqdm bar on a terminal, plain lines in a log.

tqdm is optional (the `progress` extra). With tqdm installed, `disable=None` lets tqdm decide: a
bar when stderr is a terminal, nothing when it is redirected; in that case, and without tqdm, a
few plain lines go to stderr instead, so a log never fills with carriage returns.
"""

from __future__ import annotations

import sys


class Progress:
    """`total` steps called `desc`; `step(note)` after each; `close()` at the end.

    Plain-line mode prints at most about `lines` lines per bar (and always the last step)."""

    def __init__(self, total: int, desc: str, enabled: bool = True, lines: int = 5):
        self.total, self.desc, self.enabled, self.n = total, desc, enabled, 0
        self.every = max(1, total // max(1, lines))
        self.bar = None
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        bar = tqdm(total=total, desc=desc, disable=None, file=sys.stderr, dynamic_ncols=True, leave=False)
        if bar.disable:  # stderr is not a terminal: plain lines instead
            bar.close()
        else:
            self.bar = bar

    def step(self, note: str = "") -> None:
        self.n += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(note, refresh=False)
            self.bar.update(1)
        elif self.n % self.every == 0 or self.n == self.total:
            print(f"{self.desc}: {self.n}/{self.total}" + (f" {note}" if note else ""), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
