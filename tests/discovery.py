"""Google's own description of Speech-to-Text v1: the discovery document google-api-python-client
ships, and a checker of proto3 JSON against its schemas that refuses what Google's JSON parser
refuses (unknown names, wrong types, out-of-range integers, bad base64, unknown enum values) and
accepts what it accepts (proto names as well as camelCase, numbers and enums as strings or
integers, null for any field)."""

from __future__ import annotations

import base64
import binascii
import importlib.util
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

DOCUMENT = "discovery_cache/documents/speech.v1.json"
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1),
              "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1)}
DURATION = re.compile(r"-?\d{1,12}(\.\d{1,9})?s")
TYPE_NAMES = {"integer": "TYPE_INT32", "number": "TYPE_FLOAT", "boolean": "TYPE_BOOL", "string": "TYPE_STRING"}


@lru_cache(maxsize=1)
def document() -> dict:
    """The discovery document; ImportError naming the test extra when it is not installed."""
    spec = importlib.util.find_spec("googleapiclient")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("google-api-python-client is missing: pip install -e '.[test]'")
    path = Path(list(spec.submodule_search_locations)[0]) / DOCUMENT
    return json.loads(path.read_text(encoding="utf-8"))


def schema(name: str) -> dict:
    return document()["schemas"][name]


def snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def camel(name: str) -> str:
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def problems(value: Any, ref: str, path: str = "") -> list[str]:
    """Why Google would refuse ``value`` as the message ``ref``, in Google's words; [] if it would not."""
    return _check(value, {"$ref": ref}, path)


def _check(value: Any, spec: dict, path: str) -> list[str]:
    if value is None:                       # proto3 JSON: null is the field's default
        return []
    if "$ref" in spec:
        return _message(value, schema(spec["$ref"]), path)
    kind, fmt = spec.get("type"), spec.get("format")
    if kind == "array":
        if not isinstance(value, list):
            return [_invalid(path, "TYPE_MESSAGE" if "$ref" in spec["items"] else "TYPE_STRING", value)]
        return [p for i, item in enumerate(value) for p in _check(item, spec["items"], f"{path}[{i}]")]
    if kind == "object":
        return [] if isinstance(value, dict) else [_invalid(path, "TYPE_MESSAGE", value)]
    if kind == "any":
        return []
    if "enum" in spec:
        ok = (isinstance(value, str) and value in spec["enum"]) or (
            isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(spec["enum"]))
        return [] if ok else [_invalid(path, "TYPE_ENUM", value)]
    if kind == "boolean":
        return [] if isinstance(value, bool) else [_invalid(path, "TYPE_BOOL", value)]
    if kind == "integer" or fmt in INT_RANGES:
        return [] if _integer(value, *INT_RANGES.get(fmt or "int32", INT_RANGES["int32"])) else \
            [_invalid(path, f"TYPE_{(fmt or 'int32').upper()}", value)]
    if kind == "number":
        return [] if _number(value) else [_invalid(path, "TYPE_FLOAT", value)]
    if not isinstance(value, str):
        return [_invalid(path, "TYPE_BYTES" if fmt == "byte" else "TYPE_STRING", value)]
    if fmt == "byte" and not _base64(value):
        return [f"Invalid value at '{path}' (TYPE_BYTES), Base64 decoding failed for {json.dumps(value)[:60]}"]
    if fmt == "google-duration" and not DURATION.fullmatch(value):
        return [f"Invalid value at '{path}' (type.googleapis.com/google.protobuf.Duration), {json.dumps(value)[:60]}"]
    return []


def _message(value: Any, message: dict, path: str) -> list[str]:
    where = f" at '{path}'" if path else ""
    if not isinstance(value, dict):
        if not path:
            return ['Invalid JSON payload received. Unknown name "": Root element must be a message.']
        return [_invalid(path, "TYPE_MESSAGE", value)]
    properties = message.get("properties", {})
    found, seen = [], set()
    for name, item in value.items():
        field = camel(name)
        if field not in properties:
            found.append(f'Invalid JSON payload received. Unknown name "{name}"{where}: Cannot find field.')
            continue
        if field in seen:
            found.append(f"Invalid JSON payload received. Duplicate field \"{name}\"{where}.")
        seen.add(field)
        found += _check(item, properties[field], f"{path}.{snake(field)}" if path else snake(field))
    return found


def _invalid(path: str, kind: str, value: Any) -> str:
    return f"Invalid value at '{path}' ({kind}), {json.dumps(value, default=str)[:60]}"


def _integer(value: Any, low: int, high: int) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        if not re.fullmatch(r"-?\d{1,20}", value.strip()):
            return False
        value = int(value)
    if isinstance(value, float):
        if not value.is_integer():
            return False
        value = int(value)
    return isinstance(value, int) and low <= value <= high


def _number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        if value in ("NaN", "Infinity", "-Infinity"):
            return True
        try:
            value = float(value)
        except ValueError:
            return False
    return isinstance(value, (int, float))


def _base64(value: str) -> bool:
    text = value.replace("-", "+").replace("_", "/")
    try:
        base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        return False
    return True
