"""The deadlines' one alarm thread: earliest first, cancelled alarms never fire, nothing piles up."""
from __future__ import annotations

import threading
import time

from ovos_stt_plugin_google_apikey import timeouts


def wait_until(check, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)
    return check()


def alarm_threads():
    return [t for t in threading.enumerate() if t.name == "google-stt-deadlines"]


def test_an_earlier_alarm_armed_later_fires_first():
    timeouts.Watchdog(60).cancel()            # the alarm thread runs
    late = timeouts.Watchdog(60)
    time.sleep(0.2)                           # ... and waits for `late` (or an older one)
    early = timeouts.Watchdog(0.05)           # so it must be woken for this one
    try:
        assert wait_until(lambda: early.fired)
        assert not late.fired
    finally:
        late.cancel()
    assert len(alarm_threads()) == 1


def test_a_cancelled_alarm_never_fires():
    dogs = [timeouts.Watchdog(0.05) for _ in range(20)]
    for dog in dogs[::2]:
        dog.cancel()
    assert wait_until(lambda: all(d.fired for d in dogs[1::2]))
    assert not any(d.fired for d in dogs[::2])


def test_cancelled_alarms_do_not_pile_up():
    # A busy server arms two per Google request and cancels nearly all of them well before
    # their (10 s) time: the queue is purged rather than holding every one of them.
    for _ in range(5000):
        timeouts.Watchdog(600).cancel()
    queued = len(timeouts._ALARMS._heap)
    assert queued <= 2 * timeouts._Alarms.PURGE_AT + 2, queued
    assert len(alarm_threads()) == 1
