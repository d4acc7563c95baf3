"""How long a JetStream stream takes to snapshot and restore (rujuk.snapshots, what `rujuk
backup` and `rujuk restore` do for each stream), at a given size. Never part of `make test`.

    nice -n 15 .venv/bin/python bench/stream_snapshot.py [--mib 64] [--body 2048]

Starts its own nats-server in a temporary folder, fills one stream with random bodies (they do
not compress: the snapshot is as large as the stream), then times save_snapshot and, into the
deleted stream's place, restore_snapshot.
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import nats

from rujuk.snapshots import restore_snapshot, save_snapshot
from rujuk_runtime.embedded import EmbeddedNats

STREAM = "BENCH_SNAPSHOT"


async def measure(mib: int, body: int, folder: Path) -> None:
    server = EmbeddedNats(folder / "nats").start()
    try:
        nc = await nats.connect(server.ops_url)
        js = nc.jetstream()
        await js.add_stream(name=STREAM, subjects=["bench.snapshot.>"])
        messages = mib * 1024 * 1024 // body
        for start in range(0, messages, 1000):
            batch = min(1000, messages - start)
            await asyncio.gather(
                *(js.publish("bench.snapshot.x", os.urandom(body)) for _ in range(batch))
            )
        path = folder / f"{STREAM}.snapshot"
        began = time.perf_counter()
        meta = await save_snapshot(nc, STREAM, path)
        saved = time.perf_counter() - began
        await js.delete_stream(STREAM)
        began = time.perf_counter()
        state = await restore_snapshot(nc, STREAM, meta, path)
        restored = time.perf_counter() - began
        size = path.stat().st_size / 1024 / 1024
        print(
            f"{messages:,} messages of {body} bytes, snapshot {size:.1f} MiB: "
            f"save {saved:.2f} s ({size / saved:.0f} MiB/s), "
            f"restore {restored:.2f} s ({size / restored:.0f} MiB/s), "
            f"restored {state['messages']:,} messages"
        )
        await nc.close()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=sys.modules[__name__].__doc__)
    parser.add_argument("--mib", type=int, default=64, help="the stream's size in MiB")
    parser.add_argument("--body", type=int, default=2048, help="bytes per message")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rujuk-bench-snapshot-") as folder:
        asyncio.run(measure(arguments.mib, arguments.body, Path(folder)))


if __name__ == "__main__":
    main()
