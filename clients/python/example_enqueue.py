#!/usr/bin/env python3
"""End-to-end example of the Python client, also run by the Swift test suite.

    python3 example_enqueue.py --redis redis://localhost:6379 --queue NAME --image PATH --out DIR

Uploads the image, enqueues a ``generate`` job with an idempotency key (twice: the second call
must return the same job with created False), checks that an invalid job is refused with
``invalid_job``, enqueues an ``edit`` of the upload, waits for both jobs to succeed (a worker
must be running on the queue), writes their outputs to DIR and checks they are PNGs.

On success prints one JSON line ``{"generate": id, "edit": id, "outputs": [paths], "ok": true}``
and exits 0; on any failure prints a message to stderr and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from imagegen_client import ImagegenClient, ImagegenError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
USER = "py-user"
TIER = "standard"
SIZE = "256x256"


class ExampleFailure(Exception):
    """A check of the example failed."""


def check(condition: bool, message: str) -> None:
    """Raises :class:`ExampleFailure` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ExampleFailure(message)


def wait_succeeded(client: ImagegenClient, job_id: str, deadline: float) -> dict[str, Any]:
    """Waits until ``deadline`` (monotonic seconds) for the job; returns its record if it succeeded."""
    try:
        record = client.wait(job_id, timeout=max(0.1, deadline - time.monotonic()))
    except TimeoutError as error:
        raise ExampleFailure(f"{error} (is a worker running on this queue?)") from None
    if record.get("state") != "succeeded":
        raise ExampleFailure(
            f"job {job_id} ended {record.get('state')}: "
            f"{record.get('error_code') or record.get('dead_reason', '')} {record.get('error_message', '')}".rstrip()
        )
    return record


def save_outputs(client: ImagegenClient, name: str, record: dict[str, Any], out_dir: Path) -> list[str]:
    """Fetches every output of a succeeded job, checks it is a PNG and writes it; returns the paths."""
    outputs = (record.get("result") or {}).get("outputs") or []
    check(len(outputs) >= 1, f"{name} job {record.get('id')} succeeded without outputs")
    paths = []
    for index, output in enumerate(outputs):
        data = client.get_output(output["key"])
        check(data is not None, f"output {output['key']} is missing")
        assert data is not None
        check(data.startswith(PNG_SIGNATURE), f"output {output['key']} is not a PNG")
        path = out_dir / f"{name}-{record['id']}-{index}.png"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the example; returns the summary to print."""
    image = Path(args.image).read_bytes()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    connection = redis.Redis.from_url(args.redis, socket_connect_timeout=5)
    client = ImagegenClient(connection, queue=args.queue)

    upload = client.put_upload(image, ttl_seconds=3600)

    generate = {"version": 1, "user": USER, "tier": TIER, "kind": "generate", "prompt": "a lighthouse at dusk", "size": SIZE}
    key = f"example-{uuid.uuid4().hex}"
    generate_id, created = client.enqueue(generate, idempotency_key=key)
    check(created, f"the first enqueue with idempotency key {key} did not create a job")
    again_id, created_again = client.enqueue(generate, idempotency_key=key)
    check(again_id == generate_id, f"the same idempotency key gave job {again_id}, not {generate_id}")
    check(not created_again, "the second enqueue with the same idempotency key created a job")

    invalid = {k: v for k, v in generate.items() if k != "prompt"}
    try:
        client.enqueue(invalid)
    except ImagegenError as error:
        check(error.code == "invalid_job", f"a job without prompt was refused with {error.code}, not invalid_job")
    else:
        raise ExampleFailure("a job without prompt was accepted")

    edit = {
        "version": 1, "user": USER, "tier": TIER, "kind": "edit", "prompt": "the same lighthouse at night",
        "size": SIZE, "inputs": [upload],
    }
    edit_id, created = client.enqueue(edit, idempotency_key=f"{key}-edit")
    check(created, "the edit job was not created")

    # Many jobs in one call: each enqueued on its own, a refused one reported in its place.
    batch = client.enqueue_many([
        (dict(generate, prompt="a lighthouse at dawn"), f"{key}-batch-1", 0),
        (invalid, None, 0),
        (dict(generate, prompt="a lighthouse in fog"), f"{key}-batch-2", 0),
        (generate, key, 0),
    ])
    check(len(batch) == 4, f"enqueue_many answered {len(batch)} results for 4 jobs")
    check(isinstance(batch[1], ImagegenError) and batch[1].code == "invalid_job", f"the invalid job gave {batch[1]!r}")
    batch_ids = []
    for index in (0, 2):
        result = batch[index]
        check(isinstance(result, tuple) and result[1], f"batch job {index} was not created: {result!r}")
        batch_ids.append(result[0])
    check(batch[3] == (generate_id, False), f"the known idempotency key in a batch gave {batch[3]!r}")

    deadline = time.monotonic() + args.timeout
    generated = wait_succeeded(client, generate_id, deadline)
    edited = wait_succeeded(client, edit_id, deadline)
    for job_id in batch_ids:
        wait_succeeded(client, job_id, deadline)
    outputs = save_outputs(client, "generate", generated, out_dir) + save_outputs(client, "edit", edited, out_dir)
    return {"generate": generate_id, "edit": edit_id, "batch": batch_ids, "outputs": outputs, "ok": True}


def main() -> int:
    """Parses the arguments, runs the example and reports; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True, help="Redis URL, e.g. redis://localhost:6379/0")
    parser.add_argument("--queue", default="default", help="queue name (default: default)")
    parser.add_argument("--image", required=True, help="image file to upload and edit")
    parser.add_argument("--out", required=True, help="directory to write the output images to")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for both jobs (default: 60)")
    args = parser.parse_args()
    try:
        summary = run(args)
    except (ExampleFailure, ImagegenError, redis.RedisError, OSError, ValueError) as error:
        print(f"example_enqueue: FAILED: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
