#!/usr/bin/env python3
"""`make cluster`: three palaver nodes, a private PostgreSQL and a private Redis on this
machine's loopback (free ports, scratch directories), placement on; prints each node's URL,
QUIC and mesh address and the connection string, then runs until Ctrl-C (everything it
started is stopped and removed).

Usage: run_cluster.py --binary PATH [--nodes N] [--log-level info]
"""

import argparse
import time

from cluster_fixture import cluster


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    with cluster(args.binary, args.nodes, args.log_level) as (pg, database, redis, nodes):
        print(f"PostgreSQL {pg.url(database)}")
        print(f"Redis      {redis.url()}")
        for n in nodes:
            print(f"{n.name}: {n.url}  quic {n.quic}  mesh {n.mesh}  metrics {n.metrics_url}")
        print(f"connection string (any node): {nodes[0].conn_str}")
        print(f"CA to trust: {nodes[0].ca}")
        print("Ctrl-C stops the cluster.", flush=True)
        try:
            while all(n.proc.poll() is None for n in nodes):
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
