"""A small Python producer client for the imagegen Redis job queue.

The queue's contract is the Redis Functions library ``imagegen_v1``
(``Sources/RedisQueue/Scripts/imagegen.lua``); ``docs/enqueue.md`` describes it for any
language. This module only needs redis-py 4.3 or later (``pip install redis``; tested with 8.1)
and Python 3.11.

Example::

    import redis
    from imagegen_client import ImagegenClient

    client = ImagegenClient(redis.Redis.from_url("redis://localhost:6379"), queue="default")
    job_id, created = client.enqueue(
        {"version": 1, "user": "u1", "tier": "standard", "kind": "generate", "prompt": "a lighthouse"},
        idempotency_key="request-123",
    )
    record = client.wait(job_id, timeout=60)
    if record["state"] == "succeeded":
        png = client.get_output(record["result"]["outputs"][0]["key"])
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from redis.exceptions import ResponseError

__all__ = ["ImagegenClient", "ImagegenError", "FINISHED_STATES"]

#: Job states after which a job never changes again (only an operator can requeue a dead job).
FINISHED_STATES = frozenset({"succeeded", "failed", "canceled", "dead"})

#: The library shipped with this repository, relative to this file.
DEFAULT_LIBRARY_PATH = Path(__file__).resolve().parents[2] / "Sources" / "RedisQueue" / "Scripts" / "imagegen.lua"

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_BLOB_KEY = re.compile(r"[A-Za-z0-9:_.-]{1,200}")
# Job hash fields holding integers (the rest stay strings).
_INT_FIELDS = frozenset(
    {"attempts", "recoveries", "max_attempts", "created_ms", "updated_ms", "started_ms", "finished_ms", "lease_until"}
)
# Event fields holding integers.
_INT_EVENT_FIELDS = frozenset({"at", "attempt", "attempts", "recoveries", "due_ms"})


class ImagegenError(Exception):
    """An error reply of the queue library: ``IMAGEGEN <code> <message>``.

    ``code`` is machine-readable (``invalid_job``, ``payload_too_large``, ``fenced``,
    ``invalid_config``) and ``message`` says what is wrong. The client itself uses
    ``missing`` when :meth:`ImagegenClient.wait` is asked about a job that does not exist.
    """

    def __init__(self, code: str, message: str) -> None:
        """Creates the error from its code and message."""
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_reply(cls, error: ResponseError) -> ImagegenError | None:
        """The error an ``IMAGEGEN …`` error reply stands for, or ``None`` for any other error."""
        text = str(error)
        if not text.startswith("IMAGEGEN "):
            return None
        code, _, message = text[len("IMAGEGEN ") :].partition(" ")
        return cls(code, message)


def _text(value: Any) -> str:
    """A reply value as text (redis-py returns bytes unless ``decode_responses`` is set)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


class ImagegenClient:
    """Producer access to one imagegen queue: uploads, enqueue, status, cancel, events, outputs.

    ``redis_client`` is a ``redis.Redis`` (or ``redis.RedisCluster``) made *without*
    ``decode_responses=True``, since blobs are binary. ``queue`` is the queue name inside the
    hash tag of every key (``imagegen:{<queue>}``). ``library_path`` is the ``imagegen.lua`` to
    load when the server does not have the functions yet; by default the one in this repository.
    """

    def __init__(self, redis_client: Any, queue: str = "default", library_path: str | Path | None = None) -> None:
        """Wraps ``redis_client`` for the queue named ``queue``."""
        if not _QUEUE_NAME.fullmatch(queue):
            raise ValueError(f"queue name {queue!r}: 1-64 letters, digits, - or _")
        kwargs_of = getattr(redis_client, "get_connection_kwargs", None)
        kwargs = kwargs_of() if callable(kwargs_of) else {}
        if isinstance(kwargs, Mapping) and kwargs.get("decode_responses"):
            raise ValueError("the Redis client must not use decode_responses=True: blobs are binary")
        self.redis = redis_client
        self.queue = queue
        self.prefix = f"imagegen:{{{queue}}}"
        self.library_path = Path(library_path) if library_path is not None else DEFAULT_LIBRARY_PATH
        self._socket_timeout: float | None = kwargs.get("socket_timeout") if isinstance(kwargs, Mapping) else None

    # MARK: Keys

    @property
    def events_key(self) -> str:
        """The queue's event stream, ``imagegen:{<queue>}:events``."""
        return f"{self.prefix}:events"

    @property
    def nudge_channel(self) -> str:
        """The pub/sub channel with one ``"<type> <job id>"`` message per event."""
        return f"{self.prefix}:nudge"

    def job_key(self, job_id: str) -> str:
        """The hash holding job ``job_id``: ``imagegen:{<queue>}:job:<id>``."""
        return f"{self.prefix}:job:{job_id}"

    def blob_key(self, blob_key: str) -> str:
        """The Redis key of a blob: ``imagegen:{<queue>}:blob:<blob key>``.

        Raises ``ValueError`` when ``blob_key`` is not 1-200 of ``A-Z a-z 0-9 : _ . -`` (or starts
        with ``.`` or contains ``..``), the rule every blob store of the worker applies.
        """
        if not _BLOB_KEY.fullmatch(blob_key) or blob_key.startswith(".") or ".." in blob_key:
            raise ValueError(f"blob key {blob_key!r}: 1-200 of A-Z a-z 0-9 : _ . -")
        return f"{self.prefix}:blob:{blob_key}"

    # MARK: Library

    def load_library(self) -> str:
        """Loads (or replaces) the ``imagegen_v1`` library from ``library_path``; returns its name."""
        source = self.library_path.read_text(encoding="utf-8")
        return _text(self.redis.function_load(source, replace=True))

    def _call(self, function: str, *args: Any) -> Any:
        """``FCALL imagegen_v1_<function> 1 <prefix> <args…>``, loading the library once if missing."""
        name = f"imagegen_v1_{function}"
        for attempt in range(2):
            try:
                return self.redis.fcall(name, 1, self.prefix, *args)
            except ResponseError as error:
                mapped = ImagegenError.from_reply(error)
                if mapped is not None:
                    raise mapped from None
                if attempt == 0 and "function not found" in str(error).lower():
                    self.load_library()
                    continue
                raise
        raise AssertionError("unreachable")

    # MARK: Producer

    def put_upload(self, data: bytes, ttl_seconds: float = 14 * 24 * 3600) -> str:
        """Stores an input image and returns its blob key ``upload:<uuid4 hex>``.

        Written with ``SET <key> <bytes> PX <ms>``, so it expires after ``ttl_seconds``. Put the
        returned key in a job's ``inputs`` (or ``mask``).
        """
        key = f"upload:{uuid.uuid4().hex}"
        self.redis.set(self.blob_key(key), bytes(data), px=max(1, int(ttl_seconds * 1000)))
        return key

    def enqueue(self, spec: Mapping[str, Any], idempotency_key: str | None = None, delay_ms: int = 0) -> tuple[str, bool]:
        """Enqueues a job (job JSON v1, see ``docs/job.schema.json``); returns ``(job id, created)``.

        With an ``idempotency_key`` (at most 256 bytes), enqueueing again returns the first job's
        id and ``created=False``, without looking at ``spec``. ``delay_ms > 0`` holds the job back
        that long. Raises :class:`ImagegenError` (``invalid_job``, ``payload_too_large``).
        """
        payload = json.dumps(dict(spec), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        reply = self._call("enqueue", payload, idempotency_key or "", str(max(0, int(delay_ms))))
        return _text(reply[0]), int(reply[1]) == 1

    def enqueue_many(
        self, jobs: Sequence[tuple[Mapping[str, Any], str | None, int]]
    ) -> list[tuple[str, bool] | ImagegenError]:
        """Enqueues up to 1,000 jobs in one call (``imagegen_v1_enqueue_many``), each exactly as
        :meth:`enqueue` would, given as ``(spec, idempotency key or None, delay ms)``.

        Returns one entry per job, in order: ``(job id, created)``, or the :class:`ImagegenError`
        that refused that job (the others are enqueued all the same).
        """
        args: list[Any] = []
        for spec, idempotency_key, delay_ms in jobs:
            payload = json.dumps(dict(spec), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            args += [payload, idempotency_key or "", str(max(0, int(delay_ms)))]
        if not args:
            return []
        out: list[tuple[str, bool] | ImagegenError] = []
        for reply in self._call("enqueue_many", *args):
            if isinstance(reply, ResponseError):
                out.append(ImagegenError.from_reply(reply) or ImagegenError("protocol_error", str(reply)))
            else:
                out.append((_text(reply[0]), int(reply[1]) == 1))
        return out

    def status(self, job_id: str) -> dict[str, Any] | None:
        """The job's record, or ``None`` when it does not exist (or has expired).

        The fields of the job hash, decoded: integers for counters and ``*_ms`` times, ``result``
        parsed from JSON (when present), and no ``spec`` so callers do not echo prompts.
        """
        raw = self.redis.hgetall(self.job_key(job_id))
        if not raw:
            return None
        record: dict[str, Any] = {}
        for field, value in raw.items():
            name, text = _text(field), _text(value)
            if name == "spec":
                continue
            if name in _INT_FIELDS and text.lstrip("-").isdigit():
                record[name] = int(text)
            elif name == "result" and text:
                record[name] = json.loads(text)
            else:
                record[name] = text
        return record

    def cancel(self, job_id: str) -> str:
        """Cancels a job; returns the state it was in.

        ``queued`` or ``delayed`` (removed from the queue), ``active`` (its worker is told to
        stop and can no longer complete it), ``already_<state>`` when it had finished, or
        ``missing``.
        """
        return _text(self._call("cancel", job_id))

    def get_output(self, blob_key: str) -> bytes | None:
        """The bytes of an output (``output:<job id>:<index>``, from a result), or ``None`` if gone."""
        value = self.redis.get(self.blob_key(blob_key))
        return None if value is None else bytes(value)

    # MARK: Events

    def events(self, after: str = "0", block_ms: int | None = None, count: int = 100) -> list[dict[str, Any]]:
        """Events of the queue after stream id ``after`` (``"0"``: all kept; ``"$"``: only new).

        ``block_ms`` waits that long for the first event when there is none yet (``None``: do not
        wait; ``0``: wait forever). Each event is a dict with ``id`` (its stream id, to pass as
        ``after`` next time), ``type``, ``job``, ``user``, ``tier``, ``at`` (ms) and the fields of
        its type; a ``succeeded`` event's ``result`` is parsed from JSON.
        """
        reply = self.redis.xread({self.events_key: after}, count=count, block=block_ms)
        if not reply:
            return []
        if isinstance(reply, Mapping):  # RESP3: {stream: [entries]} (entries possibly nested once)
            entries = next(iter(reply.values()), [])
            if entries and isinstance(entries[0], list) and entries[0] and isinstance(entries[0][0], (list, tuple)):
                entries = entries[0]
        else:  # RESP2: [[stream, entries]]
            entries = reply[0][1]
        return [self._event(entry_id, fields) for entry_id, fields in entries]

    @staticmethod
    def _event(entry_id: Any, fields: Any) -> dict[str, Any]:
        """One stream entry as an event dict."""
        if not isinstance(fields, Mapping):
            fields = dict(zip(fields[::2], fields[1::2]))
        event: dict[str, Any] = {"id": _text(entry_id)}
        for field, value in fields.items():
            name, text = _text(field), _text(value)
            if name in _INT_EVENT_FIELDS and text.lstrip("-").isdigit():
                event[name] = int(text)
            elif name == "result" and text:
                try:
                    event[name] = json.loads(text)
                except ValueError:
                    event[name] = text
            else:
                event[name] = text
        return event

    def last_event_id(self) -> str:
        """The stream id of the newest event (``"0"`` when there is none): a resume point."""
        newest = self.redis.xrevrange(self.events_key, "+", "-", count=1)
        return _text(newest[0][0]) if newest else "0"

    def wait(self, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Waits until the job has finished (succeeded, failed, canceled or dead); returns its status.

        Pins the stream's current end, reads the status, then blocks on the event stream and
        re-reads the status whenever an event of this job arrives (and at least every few
        seconds). Raises ``TimeoutError`` after ``timeout`` seconds and
        :class:`ImagegenError` with code ``missing`` when the job does not exist.
        """
        deadline = time.monotonic() + timeout
        last = self.last_event_id()
        slice_s = 2.0
        if self._socket_timeout:
            slice_s = min(slice_s, self._socket_timeout / 2)
        recheck = True
        while True:
            if recheck:
                record = self.status(job_id)
                if record is None:
                    raise ImagegenError("missing", f"job {job_id} does not exist or has expired")
                if record.get("state") in FINISHED_STATES:
                    return record
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"job {job_id} still {record.get('state')} after {timeout:.1f} s")
            events = self.events(after=last, block_ms=max(1, int(min(remaining, slice_s) * 1000)), count=500)
            if events:
                last = events[-1]["id"]
            # Woken by this job's event, or a quiet slice passed (the stream may have been trimmed).
            recheck = not events or any(event.get("job") == job_id for event in events)
