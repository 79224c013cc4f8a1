"""A small interpreter for the subset of Amazon States Language our state machines use.

It reads ``infra/statemachine/*.asl.json`` itself, so a test driven through it checks the
definition and the handler together: the ResultSelector paths must exist in the
handler's output, the Choice rules must route real outputs, the Wait must find its
seconds. Anything outside the subset raises, so the file cannot drift past the tests.
Wait states are recorded, not slept: the test asserts what the machine would wait (and
may advance a simulated clock by it, ``on_wait``). A function error is an exception
raised by ``invoke`` (not an ``AssertionError``: that is the test's own check): its
``errorType`` is the class name, as the Lambda runtime reports
it; the Task's Retry rules (retried at once: their intervals are recorded, not slept)
and Catch rules route it.

Map states (inline or DISTRIBUTED): the items come from ``ItemsPath`` or from an
``ItemReader`` over ``s3:getObject`` with ``InputType: JSON`` (the object's bytes from the
test's ``read_object(bucket, key)``, ``ReaderConfig.ItemsPointer`` applied as an RFC 6901
JSON Pointer); ``ItemSelector`` sees the state input as ``$`` and ``$$.Map.Item.Index`` /
``$$.Map.Item.Value``; each item runs the ``ItemProcessor`` as a child execution, one
after the other, to its end. Not modelled: concurrency (``MaxConcurrency`` is ignored),
``ItemBatcher``, ``ResultWriter``, ``MaxItems``, tolerated failures (any failed child
fails the map with ``States.ExceedToleratedFailureThreshold``, AWS's default of 0%), the
256 KiB limits, and a child execution's own history: its visits are its own
:class:`Execution` in ``children``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
STATEMACHINES = ROOT / "infra" / "statemachine"


class AslError(Exception):
    """The definition uses something this interpreter does not know, or a path is missing."""


FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:x"


def load(name: str, function_arn: str = FUNCTION_ARN, **substitutions: str) -> dict[str, Any]:
    """Load a definition with its ``${Name}`` substitutions applied (the stage runner's
    ARN by default); a placeholder left unsubstituted raises."""
    text = (STATEMACHINES / name).read_text()
    for key, value in {"StageRunnerFunctionArn": function_arn, **substitutions}.items():
        text = text.replace("${" + key + "}", value)
    if (left := re.search(r"\$\{\w+\}", text)) is not None:
        raise AslError(f"{name}: {left[0]} is not substituted")
    return json.loads(text)


def get_path(data: Any, path: str, context: Any = None) -> Any:
    """``$``, ``$.a.b`` (and ``$$.a.b`` in ``context``): the JSONPath subset the
    definitions use; missing keys raise."""
    if path.startswith("$$."):
        return get_path(context, path[1:])
    if path == "$":
        return data
    if not path.startswith("$."):
        raise AslError(f"unsupported path {path!r}")
    value = data
    for part in path[2:].split("."):
        if not isinstance(value, dict) or part not in value:
            raise AslError(f"path {path!r} not found in {json.dumps(data)[:300]}")
        value = value[part]
    return value


def set_path(data: Any, path: str | None, value: Any) -> Any:
    if path is None:
        return data
    if path == "$":
        return value
    if not path.startswith("$.") or "." in path[2:]:
        raise AslError(f"unsupported ResultPath {path!r}")
    out = dict(data)
    out[path[2:]] = value
    return out


# The intrinsics the definitions use: a shallow merge (the second object's keys
# winning) and an array's length.
_JSON_MERGE = re.compile(r"States\.JsonMerge\((\$[\w.]*), *(\$[\w.]*), *false\)")
_ARRAY_LENGTH = re.compile(r"States\.ArrayLength\((\$[\w.]*)\)")


def evaluate(expression: str, data: Any, context: Any = None) -> Any:
    """A path, ``States.JsonMerge(path, path, false)`` over two objects, or
    ``States.ArrayLength(path)``."""
    merge = _JSON_MERGE.fullmatch(expression)
    if merge is not None:
        first, second = get_path(data, merge[1], context), get_path(data, merge[2], context)
        if not isinstance(first, dict) or not isinstance(second, dict):
            raise AslError(f"States.JsonMerge needs two objects, got {first!r}, {second!r}")
        return {**first, **second}
    length = _ARRAY_LENGTH.fullmatch(expression)
    if length is not None:
        array = get_path(data, length[1], context)
        if not isinstance(array, list):
            raise AslError(f"States.ArrayLength needs an array, got {array!r}")
        return len(array)
    if expression.startswith("States."):
        raise AslError(f"unsupported expression {expression!r}")
    return get_path(data, expression, context)


def apply_template(template: dict[str, Any], data: Any, context: Any = None) -> dict[str, Any]:
    """Parameters / ResultSelector / ItemSelector: keys ending in ``.$`` take a path's
    (or an intrinsic's) value; nested objects are templates too."""
    out: dict[str, Any] = {}
    for key, value in template.items():
        if key.endswith(".$"):
            if not isinstance(value, str):
                raise AslError(f"unsupported expression {value!r}")
            out[key[:-2]] = evaluate(value, data, context)
        elif isinstance(value, dict):
            out[key] = apply_template(value, data, context)
        else:
            out[key] = value
    return out


def json_pointer(document: Any, pointer: str) -> Any:
    """RFC 6901: ``""`` is the whole document, ``/a/0/b`` steps into it; missing raises."""
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        raise AslError(f"a JSON Pointer starts with '/': {pointer!r}")
    value = document
    for token in pointer[1:].split("/"):
        step = token.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            raise AslError(f"JSON Pointer {pointer!r}: no {step!r} in {json.dumps(value)[:200]}")
    return value


@dataclass
class Execution:
    """What one execution did: the states visited, the waits, the end."""

    visited: list[str] = field(default_factory=list)
    waits: list[int] = field(default_factory=list)
    invocations: int = 0
    errors: list[str] = field(default_factory=list)  # function errors, by errorType
    retries: list[str] = field(default_factory=list)  # the errors a Retry rule retried
    status: str = "RUNNING"  # SUCCEEDED / FAILED
    error: str | None = None
    output: Any = None
    children: list[Execution] = field(default_factory=list)  # a Map's, in item order
    reads: list[tuple[str, str]] = field(default_factory=list)  # ItemReader (bucket, key)


Invoke = Callable[[str, Any], Any]  # (FunctionName, Payload) -> the function's output
ReadObject = Callable[[str, str], bytes]  # (Bucket, Key) -> the object's bytes


def _matches(rule: dict[str, Any], error: str) -> bool:
    names = rule["ErrorEquals"]
    return (
        error in names
        or "States.ALL" in names
        or ("States.TaskFailed" in names and not error.startswith("States."))
    )


def _call(state: dict[str, Any], params: dict[str, Any], invoke: Invoke, ex: Execution) -> Any:
    """Invoke the function under the state's Retry rules; re-raise what they give up on."""
    tries: dict[int, int] = {}
    while True:
        ex.invocations += 1
        try:
            return invoke(params["FunctionName"], params["Payload"])
        except AssertionError:
            raise  # the test's own check inside invoke: not the function's error
        except Exception as exc:
            error = type(exc).__name__
            ex.errors.append(error)
            for index, rule in enumerate(state.get("Retry", [])):
                if _matches(rule, error):
                    if tries.get(index, 0) < rule.get("MaxAttempts", 3):
                        tries[index] = tries.get(index, 0) + 1
                        ex.retries.append(error)
                        break
                    raise
            else:
                raise


def _items(state: dict[str, Any], data: Any, read_object: ReadObject | None, ex: Execution) -> Any:
    """A Map state's items: from its ItemReader (a JSON object in S3), else ItemsPath."""
    reader = state.get("ItemReader")
    if reader is None:
        return get_path(data, state.get("ItemsPath", "$"))
    if reader["Resource"] != "arn:aws:states:::s3:getObject":
        raise AslError(f"unsupported ItemReader resource {reader['Resource']!r}")
    config = dict(reader["ReaderConfig"])
    if config.pop("InputType") != "JSON" or set(config) - {"ItemsPointer"}:
        raise AslError(f"unsupported ReaderConfig {reader['ReaderConfig']!r}")
    if "ItemsPath" in state:
        raise AslError("ItemsPath applies to a Map's JSON input only, not to an ItemReader")
    if read_object is None:
        raise AslError("an ItemReader needs read_object")
    where = apply_template(reader["Parameters"], data)
    ex.reads.append((where["Bucket"], where["Key"]))
    document = json.loads(read_object(where["Bucket"], where["Key"]))
    return json_pointer(document, config.get("ItemsPointer", ""))


def _map(
    state: dict[str, Any], data: Any, invoke: Invoke, ex: Execution, **options: Any
) -> tuple[Any, str | None]:
    """Run a Map state: its result, or the error that failed it."""
    items = _items(state, data, options.get("read_object"), ex)
    if not isinstance(items, list):
        raise AslError(f"a Map needs an array of items, got {json.dumps(items)[:200]}")
    results = []
    for index, item in enumerate(items):
        context = {"Map": {"Item": {"Index": index, "Value": item}}}
        selector = state.get("ItemSelector")
        child_input = apply_template(selector, data, context) if selector else item
        child = run(state["ItemProcessor"], child_input, invoke, **options)
        ex.children.append(child)
        if child.status != "SUCCEEDED":
            return None, "States.ExceedToleratedFailureThreshold"
        results.append(child.output)
    return results, None


def run(
    definition: dict[str, Any],
    execution_input: Any,
    invoke: Invoke,
    *,
    max_transitions: int = 200,
    on_wait: Callable[[int], None] | None = None,
    read_object: ReadObject | None = None,
) -> Execution:
    """Execute ``definition`` on ``execution_input``; Task states call ``invoke``.

    ``on_wait(seconds)`` is called for each Wait state (a test's simulated clock
    advances there); the wait is recorded either way, never slept. ``read_object`` is
    what an ItemReader reads. A Map's children run with the same options, each with
    its own ``max_transitions``.
    """
    states: dict[str, Any] = definition["States"]
    name: str = definition["StartAt"]
    data = execution_input
    ex = Execution()
    options = {"max_transitions": max_transitions, "on_wait": on_wait, "read_object": read_object}
    for _ in range(max_transitions):
        state = states[name]
        ex.visited.append(name)
        kind = state["Type"]
        if kind == "Map":
            result, error = _map(state, data, invoke, ex, **options)
            if error is not None:
                catch = next((c for c in state.get("Catch", []) if _matches(c, error)), None)
                if catch is None:
                    ex.status, ex.error, ex.output = "FAILED", error, data
                    return ex
                failure = {"Error": error, "Cause": "a child execution failed"}
                data = set_path(data, catch.get("ResultPath", "$"), failure)
                name = catch["Next"]
                continue
            if "ResultSelector" in state:
                result = apply_template(state["ResultSelector"], result)
            data = set_path(data, state.get("ResultPath", "$"), result)
        elif kind == "Pass":
            result = apply_template(state["Parameters"], data) if "Parameters" in state else data
            data = set_path(data, state.get("ResultPath", "$"), result)
        elif kind == "Task":
            if state["Resource"] != "arn:aws:states:::lambda:invoke":
                raise AslError(f"unsupported resource {state['Resource']!r}")
            params = apply_template(state["Parameters"], data)
            try:
                response = {"Payload": _call(state, params, invoke, ex), "StatusCode": 200}
            except AssertionError:
                raise
            except Exception as exc:  # retries spent (or none): Catch, or fail
                error = type(exc).__name__
                catch = next((c for c in state.get("Catch", []) if _matches(c, error)), None)
                if catch is None:
                    ex.status, ex.error, ex.output = "FAILED", error, data
                    return ex
                failure = {"Error": error, "Cause": str(exc)}
                data = set_path(data, catch.get("ResultPath", "$"), failure)
                name = catch["Next"]
                continue
            result = (
                apply_template(state["ResultSelector"], response)
                if "ResultSelector" in state
                else response
            )
            data = set_path(data, state.get("ResultPath", "$"), result)
        elif kind == "Choice":
            target = state.get("Default")
            for rule in state["Choices"]:
                value = get_path(data, rule["Variable"])
                if "BooleanEquals" in rule:
                    hit = value is rule["BooleanEquals"]
                elif "StringEquals" in rule:
                    hit = value == rule["StringEquals"]
                elif "IsNull" in rule:
                    hit = (value is None) is rule["IsNull"]
                else:
                    raise AslError(f"unsupported choice rule {rule}")
                if hit:
                    target = rule["Next"]
                    break
            if target is None:
                raise AslError(f"no Choice rule matched in {name} and no Default")
            name = target
            continue
        elif kind == "Wait":
            seconds = (
                get_path(data, state["SecondsPath"]) if "SecondsPath" in state else state["Seconds"]
            )
            if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
                raise AslError(f"Wait needs a non-negative integer, got {seconds!r}")
            ex.waits.append(seconds)
            if on_wait is not None:
                on_wait(seconds)
        elif kind == "Succeed":
            ex.status = "SUCCEEDED"
            ex.output = get_path(data, state.get("OutputPath", "$"))
            return ex
        elif kind == "Fail":
            ex.status, ex.error, ex.output = "FAILED", state["Error"], data
            return ex
        else:
            raise AslError(f"unsupported state type {kind!r}")
        if state.get("End"):
            ex.status, ex.output = "SUCCEEDED", data
            return ex
        name = state["Next"]
    raise AslError(f"more than {max_transitions} transitions")
