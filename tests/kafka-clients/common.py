"""What every Python client script shares: arguments and the event log.

Each script prints one JSON object per line on stdout, flushed at once, so
a test that kills the process with SIGKILL still sees every line written
before the kill:

  {"ev": "produced", "n": N}                      after a flush succeeded
  {"ev": "assign", "partitions": [..]}            a rebalance gave these
  {"ev": "rec", "p": P, "o": O, "k": K, "v": V}   a record was consumed
  {"ev": "commit_intent", "p": P, "o": O}         about to commit O (next to read)
  {"ev": "commit", "p": P, "o": O}                the commit returned
  {"ev": "done", "n": N}                          the script ended by itself
"""

import argparse
import json
import sys
import time


def emit(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--bootstrap", required=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("produce", help="produce N keyed records")
    pr.add_argument("--topic", required=True)
    pr.add_argument("--n", type=int, required=True)
    pr.add_argument("--codec", default="none")
    pr.add_argument("--idempotent", default="false", choices=["true", "false"])
    pr.add_argument("--prefix", default="v")
    me = sub.add_parser("member", help="consume in a group, committing after each record")
    me.add_argument("--topic", required=True)
    me.add_argument("--group", required=True)
    me.add_argument("--idle-exit", type=float, default=8.0,
                    help="exit after this many seconds without a record")
    me.add_argument("--delay", type=float, default=0.002, help="seconds of work per record")
    me.add_argument("--limit", type=float, default=90.0, help="exit after this many seconds")
    se = sub.add_parser("seek", help="consume from the first offset at or after a time")
    se.add_argument("--topic", required=True)
    se.add_argument("--ts", type=int, required=True, help="ms since the epoch")
    se.add_argument("--limit", type=float, default=30.0)
    co = sub.add_parser("consume", help="consume a whole topic from the beginning, no group")
    co.add_argument("--topic", required=True)
    co.add_argument("--n", type=int, required=True, help="stop after this many records")
    co.add_argument("--limit", type=float, default=30.0)
    return p


def key(i):
    return ("k%d" % i).encode()


def value(prefix, i):
    return json.dumps({"message": "%s%d" % (prefix, i), "i": i}).encode()


class Clock:
    """A bounded wait: every loop in a client script ends."""

    def __init__(self, limit):
        self.end = time.monotonic() + limit

    def over(self):
        return time.monotonic() > self.end
