"""Writes the OTLP ingestion payload of the store benchmark: one protobuf ExportTraceServiceRequest
with SPANS spans of ~4.5 KB of attributes each (random keys 3-20 chars, values 5-300 chars, about
28 per span: the attribute load of the reference scenario's spans, algorithms.md §7.2).

The rollout and attempt ids are resource attributes with the placeholder values ro-000000000000
and at-00000000; loadgen patches in a real (same-length) pair before every request. No span
carries a sequence id, so the server allocates them, as for a runner's tracer.

With --text words the attribute values are drawn from a small vocabulary instead (the same
sizes): text that compresses about as well as real prompts and completions, to measure how the
store handles compressible spans (docs/performance.md, migration 0005).

Usage: python otlp_payload.py OUT [SPANS] [--text random|words]
"""

from __future__ import annotations

import random
import string
import sys

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

ALNUM = string.ascii_letters + string.digits


def kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


WORDS = ("the model answered that a tool call returned the list of files and the user asked for a "
         "summary of each file with its size in bytes and the time it was last changed json prompt "
         "completion role system assistant content tokens temperature reward").split()


def words(rng: random.Random, n: int) -> str:
    s = ""
    while len(s) < n:
        s += rng.choice(WORDS) + " "
    return s[:n]


def build(n_spans: int, seed: int = 7, text: str = "random") -> bytes:
    rng = random.Random(seed)
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([
        kv("service.name", "agl-bench"),
        kv("telemetry.sdk.language", "python"),
        kv("agentlightning.rollout_id", "ro-000000000000"),
        kv("agentlightning.attempt_id", "at-00000000"),
    ])
    ss = rs.scope_spans.add()
    ss.scope.name = "agl-bench"
    trace_id = rng.randbytes(16)
    t0 = 1_764_100_000_000_000_000
    for i in range(n_spans):
        sp: Span = ss.spans.add()
        sp.trace_id = trace_id
        sp.span_id = rng.randbytes(8)
        if i:
            sp.parent_span_id = ss.spans[0].span_id
        sp.name = f"round{i % 10}_{1 + i % 2}"
        sp.kind = Span.SPAN_KIND_INTERNAL
        sp.start_time_unix_nano = t0 + i * 1_000_000
        sp.end_time_unix_nano = t0 + i * 1_000_000 + 500_000
        size = 0
        k = 0
        # ~4.5 KB of attributes per span, in ~28 entries on average
        target = rng.randint(3500, 5500)
        while size < target:
            key = "attr." + "".join(rng.choices(ALNUM, k=rng.randint(3, 20)))
            n = rng.randint(5, 300)
            val = words(rng, n) if text == "words" else "".join(rng.choices(ALNUM, k=n))
            sp.attributes.append(kv(key, val))
            size += len(key) + len(val)
            k += 1
        sp.status.CopyFrom(Status(code=Status.STATUS_CODE_OK))
    return req.SerializeToString()


def main() -> int:
    args = sys.argv[1:]
    text = "random"
    if "--text" in args:
        i = args.index("--text")
        text = args[i + 1]
        del args[i:i + 2]
        if text not in ("random", "words"):
            raise SystemExit("otlp_payload: --text must be random or words")
    out = args[0]
    n = int(args[1]) if len(args) > 1 else 512
    data = build(n, text=text)
    with open(out, "wb") as f:
        f.write(data)
    print(f"{out}: {n} spans, {len(data)} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
