"""Ports for local clusters come from outside the kernel's ephemeral range.

Outgoing connections take their local ports from that range, so a port
found free inside it can be taken before the daemon it was given binds it;
the daemon exits and a bench run or a test fails for no reason of its own.
"""

from __future__ import annotations

import socket

import pytest

from pbftd.testnet import EPHEMERAL_PORTS_FILE, free_base_port, listen_port_range


@pytest.mark.parametrize(("ephemeral", "count", "expected"), [
    ((32768, 60999), 14, (10_000, 32768 - 14)),    # Linux's default: below it
    ((1024, 60999), 14, (61000, 65536 - 14)),      # starts low: above it
    ((1024, 65535), 14, (10_000, 65536 - 14)),     # no room either side
    ((10010, 60999), 14, (61000, 65536 - 14)),
])
def test_the_search_range_avoids_the_ephemeral_ports(ephemeral, count, expected) -> None:
    assert listen_port_range(ephemeral, count) == expected


def test_a_base_port_found_here_is_outside_this_machines_ephemeral_range() -> None:
    low, high = map(int, EPHEMERAL_PORTS_FILE.read_text().split())
    for _ in range(20):
        base = free_base_port(14)
        assert base + 13 < low or base > high
        with socket.socket() as s:   # and it was free when found
            s.bind(("127.0.0.1", base))
