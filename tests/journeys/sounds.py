"""The sounds a journey listens for, as the box renders them (its data folder's rendered sets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audio.tones import TONES, tone_pcm
from journeys.harness import SAMPLE_RATE
from journeys.heard import rendered_prompt, rendered_set

DEFAULT_CIRCLE = "three-step-circle"


class Sounds:
    """Prompts of the circles in one cache, by `<circle> <prompt>`, plus the bells."""

    def __init__(self, cache: Path, *circles: str) -> None:
        self.cache = cache
        self.all: dict[str, np.ndarray] = {}
        for circle in circles:
            self.all.update(rendered_set(cache, circle))
        for tone in TONES:
            self.all[f"bell:{tone}"] = np.frombuffer(tone_pcm(tone, SAMPLE_RATE), "<i2").astype(np.float64)

    def add(self, cache: Path, circle: str) -> None:
        self.all.update(rendered_set(cache, circle))

    def prompt(self, circle: str, prompt_id: str) -> np.ndarray:
        return self.all.get(f"{circle} {prompt_id}") if f"{circle} {prompt_id}" in self.all \
            else rendered_prompt(self.cache, circle, prompt_id)
