"""The ceiling for Python here: a bare aiokafka consumer loop that fetches and decodes JSON.

Run as `python -m bench.raw_consumer BOOTSTRAP TOPIC COUNT OUT`; writes the seconds from its
first message to its COUNT-th into the file OUT, as `bench.bare_faust` does, and exits.

No consumer group, no commits, no dispatch: `getmany` batches straight from the fetcher and
`orjson.loads` of every value, the least work any consumer of the topic must do.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer


async def consume(bootstrap: str, topic: str, expected: int) -> float:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        seen = 0
        started = 0.0
        loads = orjson.loads
        while seen < expected:
            # Small batches: the clock starts when the first arrives, so its fetch is not
            # timed; the rest overlap with decoding, as a real consumer's would.
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            if seen == 0 and batches:
                started = time.perf_counter()
            for records in batches.values():
                for record in records:
                    loads(record.value)
                seen += len(records)
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def main() -> None:
    bootstrap, topic, expected, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    seconds = asyncio.run(consume(bootstrap, topic, expected))
    with open(out, "w") as result:
        result.write(f"{seconds:.6f}\n")


if __name__ == "__main__":
    main()
