"""Incremental streaming of `trainerd serve` (`stream: true`).

* Each token's SSE chunk leaves the server as the engine samples it: with a long generation the
  first chunk arrives well before the last (relative arrival times, no absolute bounds).
* The streamed chunks concatenate to the non-streamed response with the same seed (text, ids,
  finish/stop reasons, log-probs), for completions and chat, n > 1 and multi-character stop
  strings (whose partial matches are held back until they resolve).
* A client that disconnects mid-stream cancels its sequences: the server stays healthy, stops
  generating for it (the token count stays below the abandoned max_tokens) and exits cleanly.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import openai
import pytest
import requests

from test_rl_store import Serve

# random weights, a context long enough for slow, long generations
CONFIG = {
    "model_type": "qwen2", "vocab_size": 16, "hidden_size": 256, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
    "intermediate_size": 704, "max_position_embeddings": 4096, "rope_theta": 10000.0,
    "rms_norm_eps": 1e-6, "attention_bias": True, "tie_word_embeddings": True,
    "agl_tokenizer": "chars:0123456789=",
}


@pytest.fixture
def served(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(CONFIG))
    s = Serve(cfg, "--max-batch", "8", "--serve-log", str(tmp_path / "serve.jsonl"))
    yield s
    s.stop()


def events(resp):
    """(arrival time, parsed event) per SSE `data:` line; the payload "[DONE]" stays a string."""
    out = []
    for line in resp.iter_lines():
        if not line:
            continue
        assert line.startswith(b"data: "), line
        data = line[6:].decode()
        out.append((time.monotonic(), data if data == "[DONE]" else json.loads(data)))
    return out


def post(server, path, body, **kw):
    return requests.post(server.url + path, json=body, stream=True, timeout=120, **kw)


def test_chunks_arrive_as_generated(served):
    body = dict(model="policy", prompt="12=", max_tokens=3000, ignore_eos=True, seed=3,
                temperature=1.0, stream=True)
    t0 = time.monotonic()
    with post(served, "/completions", body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers.get("transfer-encoding") == "chunked"
        ev = events(r)
    assert ev[-1][1] == "[DONE]"
    toks = [(t, e) for t, e in ev if e != "[DONE]"]
    assert len(toks) == 3000
    assert all(len(e["choices"][0]["token_ids"]) == 1 for _, e in toks)
    first, last = toks[0][0] - t0, toks[-1][0] - t0
    # one token of 3000 vs all of them: the first chunk did not wait for the end of generation
    assert first < last / 4, (first, last)
    # and the chunks are spread over the generation, not sent in one burst at the end
    mid = toks[len(toks) // 2][0] - t0
    assert first < mid < last


def joined(ev, chat):
    """Per choice index: text, token ids, finish_reason, stop_reason, log-prob entries."""
    ch = {}
    for e in ev:
        if e == "[DONE]" or not e["choices"]:
            continue
        c = e["choices"][0]
        d = ch.setdefault(c["index"], dict(text="", ids=[], finish=None, stop=None, lp=[]))
        d["text"] += (c["delta"].get("content") or "") if chat else c["text"]
        d["ids"] += c.get("token_ids") or []
        if c.get("finish_reason"):
            assert d["finish"] is None  # only the last chunk of a choice has it
            d["finish"], d["stop"] = c["finish_reason"], c.get("stop_reason")
        if c.get("logprobs"):
            lp = c["logprobs"]
            d["lp"] += lp["content"] if chat else lp["token_logprobs"]
    return ch


@pytest.mark.parametrize("chat", [False, True])
def test_stream_equals_non_streamed(served, chat):
    body = dict(model="policy", max_tokens=200, n=3, seed=5, temperature=1.0, ignore_eos=True,
                stop=["22", "333", "9=9"], stream_options={"include_usage": True})
    if chat:
        body.update(messages=[{"role": "user", "content": "12="}], logprobs=True, top_logprobs=2)
        path = "/chat/completions"
    else:
        body.update(prompt="12=", logprobs=2)
        path = "/completions"
    full = requests.post(served.url + path, json=body, timeout=120).json()
    with post(served, path, dict(body, stream=True)) as r:
        ev = [e for _, e in events(r)]
    assert ev[-1] == "[DONE]" and ev[-2]["usage"] == full["usage"] and ev[-2]["choices"] == []
    got = joined(ev[:-1], chat)
    assert sorted(got) == [0, 1, 2]
    stopped = 0
    for c in full["choices"]:
        g = got[c["index"]]
        assert g["text"] == (c["message"]["content"] if chat else c["text"])
        assert g["ids"] == c["token_ids"]
        assert (g["finish"], g["stop"]) == (c["finish_reason"], c["stop_reason"])
        want = c["logprobs"]["content"] if chat else c["logprobs"]["token_logprobs"]
        assert g["lp"] == want
        stopped += isinstance(c["stop_reason"], str)
    assert stopped  # the stop strings (held back while partially matched) were exercised
    if chat:  # the role chunks come first, choice 0's with the prompt ids
        assert [e["choices"][0]["delta"].get("role") for e in ev[:3]] == ["assistant"] * 3
        assert ev[0]["prompt_token_ids"] == full["prompt_token_ids"]
    else:  # each choice's first chunk carries the prompt ids, no other chunk does
        seen = set()
        for e in ev[:-2]:
            c = e["choices"][0]
            assert ("prompt_token_ids" in c) == (c["index"] not in seen)
            if c["index"] not in seen:
                assert c["prompt_token_ids"] == full["choices"][c["index"]]["prompt_token_ids"]
            seen.add(c["index"])


def test_openai_sdk_stream(served):
    c = openai.OpenAI(base_url=served.url, api_key="none", max_retries=0)
    kw = dict(model="policy", prompt="7=", max_tokens=40, seed=9, ignore_eos=True)
    full = c.completions.create(**{k: v for k, v in kw.items() if k != "ignore_eos"},
                                extra_body={"ignore_eos": True})
    text, ids = "", []
    for chunk in c.completions.create(stream=True, model="policy", prompt="7=", max_tokens=40,
                                      seed=9, extra_body={"ignore_eos": True}):
        text += chunk.choices[0].text
        ids += chunk.choices[0].model_extra["token_ids"]
    assert text == full.choices[0].text and ids == full.choices[0].model_extra["token_ids"]
    assert len(ids) == 40


def test_disconnect_mid_stream_cancels(served, tmp_path):
    body = dict(model="policy", prompt="3=", max_tokens=4000, ignore_eos=True, seed=1,
                stream=True, n=2)

    def abandon():
        with post(served, "/completions", body) as r:
            assert r.status_code == 200
            got = 0
            for line in r.iter_lines():
                got += line.startswith(b"data: ")
                if got >= 5:
                    break  # closes the connection mid-stream

    threads = [threading.Thread(target=abandon) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    # requests still queued behind a full batch (--max-batch 8) whose clients leave
    with post(served, "/completions", dict(body, n=8)) as busy:
        next(busy.iter_lines())  # the batch is full now
        host, port = served.url.split("//")[1].split("/")[0].rsplit(":", 1)
        socks = []
        for _ in range(3):
            s = socket.create_connection((host, int(port)))
            req = json.dumps(dict(body, max_tokens=50)).encode()
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(req), req))
            socks.append(s)
        for s in socks:
            assert s.recv(12).startswith(b"HTTP/1.1 200")  # headers: the job is queued
            s.close()
        time.sleep(1)  # let the server notice them while they are still queued
    assert requests.get(served.url.rsplit("/v1", 1)[0] + "/health", timeout=10).json() == \
        {"status": "ok"}
    # the server keeps serving, streamed and not
    r = requests.post(served.url + "/completions", timeout=60,
                      json=dict(model="policy", prompt="3=", max_tokens=10, ignore_eos=True))
    assert len(r.json()["choices"][0]["token_ids"]) == 10
    with post(served, "/completions", dict(body, max_tokens=10, n=1)) as r:
        ev = [e for _, e in events(r)]
    assert ev[-1] == "[DONE]" and len(ev) == 11
    out = served.stop()
    served.stop = lambda: None  # the fixture's stop
    # "stopped by signal N after R requests, T tokens": the abandoned (4 x 2 + 8) x 4000 tokens were
    # not generated; only completed responses count and are logged
    line = [x for x in out.splitlines() if "stopped by signal" in x][-1]
    reqs, toks = int(line.split(" after ")[1].split()[0]), int(line.split(", ")[-1].split()[0])
    assert reqs == 2
    assert toks < 16 * 4000 / 4, out
    logged = (tmp_path / "serve.jsonl").read_text().splitlines()
    assert len(logged) == 2
