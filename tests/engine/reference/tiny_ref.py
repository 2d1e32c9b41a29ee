#!/usr/bin/env python3
"""Independent float64 reference forward passes for QEval's engine tests (stdlib only).

Rebuilds the tiny deterministic models of tests/engine/tiny_model.cpp (same splitmix64
weights, dyadic values exact in float32 and float64) and computes logits the way HF
transformers defines each architecture: llama (rotate_half RoPE), llama3 rope scaling,
mistral (sliding window), qwen2 (QKV bias), qwen3 (per-head RMSNorm on q and k before RoPE),
gpt2 (LayerNorm with bias, learned positions, GELU-tanh, biases everywhere).

    python3 tests/engine/reference/tiny_ref.py > tests/engine/data/tiny_ref.json
"""
import json
import math
import sys

MASK = (1 << 64) - 1
SEED = 20250101
TOKENS = [1, 5, 9, 20, 33, 2, 7, 7, 14, 36, 0, 11]


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def stream(seed, name):
    h = 0xCBF29CE484222325
    for ch in name.encode():
        h ^= ch
        h = (h * 0x100000001B3) & MASK
    return h ^ seed


def values(seed, name, n, scale, offset=0.0):
    st = stream(seed, name)
    out = []
    for _ in range(n):
        st, x = splitmix64(st)
        k = x % 513 - 256
        out.append(offset + k / 256.0 * scale)
    return out


def matrix(seed, name, rows, cols, scale):
    v = values(seed, name, rows * cols, scale)
    return [v[r * cols:(r + 1) * cols] for r in range(rows)]


def config(arch):
    c = dict(architecture=arch, vocab_size=37, hidden_size=16, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=4,
             rope_dim=4, ffn_size=24, context_length=64, norm_eps=1e-5, rope_theta=10000.0, norm="rms",
             position="rope", activation="silu", gated_ffn=True, qkv_bias=False, qk_norm=False,
             attn_out_bias=False, ffn_bias=False, tied_embeddings=False, sliding_window=0, rope_scaling=None)
    if arch == "llama3":
        c.update(n_kv_heads=1, rope_theta=500000.0,
                 rope_scaling=dict(type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                   original_context=16))
    elif arch == "mistral":
        c.update(sliding_window=5)
    elif arch == "qwen2":
        c.update(qkv_bias=True, tied_embeddings=True, rope_theta=1000000.0, norm_eps=1e-6)
    elif arch == "qwen3":
        c.update(qk_norm=True, head_dim=8, rope_dim=8, norm_eps=1e-6, rope_theta=1000000.0)
    elif arch == "gpt2":
        c.update(norm="layer", position="learned", activation="gelu_tanh", gated_ffn=False, qkv_bias=True,
                 attn_out_bias=True, ffn_bias=True, n_kv_heads=4, tied_embeddings=True, ffn_size=64,
                 context_length=32)
    return c


def build(c, seed):
    H, V, F = c["hidden_size"], c["vocab_size"], c["ffn_size"]
    qd, kd = c["n_heads"] * c["head_dim"], c["n_kv_heads"] * c["head_dim"]
    ln = c["norm"] == "layer"
    w = {}
    w["token_embd.weight"] = matrix(seed, "token_embd.weight", V, H, 0.5)
    if c["position"] == "learned":
        w["position_embd.weight"] = matrix(seed, "position_embd.weight", c["context_length"], H, 0.25)
    for l in range(c["n_layers"]):
        b = "blk.%d." % l
        w[b + "attn_norm.weight"] = values(seed, b + "attn_norm.weight", H, 0.125, 1.0)
        w[b + "ffn_norm.weight"] = values(seed, b + "ffn_norm.weight", H, 0.125, 1.0)
        if ln:
            w[b + "attn_norm.bias"] = values(seed, b + "attn_norm.bias", H, 0.125)
            w[b + "ffn_norm.bias"] = values(seed, b + "ffn_norm.bias", H, 0.125)
        w[b + "attn_q.weight"] = matrix(seed, b + "attn_q.weight", qd, H, 0.25)
        w[b + "attn_k.weight"] = matrix(seed, b + "attn_k.weight", kd, H, 0.25)
        w[b + "attn_v.weight"] = matrix(seed, b + "attn_v.weight", kd, H, 0.25)
        w[b + "attn_output.weight"] = matrix(seed, b + "attn_output.weight", H, qd, 0.25)
        if c["qkv_bias"]:
            w[b + "attn_q.bias"] = values(seed, b + "attn_q.bias", qd, 0.125)
            w[b + "attn_k.bias"] = values(seed, b + "attn_k.bias", kd, 0.125)
            w[b + "attn_v.bias"] = values(seed, b + "attn_v.bias", kd, 0.125)
        if c["attn_out_bias"]:
            w[b + "attn_output.bias"] = values(seed, b + "attn_output.bias", H, 0.125)
        if c["qk_norm"]:
            w[b + "attn_q_norm.weight"] = values(seed, b + "attn_q_norm.weight", c["head_dim"], 0.125, 1.0)
            w[b + "attn_k_norm.weight"] = values(seed, b + "attn_k_norm.weight", c["head_dim"], 0.125, 1.0)
        if c["gated_ffn"]:
            w[b + "ffn_gate.weight"] = matrix(seed, b + "ffn_gate.weight", F, H, 0.25)
        w[b + "ffn_up.weight"] = matrix(seed, b + "ffn_up.weight", F, H, 0.25)
        w[b + "ffn_down.weight"] = matrix(seed, b + "ffn_down.weight", H, F, 0.25)
        if c["ffn_bias"]:
            if c["gated_ffn"]:
                w[b + "ffn_gate.bias"] = values(seed, b + "ffn_gate.bias", F, 0.125)
            w[b + "ffn_up.bias"] = values(seed, b + "ffn_up.bias", F, 0.125)
            w[b + "ffn_down.bias"] = values(seed, b + "ffn_down.bias", H, 0.125)
    w["output_norm.weight"] = values(seed, "output_norm.weight", H, 0.125, 1.0)
    if ln:
        w["output_norm.bias"] = values(seed, "output_norm.bias", H, 0.125)
    w["output.weight"] = w["token_embd.weight"] if c["tied_embeddings"] else matrix(seed, "output.weight", V, H, 0.25)
    return w


def linear(x, W, b=None):
    y = [sum(wi * xi for wi, xi in zip(row, x)) for row in W]
    if b is not None:
        y = [a + c for a, c in zip(y, b)]
    return y


def rmsnorm(x, w, eps):
    s = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [v * s * g for v, g in zip(x, w)]


def layernorm(x, w, b, eps):
    m = sum(x) / len(x)
    var = sum((v - m) ** 2 for v in x) / len(x)
    s = 1.0 / math.sqrt(var + eps)
    return [(v - m) * s * g + c for v, g, c in zip(x, w, b)]


def inv_freqs(c):
    d = c["rope_dim"]
    f = [c["rope_theta"] ** (-2.0 * i / d) for i in range(d // 2)]
    rs = c["rope_scaling"]
    if rs and rs["type"] == "llama3":
        old = rs["original_context"]
        lo_wl, hi_wl = old / rs["low_freq_factor"], old / rs["high_freq_factor"]
        out = []
        for fr in f:
            wl = 2 * math.pi / fr
            if wl < hi_wl:
                out.append(fr)
            elif wl > lo_wl:
                out.append(fr / rs["factor"])
            else:
                sm = (old / wl - rs["low_freq_factor"]) / (rs["high_freq_factor"] - rs["low_freq_factor"])
                out.append((1 - sm) * fr / rs["factor"] + sm * fr)
        f = out
    return f


def rope(vec, n_heads, hd, rd, pos, freqs):
    out = list(vec)
    half = rd // 2
    for h in range(n_heads):
        o = h * hd
        for i in range(half):
            a, b = vec[o + i], vec[o + i + half]
            ang = pos * freqs[i]
            out[o + i] = a * math.cos(ang) - b * math.sin(ang)
            out[o + i + half] = a * math.sin(ang) + b * math.cos(ang)
    return out


def silu(x):
    return x / (1.0 + math.exp(-x))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(c, w, tokens):
    H, hd, nh, nkv = c["hidden_size"], c["head_dim"], c["n_heads"], c["n_kv_heads"]
    ln = c["norm"] == "layer"
    eps = c["norm_eps"]
    freqs = inv_freqs(c) if c["position"] == "rope" else None
    xs = []
    for p, t in enumerate(tokens):
        x = list(w["token_embd.weight"][t])
        if c["position"] == "learned":
            x = [a + b for a, b in zip(x, w["position_embd.weight"][p])]
        xs.append(x)

    def norm(x, name):
        if ln:
            return layernorm(x, w[name + ".weight"], w[name + ".bias"], eps)
        return rmsnorm(x, w[name + ".weight"], eps)

    def lin(x, name):
        return linear(x, w[name + ".weight"], w.get(name + ".bias"))

    group = nh // nkv
    for l in range(c["n_layers"]):
        b = "blk.%d." % l
        qs, ks, vs = [], [], []
        for p, x in enumerate(xs):
            h = norm(x, b + "attn_norm")
            q, k, v = lin(h, b + "attn_q"), lin(h, b + "attn_k"), lin(h, b + "attn_v")
            if c["qk_norm"]:
                q = sum((rmsnorm(q[i * hd:(i + 1) * hd], w[b + "attn_q_norm.weight"], eps) for i in range(nh)), [])
                k = sum((rmsnorm(k[i * hd:(i + 1) * hd], w[b + "attn_k_norm.weight"], eps) for i in range(nkv)), [])
            if freqs is not None:
                q = rope(q, nh, hd, c["rope_dim"], p, freqs)
                k = rope(k, nkv, hd, c["rope_dim"], p, freqs)
            qs.append(q), ks.append(k), vs.append(v)
        new = []
        for p, x in enumerate(xs):
            att = []
            for h in range(nh):
                kh = h // group
                q = qs[p][h * hd:(h + 1) * hd]
                allowed = [t for t in range(p + 1) if not (c["sliding_window"] and p - t >= c["sliding_window"])]
                sc = [sum(a * bb for a, bb in zip(q, ks[t][kh * hd:(kh + 1) * hd])) / math.sqrt(hd) for t in allowed]
                m = max(sc)
                e = [math.exp(s - m) for s in sc]
                z = sum(e)
                att += [sum(e[j] / z * vs[t][kh * hd + i] for j, t in enumerate(allowed)) for i in range(hd)]
            o = lin(att, b + "attn_output")
            x = [a + bb for a, bb in zip(x, o)]
            h = norm(x, b + "ffn_norm")
            if c["gated_ffn"]:
                g, u = lin(h, b + "ffn_gate"), lin(h, b + "ffn_up")
                act = silu if c["activation"] == "silu" else gelu_tanh
                a = [act(gi) * ui for gi, ui in zip(g, u)]
            else:
                u = lin(h, b + "ffn_up")
                a = [silu(v) if c["activation"] == "silu" else gelu_tanh(v) for v in u]
            d = lin(a, b + "ffn_down")
            new.append([xx + dd for xx, dd in zip(x, d)])
        xs = new
    return [linear(norm(x, "output_norm"), w["output.weight"], w.get("output.bias")) for x in xs]


def main():
    out = {"generator": "tests/engine/reference/tiny_ref.py", "seed": SEED, "tokens": TOKENS, "models": []}
    for arch in ["llama", "llama3", "mistral", "qwen2", "qwen3", "gpt2"]:
        c = config(arch)
        logits = forward(c, build(c, SEED), TOKENS)
        out["models"].append({"name": arch, "config": c, "logits": [[float("%.12g" % v) for v in row] for row in logits]})
    json.dump(out, sys.stdout, indent=None, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
