"""A separate process that holds the state lock (or sits inside an apply transaction) for the
lock tests. It prints one line ``READY <lock id or serial>`` when it holds what was asked, then
waits ``--hold`` seconds (or until killed) and exits cleanly.

    python holder_process.py URL BASE_DIR lock [--operation apply] [--hold 60]
    python holder_process.py URL BASE_DIR transaction --resources 5000 [--hold 60]
"""

from __future__ import annotations

import argparse
import sys
import time

from engine.state import ResourceVersion, StateStore


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("base_dir")
    parser.add_argument("mode", choices=["lock", "transaction"])
    parser.add_argument("--operation", default="apply")
    parser.add_argument("--hold", type=float, default=60.0)
    parser.add_argument("--resources", type=int, default=100)
    args = parser.parse_args()

    with StateStore.open(args.url, args.base_dir) as store:
        with store.lock(args.operation) as info:
            if args.mode == "lock":
                print(f"READY {info.lock_id}", flush=True)
                time.sleep(args.hold)
                return 0
            meta = store.meta()
            with store.transaction(meta.lineage, meta.serial) as tx:
                tx.put_resources(
                    ResourceVersion(f"task.t{i}", "task", f"t{i}", {"n": i}) for i in range(args.resources)
                )
                print(f"READY {tx.serial}", flush=True)
                time.sleep(args.hold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
