"""Shared by the python hooks here: keeps what tusc sent so the tests can check it.

Writes <HOOK_LOG>/<ns>-<event>.json with {"stdin": <parsed JSON>, "env": {TUS_*},
"cwd": ..., "argv": ..., "t": <seconds>}. HOOK_LOG comes from tusc's environment,
which every hook inherits.
"""
import json
import os
import sys
import time


def record(event):
    raw = sys.stdin.read()
    data = json.loads(raw)
    log = os.environ.get("HOOK_LOG")
    if log:
        entry = {
            "stdin": data,
            "raw": raw,
            "env": {k: v for k, v in os.environ.items() if k.startswith("TUS_")},
            "cwd": os.getcwd(),
            "argv": sys.argv[1:],
            "t": time.time(),
        }
        name = os.path.join(log, "%d-%s.json" % (time.time_ns(), event))
        with open(name + ".tmp", "w") as f:
            json.dump(entry, f)
        os.rename(name + ".tmp", name)
    return data


def answer(obj):
    sys.stdout.write(json.dumps(obj))
    sys.stdout.flush()
