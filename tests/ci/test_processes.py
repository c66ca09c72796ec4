"""Loopback ports and process groups (ci/processes.py), which every server this project starts relies on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from ci import processes


def test_free_ports_are_distinct_and_bindable():
    """The ports picked are different from each other and free on 127.0.0.1."""
    ports = processes.free_ports(3)
    assert len(set(ports)) == 3
    for port in [*ports, processes.free_port()]:
        with socket.socket() as sock:
            sock.bind((processes.HOST, port))


def test_group_members_finds_a_live_group_and_nothing_of_a_gone_one():
    """The leftover check reads /proc: this test's own group has a member, a group of no process has none."""
    assert os.getpid() in processes.group_members(os.getpgid(0))
    assert processes.group_members(2**22 + 12345) == []


def test_stop_group_ends_the_leader_and_what_it_started():
    """A server that started a child of its own: stopping the group ends both, and nothing is left."""
    child = "import time; time.sleep(60)"
    code = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(60)"
    leader = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while len(processes.group_members(leader.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(processes.group_members(leader.pid)) == 2
        assert processes.stop_group(leader, timeout=5) == []
        assert processes.group_members(leader.pid) == []
    finally:
        if leader.poll() is None:
            leader.kill()
