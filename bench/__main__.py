"""`python -m bench` (or `./dev bench`): every benchmark of the project, each printing its figures and
its ratio against a baseline measured in the same run. Not tests: nothing here fails a build.

`python -m bench backup [--quick | --help]`: only the etcd backup bench (bench/backup_bench.py).
`python -m bench restore [--quick | --help]`: only the in-place etcd restore bench (bench/restore_bench.py).
`python -m bench member-recovery [--rounds N]`: only the etcd member recovery bench (bench/member_recovery_bench.py).
`python -m bench dr [--rounds N] [--ha-rounds M]`: only the dr-migrate orchestration overhead bench (bench/dr_bench.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import api_latency, backup_bench, dr_bench, member_recovery_bench, restore_bench, sim_start, world_bench


def main() -> None:
    if sys.argv[1:2] == ["backup"]:
        backup_bench.main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["restore"]:
        restore_bench.main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["member-recovery"]:
        member_recovery_bench.main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["dr"]:
        dr_bench.main(sys.argv[2:])
        return
    print("== simulator start (issue 2)")
    sim_start.run()
    print("\n== API latency through the official client (issue 2)")
    api_latency.run()
    print("\n== exec stdout throughput (issue 2)")
    # Its own process tree: the simulator must not share a GIL with the readers it measures.
    subprocess.run([sys.executable, str(Path(__file__).with_name("exec_throughput.py"))], check=False)
    print("\n== the simulated HyperShift world (issue 3)")
    world_bench.world_start()
    world_bench.world_memory()
    world_bench.etcd_fill(256)
    print("(1 GiB fill: python -m bench.world_bench --fill-gib)")
    print("\n== etcd backup (issue 4; sizes: python -m bench backup --help)")
    backup_bench.main([])
    print("\n== in-place etcd restore (issue 5; sizes: python -m bench restore --help)")
    restore_bench.main([])
    print("\n== etcd member recovery (issue 5)")
    member_recovery_bench.main([])
    print("\n== dr-migrate orchestration overhead (issue 6)")
    dr_bench.main([])


if __name__ == "__main__":
    main()
