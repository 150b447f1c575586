#!/usr/bin/env python3
"""Run SecantusDB with a replica-set name other than the fixed "secantus".

Usage (with the test venv's python):
    python scripts/secantus-launch.py --replset-name rs1 [secantusd-py flags...]

SecantusDB's CLI hard-codes replica_set_name="secantus" when it builds its
server, but multi-replica-set tests (a PBM-style cluster of rs1, rs2, ...)
need distinct names that clients check against `?replicaSet=`.  The server
class itself takes the name as a parameter, so we substitute a thin wrapper
for the class that the CLI module looks up, and then hand control to the
unmodified CLI.  Every other flag keeps its secantusd-py meaning.

Without --replset-name this behaves exactly like secantusd-py.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--replset-name", metavar="NAME")
    ours, rest = pre.parse_known_args(argv)

    if "-h" in rest or "--help" in rest:
        print("secantus-launch.py: --replset-name NAME  replica-set name to advertise "
              "(default: secantus); all other flags are secantusd-py's:\n")
    import secantus.cli as cli

    if ours.replset_name is not None:
        name = ours.replset_name
        if not name or "/" in name or "," in name:
            print(f"secantus-launch: invalid replica-set name {name!r}", file=sys.stderr)
            return 2
        real_server = cli.SecantusDBServer

        def server_with_name(*args, **kwargs):
            # None means --standalone: that flag must keep winning, since a
            # standalone server advertises no set at all.
            if kwargs.get("replica_set_name") is not None:
                kwargs["replica_set_name"] = name
            return real_server(*args, **kwargs)

        cli.SecantusDBServer = server_with_name

    # argparse in the CLI reads sys.argv[0] for its usage line.
    sys.argv = [sys.argv[0]] + rest
    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
