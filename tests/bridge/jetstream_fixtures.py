"""The accounts and times of tests/bridge/fixtures/*.jsonl: Jetstream `/subscribe` frames
written from its documented JSON wire, one per line, garbage lines included."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def did(name: str) -> str:
    return "did:plc:" + (name + "a" * 24)[:24]


ALICE, BOB, CAROL, DAVE, ERIN, FRANK = map(did, ["alice", "bob", "carol", "dave", "erin", "frank"])
T0 = 1_779_719_000_000_000  # time_us of line 0: 2026-05-25T14:23:20Z


def t(line: int) -> int:
    """time_us of a line: one second apart, line by line."""
    return T0 + line * 1_000_000


def fixture_lines(name: str) -> list[bytes]:
    return (FIXTURES / name).read_bytes().splitlines()
