#!/usr/bin/env python3
"""Where a running palaver's anonymous memory is: glibc's per-arena statistics, SQLite's own
count, and the anonymous mappings by kind.

`snapshot(pid)` attaches gdb for a moment (all threads stopped), points the process's stderr at
a file, calls glibc's `malloc_stats()` (per arena: bytes taken from the system and bytes in
use) and SQLite's `sqlite3_memory_used()`, puts stderr back and detaches. It also reads
`/proc/<pid>/smaps` and sums the anonymous resident memory of thread stacks, of glibc's
per-thread arena heaps (64 MiB-aligned mappings) and of the rest (the main heap, mmap'd
chunks). `soak.py --heap-probe-at 300,1500` takes one at minute 5 and minute 25.

Needs gdb and permission to ptrace the server (same user; `kernel.yama.ptrace_scope` ≤ 1 for a
child of the caller). Usable alone: `heap_probe.py PID` prints one snapshot as JSON.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ARENA_HEAP_ALIGN = 64 << 20  # HEAP_MAX_SIZE on 64-bit glibc: per-thread arenas live in such mappings


def malloc_stats(pid):
    """glibc's malloc_stats() of `pid`, parsed: per-arena system/in-use bytes and totals,
    plus sqlite3_memory_used() when the binary has the symbol. None when gdb failed."""
    with tempfile.NamedTemporaryFile(prefix="malloc-stats-", suffix=".txt", delete=False) as f:
        path = f.name
    os.chmod(path, 0o666)
    # O_WRONLY|O_TRUNC = 01|01000; the file exists already.
    cmds = [
        "set $saved = (int)dup(2)",
        f'set $fd = (int)open("{path}", 01|01000)',
        "call (int)dup2($fd, 2)",
        "call (void)malloc_stats()",
        "call (int)dup2($saved, 2)",
        "call (int)close($fd)",
        "call (int)close($saved)",
        "printf \"SQLITE_MEMORY_USED %ld\\n\", (long)sqlite3_memory_used()",
        "printf \"SQLITE_MEMORY_HIGHWATER %ld\\n\", (long)sqlite3_memory_highwater(0)",
    ]
    argv = ["gdb", "-nx", "-batch", "-p", str(pid)]
    for c in cmds:
        argv += ["-ex", c]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=600).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = Path(path).read_text()
    os.unlink(path)
    arenas, current = [], None
    for line in text.splitlines():
        m = re.match(r"Arena (\d+):", line)
        if m:
            current = {"arena": int(m.group(1))}
            arenas.append(current)
            continue
        m = re.match(r"(system|in use) bytes\s*=\s*(\d+)", line.strip())
        if m and current is not None:
            current["system" if m.group(1) == "system" else "in_use"] = int(m.group(2))
        m = re.match(r"Total \(incl\. mmap\):", line)
        if m:
            current = {"arena": "total"}
            arenas.append(current)
        m = re.match(r"max mmap regions\s*=\s*(\d+)", line.strip())
        if m:
            current = None
        m = re.match(r"max mmap bytes\s*=\s*(\d+)", line.strip())
        if m:
            arenas.append({"arena": "max_mmap", "system": int(m.group(1))})
    result = {"arenas": [a for a in arenas if isinstance(a["arena"], int)]}
    total = next((a for a in arenas if a["arena"] == "total"), None)
    if total:
        result["total_system"] = total.get("system")
        result["total_in_use"] = total.get("in_use")
    for key in ("SQLITE_MEMORY_USED", "SQLITE_MEMORY_HIGHWATER"):
        m = re.search(key + r" (-?\d+)", out)
        result[key.lower()] = int(m.group(1)) if m else None
    return result


def anon_mappings(pid):
    """Anonymous resident kB by kind, from /proc/<pid>/smaps."""
    kinds = {"stack": 0, "arena_heaps": 0, "other_anon": 0}
    counts = {"arena_heaps": 0, "thread_stacks": 0}
    header = None
    lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    maps = []
    for line in lines:
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split("-"))
            header = {"start": start, "end": end, "name": parts[5] if len(parts) > 5 else "", "anon": 0}
            maps.append(header)
        elif line.startswith("Anonymous:") and header is not None:
            header["anon"] = int(line.split()[1])
    for i, m in enumerate(maps):
        if m["anon"] == 0 and m["name"] == "":
            continue
        if m["name"] == "[stack]":
            kinds["stack"] += m["anon"]
        elif m["name"] in ("[heap]",) or m["name"].startswith("/"):
            kinds["other_anon"] += m["anon"]
        elif m["name"] == "" and m["start"] % ARENA_HEAP_ALIGN == 0:
            kinds["arena_heaps"] += m["anon"]
            counts["arena_heaps"] += 1
        elif m["name"] == "" and i > 0 and maps[i - 1]["end"] == m["start"] and maps[i - 1]["anon"] == 0 \
                and maps[i - 1]["end"] - maps[i - 1]["start"] <= 64 << 10:
            # a thread stack: a mapping right after its guard page(s) (no resident memory)
            kinds["stack"] += m["anon"]
            counts["thread_stacks"] += 1
        else:
            kinds["other_anon"] += m["anon"]
    threads = len(os.listdir(f"/proc/{pid}/task"))
    return {"anon_kib": kinds, "counts": counts, "threads": threads}


def snapshot(pid):
    status = {k: v for k, v in (l.split(":", 1) for l in Path(f"/proc/{pid}/status").read_text().splitlines())}
    snap = {
        "rss_anon_kib": int(status["RssAnon"].split()[0]),
        "vm_rss_kib": int(status["VmRSS"].split()[0]),
        "mappings": anon_mappings(pid),
        "malloc": malloc_stats(pid),
    }
    return snap


if __name__ == "__main__":
    print(json.dumps(snapshot(int(sys.argv[1])), indent=2))
