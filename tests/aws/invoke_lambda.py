"""One simulated Lambda invocation in a fresh process (a new container every time).

    python -m tests.aws.invoke_lambda MODULE:HANDLER '<event json>' TIMEOUT_SECONDS

The context's remaining time counts down from TIMEOUT_SECONDS from the moment the
handler is called (Lambda's timeout covers the handler, not the module's import). Prints
one JSON line: the handler's return value (or error) and the measured run time.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import uuid


class FakeContext:
    """The part of the Lambda context the handler uses, on a real monotonic clock."""

    def __init__(self, timeout: float) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._ends = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))


def main() -> None:
    target, event_json, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    module_name, _, attr = target.partition(":")
    handler = getattr(importlib.import_module(module_name), attr)
    event = json.loads(event_json)
    context = FakeContext(timeout)
    started = time.monotonic()
    try:
        result = handler(event, context)
        error = None
    except Exception as exc:
        result, error = None, {"errorType": type(exc).__name__, "errorMessage": str(exc)}
    elapsed = time.monotonic() - started
    print(json.dumps({"result": result, "error": error, "elapsed": elapsed}))


if __name__ == "__main__":
    main()
