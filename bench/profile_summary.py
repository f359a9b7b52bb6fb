"""Where a pyinstrument profile's time went, by package (self time of the innermost frame).

    .venv/bin/python -m bench.profile_summary bench/profiles/paybot-services-pyinstrument.pyisession

A frame of a C function (`<built-in>`) is counted under its own name when it is one of the
few that matter (epoll.poll is the event loop waiting: idle), else under its caller's package.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path
from typing import Any

PROJECT_DIRS = ("bot", "states", "webhooks", "portal_fallback", "bench")
NAMED_BUILTINS = {
    "epoll.poll": "idle: event loop waiting (epoll.poll)",
    "socket.send": "socket send/recv (syscalls)",
    "socket.recv": "socket send/recv (syscalls)",
    "socket.recv_into": "socket send/recv (syscalls)",
}


def package_of(path: str | None) -> str:
    if not path:
        return "?"
    if "site-packages/" in path:
        rest = path.split("site-packages/", 1)[1]
        name = re.split(r"[/.]", rest, maxsplit=1)[0]
        return name.removesuffix(".py")
    parts = Path(path).parts
    for directory in PROJECT_DIRS:
        if directory in parts:
            return f"paybot {directory}/"
    if "<sqlalchemy generated" in path:
        return "sqlalchemy"
    if "lib/python3" in path or path.startswith("<frozen"):
        tail = path.split("lib/python3", 1)[-1].split("/", 1)[-1]
        return "stdlib " + (tail.split("/", 1)[0].removesuffix(".py") or path)
    return path


def summarize(root: Any) -> tuple[collections.Counter[str], float]:
    totals: collections.Counter[str] = collections.Counter()

    def walk(frame: Any, parent_package: str) -> None:
        path = frame.file_path or ""
        if path.startswith("<built-in>"):
            package = NAMED_BUILTINS.get(frame.function, parent_package)
        elif frame.file_path is None:  # pyinstrument's "[self]" frames: the parent's own time
            package = parent_package
        else:
            package = package_of(path)
        own = frame.time - sum(child.time for child in frame.children)
        if own > 0:
            totals[package] += own
        for child in frame.children:
            walk(child, package)

    walk(root, "?")
    return totals, root.time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("session", type=Path, help="a .pyisession file")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    from pyinstrument.session import Session

    session = Session.load(str(args.session))
    totals, total = summarize(session.root_frame())
    print(f"{total:.2f} s profiled; self time by package:")
    for package, seconds in totals.most_common(args.top):
        print(f"  {seconds / total:6.1%}  {seconds:7.2f} s  {package}")


if __name__ == "__main__":
    main()
