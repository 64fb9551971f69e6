"""trainerd rl/sft against an independent numpy reference (issue 8).

`trainerd rl --dump-check DIR` writes a random Qwen2-style model (model.safetensors, HF tensor
names) and a batch with its C-computed log-probs, entropies, softmax, GRPO loss and dL/dlogp
(check.safetensors). Here numpy re-implements the decoder from the architecture (RMSNorm,
half-split RoPE, GQA, SwiGLU) and GRPO from verl's definitions, reading the same files.
Tolerances: forward 2e-4 absolute on log-probs (fp32 C vs float64 numpy), loss 1e-5 relative.
Also: `trainerd sft` resumed from a checkpoint is bitwise equal to an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def trainerd() -> str:
    build = os.environ.get("AGL_BUILD", "build")
    if not os.path.isabs(build):
        build = os.path.join(REPO, build)
    return os.path.join(build, "bin", "trainerd")


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    hdr = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = hdr.pop("__metadata__", {})
    out, spans = {}, []
    for name, e in hdr.items():
        assert e["dtype"] == "F32"
        b0, b1 = e["data_offsets"]
        spans.append((b0, b1))
        out[name] = np.frombuffer(data[b0:b1], dtype="<f4").reshape(e["shape"]).astype(np.float64)
    spans.sort()  # the format requires a hole-free data buffer
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert spans[-1][1] == len(data) and (8 + n) % 8 == 0
    return out, meta


def rmsnorm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rope(x, theta):  # x: (B, T, heads, D), HF rotate_half convention
    D = x.shape[-1]
    T = x.shape[1]
    inv = theta ** (-np.arange(0, D // 2) * 2.0 / D)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, -1)[None, :, None, :]
    sin = np.concatenate([np.sin(ang)] * 2, -1)[None, :, None, :]
    rot = np.concatenate([-x[..., D // 2:], x[..., :D // 2]], -1)
    return x * cos + rot * sin


def forward(W, cfg, tokens):
    B, T = tokens.shape
    H, KV, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    x = W["model.embed_tokens.weight"][tokens]
    mask = np.tril(np.ones((T, T), bool))
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)

        def proj(name, n):
            y = h @ W[p + f"self_attn.{name}_proj.weight"].T
            if cfg["attention_bias"]:
                y = y + W[p + f"self_attn.{name}_proj.bias"]
            return y.reshape(B, T, n, D)

        q, k, v = rope(proj("q", H), theta), rope(proj("k", KV), theta), proj("v", KV)
        k = np.repeat(k, H // KV, axis=2)
        v = np.repeat(v, H // KV, axis=2)
        s = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(D)
        s = np.where(mask, s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = np.einsum("bhts,bshd->bthd", s, v).reshape(B, T, H * D)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    z = x @ head.T
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))  # log-softmax


def advantages(r, g, norm_std, eps):
    a = np.zeros_like(r)
    for gid in np.unique(g):
        idx = g == gid
        if idx.sum() == 1:
            mean, sd = 0.0, 1.0
        else:
            mean, sd = r[idx].mean(), r[idx].std(ddof=1)  # torch.std is Bessel-corrected
        a[idx] = (r[idx] - mean) / (sd + eps) if norm_std else r[idx] - mean
    return a


def grpo_loss(logp, old, ref, adv, mask, m):
    """verl compute_policy_loss_vanilla + kl_penalty + agg_loss, float64."""
    A = adv[:, None]
    lr = np.clip(logp - old, -20, 20)
    ratio = np.exp(lr)
    l1 = -A * ratio
    l2 = -A * np.clip(ratio, 1 - m["clip_low"], 1 + m["clip_high"])
    l = np.maximum(l1, l2)
    if m["clip_c"] > 1:
        l = np.where(A < 0, np.minimum(l, -A * m["clip_c"]), l)
    if m["kl"] == 1:
        l = l + m["kl_coef"] * (logp - ref)
    elif m["kl"] == 2:
        d = np.clip(ref - logp, -20, 20)
        l = l + m["kl_coef"] * np.clip(np.exp(d) - d - 1, -10, 10)
    seq_len = mask.sum(1)
    if m["agg"] == 0:  # token-mean
        return (l * mask).sum() / mask.sum()
    nonempty = seq_len > 0
    per_seq = (l * mask).sum(1)
    if m["agg"] == 1:  # seq-mean-token-sum
        return per_seq[nonempty].sum() / len(seq_len)
    return (per_seq[nonempty] / seq_len[nonempty]).sum() / len(seq_len)  # seq-mean-token-mean


CASES = [
    ("bias-untied", {"attention_bias": True, "tie_word_embeddings": False}, []),
    ("tied-k3-seqmean", {"attention_bias": False, "tie_word_embeddings": True},
     ["--kl", "k3", "--kl-coef", "0.1", "--agg", "seq-mean-token-mean"]),
    ("k1-tokensum-drgrpo", {"attention_bias": True, "tie_word_embeddings": True},
     ["--kl", "k1", "--kl-coef", "0.05", "--agg", "seq-mean-token-sum", "--no-std",
      "--clip-high", "0.28"]),
]


@pytest.mark.parametrize("name,flags,extra", CASES, ids=[c[0] for c in CASES])
def test_forward_and_grpo_match_numpy(tmp_path, name, flags, extra):
    cfg = {"vocab_size": 13, "hidden_size": 24, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
           "intermediate_size": 40, "max_position_embeddings": 12, "rope_theta": 10000.0,
           "rms_norm_eps": 1e-6, "agl_tokenizer": "chars:0123456789"}
    cfg.update(flags)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "dump"
    subprocess.run([trainerd(), "rl", "--model", str(tmp_path / "config.json"), "--dump-check",
                    str(out), "--prompts", "3", "--group", "4", "--seed", "5"] + extra,
                   check=True, timeout=60)
    W, meta = read_safetensors(out / "model.safetensors")
    saved_cfg = json.loads(meta["agl"])
    assert saved_cfg["num_key_value_heads"] == 2
    C, _ = read_safetensors(out / "check.safetensors")
    m = json.loads(_["agl"])
    tokens = C["tokens"].astype(int)
    targets = C["targets"].astype(int)
    logsm = forward(W, cfg, tokens)
    # the C side stores softmax probabilities and target log-probs
    np.testing.assert_allclose(C["prob"], np.exp(logsm), atol=2e-5)
    ref_logp = np.where(targets >= 0,
                        np.take_along_axis(logsm, np.maximum(targets, 0)[..., None], -1)[..., 0],
                        0.0)
    np.testing.assert_allclose(C["logp"], ref_logp, atol=2e-4)
    ent = -(np.exp(logsm) * logsm).sum(-1)
    np.testing.assert_allclose(C["entropy"], ent, atol=2e-4)
    adv = advantages(C["rewards"], C["groups"].astype(int), m["norm_std"], m["adv_eps"])
    np.testing.assert_allclose(C["adv"], adv, rtol=1e-5, atol=1e-6)
    # GRPO on the C log-probs (isolates the loss from forward rounding)
    loss = grpo_loss(C["logp"], C["old_logp"], C["ref_logp"], C["adv"], C["mask"], m)
    assert abs(C["loss"][0] - loss) <= 1e-5 * max(1.0, abs(loss)), (C["loss"][0], loss)
    # dL/dlogp by central differences of the numpy loss
    lp = C["logp"].copy()
    idx = np.argwhere(C["mask"] > 0)
    for b, t in idx[:: max(1, len(idx) // 12)]:
        h = 1e-6
        lp[b, t] += h
        up = grpo_loss(lp, C["old_logp"], C["ref_logp"], C["adv"], C["mask"], m)
        lp[b, t] -= 2 * h
        dn = grpo_loss(lp, C["old_logp"], C["ref_logp"], C["adv"], C["mask"], m)
        lp[b, t] += h
        assert abs((up - dn) / (2 * h) - C["dlogp"][b, t]) < 1e-4, (b, t)


def test_sft_resume_is_bitwise(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i:03d}=", "response": f"{i:03d}"[::-1]}) + "\n"
                            for i in range(50)))
    cfg = os.path.join(REPO, "examples", "rl", "model_tiny.json")
    common = ["--train", str(data), "--batch", "8", "--lr", "1e-2", "--seed", "3", "--quiet",
              "--wd", "0.01"]
    subprocess.run([trainerd(), "sft", "--model", cfg, "--steps", "6", "--out",
                    str(tmp_path / "full")] + common, check=True, timeout=60)
    subprocess.run([trainerd(), "sft", "--model", cfg, "--steps", "3", "--out",
                    str(tmp_path / "half")] + common, check=True, timeout=60)
    subprocess.run([trainerd(), "sft", "--resume", str(tmp_path / "half"), "--steps", "6",
                    "--out", str(tmp_path / "resumed")] + common, check=True, timeout=60)
    a = (tmp_path / "full" / "model.safetensors").read_bytes()
    b = (tmp_path / "resumed" / "model.safetensors").read_bytes()
    h = (tmp_path / "half" / "model.safetensors").read_bytes()
    assert a == b and a != h
    assert (tmp_path / "full" / "trainer_state.bin").read_bytes() == \
        (tmp_path / "resumed" / "trainer_state.bin").read_bytes()
