"""How a benchmark hands over its result: tables on stdout, the whole result as JSON."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console


def report(
    result: dict[str, Any],
    print_tables: Callable[[dict[str, Any], Console], None],
    out: Path,
    width: int,
) -> None:
    console = Console()
    if not console.is_terminal:
        console = Console(width=width)  # piped: wide enough that the tables do not wrap
    print_tables(result, console)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"written to {out}")
