"""Hysteresis of one real's health (pure): how a check result changes its up/down verdict.

``step(state, ok, failurecount, rise)``: a real that is up goes down after ``failurecount``
consecutive failures (``SoftFailure`` before that, ``FailuresReset`` when a success follows); a real
that is down comes back after ``rise`` consecutive successes (1 = ldirectord's immediate recovery);
the first verdict is taken as is. ``force_down`` is maintenance: down at once. No I/O, no clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class HealthState:
    """The hysteresis state of one real."""

    up: bool | None = None  # None: no verdict yet
    failures: int = 0  # consecutive failures while up
    successes: int = 0  # consecutive successes while down


class Change(enum.Enum):
    """What a check result did to a real."""

    NONE = "none"
    UP = "up"
    DOWN = "down"
    SOFT_FAILURE = "soft_failure"
    FAILURES_RESET = "failures_reset"


def step(state: HealthState, ok: bool, failurecount: int = 1, rise: int = 1) -> tuple[HealthState, Change]:
    """Apply one check result to a real's state (pure; the heart of the monitor)."""
    if state.up is None:  # first verdict: no hysteresis
        return HealthState(up=ok), Change.UP if ok else Change.DOWN
    if state.up:
        if ok:
            if state.failures:
                return HealthState(up=True), Change.FAILURES_RESET
            return state, Change.NONE
        failures = state.failures + 1
        if failures >= max(1, failurecount):
            return HealthState(up=False), Change.DOWN
        return HealthState(up=True, failures=failures), Change.SOFT_FAILURE
    if not ok:
        return (HealthState(up=False), Change.NONE)
    successes = state.successes + 1
    if successes >= max(1, rise):
        return HealthState(up=True), Change.UP
    return HealthState(up=False, successes=successes), Change.NONE


def force_down(state: HealthState) -> tuple[HealthState, Change]:
    """Maintenance: down at once, bypassing failurecount."""
    return HealthState(up=False), Change.NONE if state.up is False else Change.DOWN
