"""Names of the log events that other parts of the box react to.

The engine and the box emit events by name (`Box.emit(event, fields)`); a few of them are
signals another part depends on: the circle lock the updater checks, the usage tally, the
runtime applying settings between circles, the pump. Those names live here, once, so a rename
cannot silently break a listener in another module.
"""

from __future__ import annotations

from typing import Final

SESSION_STARTED: Final = "session_started"  # a circle began: take the circle lock, open a usage record
SESSION_FINISHED: Final = "session_finished"  # a circle ended: drop the lock, close the record, apply pending settings
STEP_STARTED: Final = "step_started"  # fields: step, kind, core
STEP_FINISHED: Final = "step_finished"  # fields: step, delivered (counts towards fidelity)
ROUND_STARTED: Final = "round_started"
TURN_ENDED: Final = "turn_ended"
REPEAT: Final = "repeat"
PAUSED: Final = "paused"  # fields: why ("button" or "help")
HELP: Final = "help"
VOLUME: Final = "volume"  # fields: level
FAULT: Final = "fault"  # fields: message
CIRCLE_LOADED: Final = "circle_loaded"  # the runtime switched to another circle or version
SETTINGS_APPLIED: Final = "settings_applied"  # the runtime applied a reloaded config; fields: what
SPEECH_STARTED: Final = "speech_started"
SPEECH_ENDED: Final = "speech_ended"
MAYBE_SPEECH: Final = "maybe_speech"  # after speech, the listener half hears a voice: silence waits
MAYBE_SPEECH_ENDED: Final = "maybe_speech_ended"
COMMAND_HEARD: Final = "command"
# rehearsal: session_started/session_finished carry `rehearsal: true` (never a circle held)
STEP_PRACTISED: Final = "step_practised"  # a step walked in a rehearsal; fields: step, note_heard

__all__ = [
    "CIRCLE_LOADED", "COMMAND_HEARD", "FAULT", "HELP", "MAYBE_SPEECH", "MAYBE_SPEECH_ENDED", "PAUSED",
    "REPEAT", "ROUND_STARTED",
    "SESSION_FINISHED", "SESSION_STARTED", "SETTINGS_APPLIED", "SPEECH_ENDED", "SPEECH_STARTED",
    "STEP_FINISHED", "STEP_PRACTISED", "STEP_STARTED", "TURN_ENDED", "VOLUME",
]
