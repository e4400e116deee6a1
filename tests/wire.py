"""Reading captures the way a student's Wireshark does: tshark with the lab's profile and Lua dissector.

Shared by the capture, record and analyzer tests (test modules never import each other).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from labkit import capture

TSHARK_TIMEOUT = 60


def wireshark_home(folder: Path) -> dict[str, str]:
    """Environment whose personal Wireshark folder holds only the shipped profile (never the real ~/.config)."""
    shutil.copytree(capture.PROFILE_DIR, folder / ".config" / "wireshark" / "profiles" / capture.PROFILE_NAME,
                    dirs_exist_ok=True)
    return {**os.environ, "HOME": str(folder), "XDG_CONFIG_HOME": str(folder / ".config")}


def tshark(env: dict, pcap: Path, display_filter: str, *fields: str, decode_as: str | None = None) -> list[list[str]]:
    """Rows of `fields` for the packets matching `display_filter`, decoded with the lab's profile and Lua.

    `decode_as` adds one rule, e.g. "tcp.port==40123,mqtt" for a broker on a port of the test's own.
    """
    argv = ["tshark", "-C", capture.PROFILE_NAME, "-X", f"lua_script:{capture.LUA_DISSECTOR}",
            *(["-d", decode_as] if decode_as else []),
            "--disable-heuristic", "http_tcp", "-n", "-r", str(pcap), "-Y", display_filter,
            "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=\x1f"]
    for field in fields:
        argv += ["-e", field]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TSHARK_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "Lua" not in done.stderr and "rror" not in done.stderr, done.stderr
    return [line.split("\t") for line in done.stdout.splitlines()]


def values(rows: list[list[str]], column: int = 0) -> list[str]:
    """All values of one column, multi-occurrence fields split."""
    return [v for row in rows for v in row[column].split("\x1f") if v]


def payload_bytes(env: dict, pcap: Path) -> bytes:
    """Every TCP payload of the capture, concatenated (to look for what the student sent)."""
    return b"".join(bytes.fromhex(v) for v in values(tshark(env, pcap, "tcp.len > 0", "tcp.payload")))


def file_comments(pcap: Path) -> str:
    """The capture file's comments, as capinfos prints them."""
    done = subprocess.run(["capinfos", "-k", str(pcap)], capture_output=True, text=True, timeout=TSHARK_TIMEOUT)
    assert done.returncode == 0, done.stderr
    return done.stdout
