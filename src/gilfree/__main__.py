"""Command line: ``python -m gilfree <command>`` (also the ``gilfree`` script).

Commands:
  demo    the seed workloads (log analytics, ASCII GIF, countdown) serially, with threads,
          with the standard library's Pool and with gilfree, side by side.
"""

import argparse
import sys


def _demo(args):
    from gilfree import demo
    return demo.run(args)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m gilfree",
                                description="gilfree: parallel Python past the GIL.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    # -- demo (gilfree.demo) ------------------------------------------------------------
    from gilfree.demo import add_arguments as _demo_arguments
    d = sub.add_parser("demo", help="run the seed workloads side by side (issue 5)",
                       description="Run the seed workloads serially, with threads, with the "
                                   "standard library's Pool and with gilfree; print a table "
                                   "of times and speedups and write a PNG chart.")
    _demo_arguments(d)
    d.set_defaults(func=_demo)
    # -- (other commands: add a sub-parser above this line) -------------------------------
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
