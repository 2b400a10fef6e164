"""Advice a person can act on, from components and a profile of thresholds on their raw values.

A profile is a small TOML file: a ``name``, a ``description``, and ``[[rule]]`` tables, each naming an ``advice``
code (:data:`ADVICE`), a ``component`` (:data:`fiqa.components.COMPONENTS`) and a ``min`` and/or ``max`` on the
component's raw value (its unit: ``fiqa.components.COMPONENTS[name].unit``). A rule fires when the raw value is
below ``min`` or above ``max``; a NaN raw value fires nothing. Advice codes are listed once per face, in the order
of the profile's rules, less a code another of the face's codes overrules (:data:`OVERRULED`). The shipped default
is ``profiles/enrolment.toml`` (a selfie or enrolment capture); ``load_profile(path)`` reads a user's own,
strictly: an unknown key, code or component, or a threshold that is not a finite number, is an error naming the
file and the rule.

>>> profile = load_profile()
>>> profile.name
'enrolment'
>>> ADVICE["too_dark"]
'The face is too dark: add light in front of the face.'
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from fiqa.components.measure import COMPONENTS, ComponentTable
from fiqa.core.errors import FIQAError
from fiqa.core.params import Interval, is_valid

__all__ = ["ADVICE", "OVERRULED", "AdviceProfile", "AdviceRule", "ProfileError", "advise", "load_profile"]

ADVICE: dict[str, str] = {
    "too_dark": "The face is too dark: add light in front of the face.",
    "too_bright": "The face is over-exposed: reduce the light or move out of direct sun.",
    "uneven_light": "The light is uneven: face the light source so both sides of the face are lit.",
    "low_contrast": "The face lacks contrast: avoid haze and back light, add light in front of the face.",
    "hold_still": "The photo is smeared by movement: hold the head and the camera still.",
    "blurred": "The photo is blurred: let the camera focus, and keep the lens clean.",
    "noisy": "The photo is noisy: add light so the camera needs less gain.",
    "compressed": "The photo is heavily compressed: send the original photo, not a compressed copy.",
    "move_closer": "The face is too small: move closer to the camera.",
    "move_back": "The face is too large: move back from the camera.",
    "face_the_camera": "The head is turned: look straight into the camera.",
    "straighten_head": "The head is tilted: hold the head upright.",
    "remove_eyewear": "The eyes are hidden: remove sunglasses and keep hair and hands away from the eyes.",
    "uncover_mouth": "The mouth is covered: remove the mask or move the hand away.",
    "uncover_face": "Part of the face is covered: remove what is in front of the face.",
    "face_cut_off": "The head is cut off: centre the whole head in the frame.",
    "several_faces": "More than one face is in the photo: only one person should be in the frame.",
}
"""Advice code -> one line of English for the person in front of the camera. Codes are stable; texts may change."""

OVERRULED: dict[str, str] = {
    "move_closer": "move_back",
}
"""Advice code -> the code that overrules it: a face given both gets the second only, whatever the profile's rules.
A head that already fills more than the photo (``move_back``) cannot be brought closer without being cut off more,
so ``move_closer`` (too few pixels between the eyes) is not told with it: there the eyes are close in the photo
because the head is turned (foreshortened: ``face_the_camera``) or because the photo holds too few pixels for a
whole head at that eye distance, which no move of the person mends. Told both, a person at a kiosk would step
back and forth (an LFW-dev photo of a head read as turned by 53 degrees with the former 20 mm nose got both)."""


class ProfileError(FIQAError, ValueError):
    """An advice profile that cannot be used (the message names the file and the rule)."""


@dataclass(frozen=True)
class AdviceRule:
    """Fire ``advice`` when ``component``'s raw value is below ``min`` or above ``max``."""

    advice: str
    component: str
    min: float | None = None
    max: float | None = None

    def fires(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        fired = np.zeros(raw.shape, dtype=bool)
        with np.errstate(invalid="ignore"):
            if self.min is not None:
                fired |= raw < self.min
            if self.max is not None:
                fired |= raw > self.max
        return fired


@dataclass(frozen=True)
class AdviceProfile:
    """Named thresholds that turn components into advice codes."""

    name: str
    description: str
    rules: tuple[AdviceRule, ...]
    source: str

    def to_dict(self) -> dict:
        """JSON-able form (recorded in table sidecars)."""
        return {"name": self.name, "description": self.description, "source": self.source,
                "rules": [{k: v for k, v in vars(rule).items() if v is not None} for rule in self.rules]}


_RULE_KEYS = {"advice", "component", "min", "max"}
_PROFILE_KEYS = {"name", "description", "rule"}


def _threshold(value: object, where: str, key: str) -> float | None:
    if value is None:
        return None
    if not is_valid(value, [Interval(float, None, None)]):
        raise ProfileError(f"{where}: '{key}' must be a finite number, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _rule(entry: object, where: str) -> AdviceRule:
    if not isinstance(entry, dict):
        raise ProfileError(f"{where}: a rule must be a table with advice, component and min/max")
    unknown = set(entry) - _RULE_KEYS
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {sorted(unknown)}; a rule has {sorted(_RULE_KEYS)}")
    advice, component = entry.get("advice"), entry.get("component")
    if advice not in ADVICE:
        raise ProfileError(f"{where}: unknown advice code {advice!r}; known codes: {', '.join(ADVICE)}")
    if component not in COMPONENTS:
        raise ProfileError(f"{where}: unknown component {component!r}; known: {', '.join(COMPONENTS)}")
    low, high = _threshold(entry.get("min"), where, "min"), _threshold(entry.get("max"), where, "max")
    if low is None and high is None:
        raise ProfileError(f"{where}: give 'min' or 'max' (a threshold on the raw value of {component})")
    if low is not None and high is not None and low > high:
        raise ProfileError(f"{where}: 'min' {low} is above 'max' {high}")
    return AdviceRule(str(advice), str(component), low, high)


def load_profile(path: str | os.PathLike | None = None) -> AdviceProfile:
    """Read an advice profile (None: the shipped ``enrolment`` profile).

    Raises
    ------
    ProfileError
        The file cannot be read, is not TOML, or holds an unknown key, code or component or a bad threshold.
    """
    if path is None:
        text = resources.files("fiqa.components").joinpath("profiles/enrolment.toml").read_text(encoding="utf-8")
        source = "fiqa:profiles/enrolment.toml"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError(f"{source}: cannot read the advice profile ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: not a valid TOML advice profile ({exc})") from None
    unknown = set(data) - _PROFILE_KEYS
    if unknown:
        raise ProfileError(f"{source}: unknown key(s) {sorted(unknown)}; a profile has {sorted(_PROFILE_KEYS)}")
    entries = data.get("rule", [])
    if not isinstance(entries, list) or not entries:
        raise ProfileError(f"{source}: a profile needs at least one [[rule]]")
    rules = tuple(_rule(entry, f"{source}, rule {i + 1}") for i, entry in enumerate(entries))
    return AdviceProfile(str(data.get("name", Path(source).stem)), str(data.get("description", "")), rules, source)


def advise(components: ComponentTable, profile: AdviceProfile) -> list[list[str]]:
    """Advice codes for each face (each code once, in the order of the profile's rules, less those another of the
    face's codes overrules: :data:`OVERRULED`)."""
    codes: list[list[str]] = [[] for _ in range(len(components))]
    for rule in profile.rules:
        for i in np.flatnonzero(rule.fires(components.column(rule.component, raw=True))):
            if rule.advice not in codes[i]:
                codes[i].append(rule.advice)
    return [[code for code in face if OVERRULED.get(code) not in face] for face in codes]
