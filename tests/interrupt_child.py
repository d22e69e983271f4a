"""Run trtbuild's command line and send this process a real signal at a chosen point of its work.

    python tests/interrupt_child.py SIGNAL EVENT MATCH NTH DELAY -- trtbuild-args...

The point is an audit event (``sys.addaudithook``): the ``NTH`` ``EVENT`` (``open``, ``import``) whose first
argument contains ``MATCH`` (``=MATCH``: equals it). With ``DELAY`` 0 the signal is sent at that very moment (in Python code); with a delay,
from a timer thread, so it lands while the main thread is inside native code (torch, onnxsim, ONNX Runtime). The
handlers that run are trtbuild's own, as for a Ctrl-C or a ``kill`` from outside; nothing in trtbuild is changed.
"""

from __future__ import annotations

import os
import signal
import sys
import threading


def main(argv: list[str]) -> int:
    sig_name, event, match, nth, delay, sep, *args = argv
    assert sep == "--", argv
    sig, nth, delay, seen = signal.Signals[sig_name], int(nth), float(delay), []
    said = os.fdopen(os.dup(2), "w")  # the real stderr, even while trtbuild captures fd 2 from native code

    def send():
        said.write(f"interrupt-test: {sig.name} at {event} {match!r} #{nth} (+{delay}s)\n")
        said.flush()
        os.kill(os.getpid(), sig)

    def matches(arg) -> bool:
        return str(arg) == match[1:] if match.startswith("=") else match in str(arg)

    def hook(name, hook_args):
        if len(seen) >= nth or name != event or not hook_args or not matches(hook_args[0]):
            return
        seen.append(hook_args[0])
        if len(seen) < nth:
            return
        if delay == 0:
            send()
        else:
            timer = threading.Timer(delay, send)
            timer.daemon = True
            timer.start()

    sys.addaudithook(hook)
    from trtbuild.cli import cli

    return cli.main(args=args, prog_name="trtbuild")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
