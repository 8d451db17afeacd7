"""The Deadline value, and the deadlines' one alarm thread: earliest first, cancelled alarms never
fire, nothing piles up, and no callback can stop it."""
from __future__ import annotations

import threading
import time

from ovos_stt_plugin_google_apikey import timeouts
from ovos_stt_plugin_google_apikey.timeouts import Deadline


def alarm_threads():
    return [t for t in threading.enumerate() if t.name == "google-stt-deadlines"]


def test_a_deadline_counts_down_and_moves_on_by_what_is_added():
    deadline = Deadline.after(60)
    assert 59 < deadline.remaining() <= 60 and not deadline.expired
    later = deadline.extended(30)
    assert later.at == deadline.at + 30 and later != deadline     # a new value; the old one is kept
    past = Deadline.after(-1)
    assert past.expired and past.remaining() == 0.0
    assert Deadline(5.0) == Deadline(5.0)


def test_an_earlier_alarm_armed_later_fires_first():
    fired = []
    timeouts.arm(Deadline.after(60), lambda: None).cancel()      # the alarm thread runs
    late = timeouts.arm(Deadline.after(60), lambda: fired.append("late"))
    time.sleep(0.2)                            # ... and waits for `late` (or an older one)
    early = threading.Event()
    timeouts.arm(Deadline.after(0.05), early.set)                 # so it must be woken for this one
    try:
        assert early.wait(10)
        assert fired == []
    finally:
        late.cancel()
    assert len(alarm_threads()) == 1


def test_a_cancelled_alarm_never_fires():
    fired = set()
    alarms = [timeouts.arm(Deadline.after(0.05), lambda i=i: fired.add(i)) for i in range(20)]
    for alarm in alarms[::2]:
        alarm.cancel()
    done = threading.Event()
    timeouts.arm(Deadline.after(0.3), done.set)           # due after all of them
    assert done.wait(10)
    assert fired == set(range(1, 20, 2))


def test_cancelled_alarms_do_not_pile_up():
    # A busy server arms two per Google request and cancels nearly all of them well before
    # their (10 s) time: the queue is purged rather than holding every one of them.
    for _ in range(5000):
        timeouts.arm(Deadline.after(600), lambda: None).cancel()
    queued = len(timeouts._ALARMS._heap)
    assert queued <= 2 * timeouts._Alarms.PURGE_AT + 2, queued
    assert len(alarm_threads()) == 1


def test_an_alarm_that_raises_does_not_stop_the_ones_queued_after_it(caplog):
    # e07c3d3: any exception but OSError from a callback (urllib3's SSLTransport has no
    # shutdown(): AttributeError) ended the thread, and the deadlines queued behind it never fired.
    later = threading.Event()
    timeouts.arm(Deadline.after(0.4), later.set)           # queued before the failing one runs

    def broken() -> None:
        raise AttributeError("'SSLTransport' object has no attribute 'shutdown'")

    timeouts.arm(Deadline.after(0.05), broken)
    assert later.wait(10)
    assert len(alarm_threads()) == 1
    assert "SSLTransport" in caplog.text                    # logged, not swallowed
