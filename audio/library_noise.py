"""Keep the sound libraries' own chatter off the demo's terminal, and nothing else.

Opening the sound card, SDL and ALSA write straight to file descriptor 2: ALSA prints a dozen
"ALSA lib ... cannot find card '0'" lines on a laptop without one, and SDL's disk driver (the
demo's "write a WAV" mode) prints "CRITICAL: You are using the SDL disk i/o audio driver!".
Neither is a problem the person can act on, and we say what happened in our own words. So the
block that opens the sound card runs with fd 2 captured, and every captured line that is not one
of these known messages is printed again: a real error is never hidden.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence

KNOWN_NOISE = (
    re.compile(r"^ALSA lib "),  # alsa-lib's default error handler
    re.compile(r"^CRITICAL: You are using the SDL disk i/o audio driver!"),
    re.compile(r"^CRITICAL:  Writing to file \["),  # the disk driver's second line
)


def is_noise(line: str, patterns: Sequence[re.Pattern[str]] = KNOWN_NOISE) -> bool:
    return any(p.search(line) for p in patterns)


@contextlib.contextmanager
def without_library_noise(patterns: Sequence[re.Pattern[str]] = KNOWN_NOISE) -> Iterator[None]:
    """Run the block with fd 2 captured; afterwards print every captured line but the noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not is_noise(line, patterns)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
