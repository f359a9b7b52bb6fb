"""`paybot serve` under a profiler, switched on and off by signals so that start-up
(imports, migrations) and shutdown stay out of the profile.

    python -m bench.profiled_serve --profiler pyinstrument --out DIR/paybot -- serve --port P

SIGUSR1 starts profiling, SIGUSR2 stops it and writes OUT.txt (and OUT.html and OUT.pyisession
for pyinstrument, which `python -m bench.profile_summary` sums up by package; OUT.pstats for
cProfile). A profile still running at exit is written then.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import signal
import sys
from pathlib import Path
from typing import Any


class Switch:
    def __init__(self, kind: str, out: Path) -> None:
        self.kind, self.out = kind, out
        self.profiler: Any = None

    def start(self, *_: object) -> None:
        if self.profiler is not None:
            return
        if self.kind == "pyinstrument":
            from pyinstrument import Profiler

            self.profiler = Profiler(interval=0.001, async_mode="disabled")
            self.profiler.start()
        else:
            self.profiler = cProfile.Profile()
            self.profiler.enable()

    def stop(self, *_: object) -> None:
        profiler, self.profiler = self.profiler, None
        if profiler is None:
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.kind == "pyinstrument":
            profiler.stop()
            self.out.with_suffix(".txt").write_text(
                profiler.output_text(unicode=False, color=False, show_all=False)
            )
            self.out.with_suffix(".html").write_text(profiler.output_html())
            profiler.last_session.save(str(self.out.with_suffix(".pyisession")))
        else:
            profiler.disable()
            profiler.dump_stats(str(self.out.with_suffix(".pstats")))
            text = io.StringIO()
            stats = pstats.Stats(profiler, stream=text)
            stats.sort_stats("tottime").print_stats(45)
            stats.sort_stats("cumulative").print_stats(70)
            self.out.with_suffix(".txt").write_text(text.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiler", choices=["pyinstrument", "cprofile"], default="pyinstrument")
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix")
    parser.add_argument("cli_args", nargs=argparse.REMAINDER, help="-- then paybot's arguments")
    args = parser.parse_args()
    cli_args = args.cli_args[1:] if args.cli_args[:1] == ["--"] else args.cli_args

    switch = Switch(args.profiler, args.out)
    signal.signal(signal.SIGUSR1, switch.start)
    signal.signal(signal.SIGUSR2, switch.stop)
    from bot.cli.main import main as paybot

    try:
        paybot(cli_args)
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    finally:
        switch.stop()
    sys.exit(code)


if __name__ == "__main__":
    main()
