"""(work in progress)"""

from __future__ import annotations

import argparse


def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="(work in progress)")
    p.set_defaults(func=lambda args: 1)
    return p
