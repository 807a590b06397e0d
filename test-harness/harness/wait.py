"""The one polling loop of the harness, the end-to-end tests, the benchmarks and the demo.

`wait_until` waits for something to happen (a port answers, a log line appears, a counter
moves, a decision changes) and fails with a message naming what was awaited; `holds_for`
checks that something keeps holding for a while (the last good state keeps serving)."""

import time


class WaitTimeout(AssertionError):
    """What `wait_until` raises when the awaited thing did not happen in time."""


def _short(value, limit=300):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def wait_until(predicate, timeout, what, interval=0.05, expect=None, ignore=(), detail=None):
    """Calls `predicate()` until it returns a truthy value, and returns that value. With
    `expect`, `predicate` is a probe: the wait ends when `expect(value)` is truthy, and returns
    the probed value (so a timeout can show the last answer, e.g. a response or a status).

    `predicate` is called at least once, then every `interval` seconds (0: back to back,
    for measurements). An exception of a type in `ignore` (e.g. `OSError` while a server is
    not listening yet) counts as "not yet"; any other propagates at once, so a predicate can
    stop the wait early (a process that exited, an assertion on an intermediate answer).
    After `timeout` seconds raises `WaitTimeout`: "timed out after T s waiting for WHAT
    (last: the last value or ignored error)", followed by `detail()` when given (e.g. the
    tail of a log)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = last = predicate()
            done = expect(value) if expect is not None else value
        except ignore as e:
            done, last = False, e
        if done:
            return value
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:g} s waiting for {what} (last: {_short(last)})"
            if detail is not None:
                message += "\n" + detail()
            raise WaitTimeout(message)
        if interval:
            time.sleep(interval)


def holds_for(predicate, duration, what, interval=0.1, expect=None):
    """Calls `predicate()` every `interval` seconds for `duration` seconds; each value must be
    truthy (with `expect`: `expect(value)` must be), or the predicate raises its own assertion.
    Fails with "WHAT stopped holding after T s of D s (got: the value)"."""
    start = time.monotonic()
    while True:
        value = predicate()
        elapsed = time.monotonic() - start
        if not (expect(value) if expect is not None else value):
            raise AssertionError(f"{what} stopped holding after {elapsed:.2f} s of {duration:g} s "
                                 f"(got: {_short(value)})")
        if elapsed >= duration:
            return
        time.sleep(interval)
