"""Speaks to a running OVOS listener over its messagebus; run with the listener venv's Python.

    python bus_driver.py HOST PORT MIC_FOLDER WAV [WAV ...]

Waits until the listener reports ready, then for each WAV in turn: emits ``mycroft.mic.listen``
(push-to-talk), waits for ``recognizer_loop:record_begin``, renames the WAV into MIC_FOLDER (the
test microphone plays it in real time) and waits for ``recognizer_loop:utterance`` or
``recognizer_loop:speech.recognition.unknown``. Prints one JSON line per WAV:
``{"wav": ..., "type": ..., "data": ...}`` (type "timeout" when neither came). Asserts nothing.
"""
import json
import os
import queue
import sys
import time
from pathlib import Path

from ovos_bus_client import Message, MessageBusClient

READY_TIMEOUT = 90
ANSWER_TIMEOUT = 45
ANSWERS = ("recognizer_loop:utterance", "recognizer_loop:speech.recognition.unknown")


def main(host: str, port: str, mic_folder: str, *wavs: str) -> int:
    events: "queue.Queue[Message]" = queue.Queue()
    bus = MessageBusClient(host=host, port=int(port), route="/core", ssl=False)
    for kind in ("recognizer_loop:record_begin",) + ANSWERS:
        bus.on(kind, events.put)
    bus.run_in_thread()
    if not bus.connected_event.wait(30):
        print(json.dumps({"type": "error", "data": "no bus connection"}), flush=True)
        return 1
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        reply = bus.wait_for_response(Message("mycroft.voice.is_ready"), timeout=1)
        if reply and reply.data.get("status"):
            break
        if time.monotonic() > deadline:
            print(json.dumps({"type": "error", "data": "listener not ready"}), flush=True)
            return 1
    for wav in wavs:
        print(json.dumps({"type": "result", **speak(bus, events, Path(mic_folder), Path(wav))}), flush=True)
    bus.close()
    return 0


def speak(bus: MessageBusClient, events: "queue.Queue[Message]", mic_folder: Path, wav: Path) -> dict:
    while not events.empty():
        events.get_nowait()
    bus.emit(Message("mycroft.mic.listen"))
    deadline = time.monotonic() + ANSWER_TIMEOUT
    dropped = False
    while True:
        try:
            msg = events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return {"wav": wav.name, "event": "timeout", "data": {}}
        if msg.msg_type == "recognizer_loop:record_begin" and not dropped:
            os.replace(wav, mic_folder / wav.name)       # whole file at once
            dropped = True
        elif msg.msg_type in ANSWERS and dropped:
            return {"wav": wav.name, "event": msg.msg_type, "data": msg.data}


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
