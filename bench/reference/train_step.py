"""PyTorch CPU reference for bench/train.ts: the same LoRA PPO update on the same checkpoint.

Loads the HF-format safetensors checkpoint written by writeTinyModel and the PEFT adapter Fulgur
saved, runs a plain Qwen2 forward in float32 (adapted from
test/fixtures/torch-reference/torch_forward.py, batched), the PPO clipped surrogate with
token-mean aggregation, backward into the LoRA A/B tensors only, global grad-norm clipping and
AdamW — the update Fulgur's policyGradients + Optimizer.apply performs. Times each update and
prints one JSON object on stdout.

Usage: python3 train_step.py <model_dir> <adapter_dir> <batch.json> <threads>
batch.json: {"samples": [{"tokens", "lossMask", "oldLogprobs", "advantage"}...], "temperature",
"clipLow", "clipHigh", "lr", "maxGradNorm", "steps"}. Every sample must have the same length.
"""
import json
import math
import os
import struct
import sys
import time

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def load_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = bytearray(data[begin:end])
        t = torch.frombuffer(raw, dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = t.to(torch.float32)
    return out


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
        weights = {}
        for f in files:
            weights.update(load_safetensors(os.path.join(model_dir, f)))
        return weights
    return load_safetensors(os.path.join(model_dir, "model.safetensors"))


def rms_norm(x, w, eps):
    variance = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(variance + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def repeat_kv(x, n_rep):
    b, kvh, t, d = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, kvh, n_rep, t, d).reshape(b, kvh * n_rep, t, d)


def forward(cfg, w, lora, ids):
    """Logits [B, T, V] of a Qwen2 model with PEFT LoRA on whichever projections `lora` holds."""
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads", heads)
    head_dim = cfg.get("head_dim") or hidden // heads
    eps = cfg["rms_norm_eps"]
    scaling = lora["scaling"]

    def linear(x, layer, block, proj, has_bias):
        prefix = f"model.layers.{layer}.{block}.{proj}"
        y = x @ w[prefix + ".weight"].T
        if has_bias:
            y = y + w[prefix + ".bias"]
        a = lora["params"].get(f"base_model.model.{prefix}.lora_A.weight")
        if a is not None:
            b = lora["params"][f"base_model.model.{prefix}.lora_B.weight"]
            y = y + (x @ a.T) @ b.T * scaling
        return y

    B, T = ids.shape
    x = w["model.embed_tokens.weight"][ids]
    base = cfg.get("rope_theta", 10000.0)
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None, None], emb.sin()[None, None]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(cfg["num_hidden_layers"]):
        residual = x
        h = rms_norm(x, w[f"model.layers.{l}.input_layernorm.weight"], eps)
        q = linear(h, l, "self_attn", "q_proj", True).view(B, T, heads, head_dim).transpose(1, 2)
        k = linear(h, l, "self_attn", "k_proj", True).view(B, T, kv_heads, head_dim).transpose(1, 2)
        v = linear(h, l, "self_attn", "v_proj", True).view(B, T, kv_heads, head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = repeat_kv(k, heads // kv_heads)
        v = repeat_kv(v, heads // kv_heads)
        scores = q @ k.transpose(2, 3) / math.sqrt(head_dim) + mask
        attn = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, heads * head_dim)
        x = residual + linear(attn, l, "self_attn", "o_proj", False)
        residual = x
        h = rms_norm(x, w[f"model.layers.{l}.post_attention_layernorm.weight"], eps)
        gate = linear(h, l, "mlp", "gate_proj", False)
        up = linear(h, l, "mlp", "up_proj", False)
        x = residual + linear(torch.nn.functional.silu(gate) * up, l, "mlp", "down_proj", False)
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T


def ppo_loss(logits, batch, tokens, mask, old, adv):
    """Token-mean PPO clipped surrogate; row t−1 of the logits predicts token t."""
    T = batch["temperature"]
    logp = torch.log_softmax(logits[:, :-1] / T, dim=-1)
    lp = logp.gather(-1, tokens[:, 1:, None])[..., 0]
    m, o, a = mask[:, 1:], old[:, 1:], adv[:, None]
    ratio = torch.exp(lp - o)
    clipped = torch.clamp(ratio, 1 - batch["clipLow"], 1 + batch["clipHigh"])
    obj = torch.minimum(ratio * a, clipped * a)
    return -(obj * m).sum() / m.sum()


def matmul_gflops(n=512, repeats=5):
    """This torch build's f32 matmul rate: tells how fast its BLAS is (Debian's is the reference one)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def main():
    model_dir, adapter_dir, batch_path, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(threads)
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    arch = cfg["architectures"][0]
    if arch != "Qwen2ForCausalLM":
        raise SystemExit(f"train_step.py handles Qwen2ForCausalLM checkpoints, got {arch}")
    batch = json.load(open(batch_path))
    samples = batch["samples"]
    lengths = {len(s["tokens"]) for s in samples}
    if len(lengths) != 1:
        raise SystemExit(f"every sample must have the same length, got {sorted(lengths)}")
    w = load_weights(model_dir)
    acfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    r, alpha = acfg["r"], acfg["lora_alpha"]
    scaling = alpha / math.sqrt(r) if acfg.get("use_rslora") else alpha / r
    params = {
        k: t.clone().requires_grad_(True)
        for k, t in load_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors")).items()
    }
    lora = {"params": params, "scaling": scaling}
    tokens = torch.tensor([s["tokens"] for s in samples], dtype=torch.long)
    mask = torch.tensor([s["lossMask"] for s in samples], dtype=torch.float32)
    old = torch.tensor([s["oldLogprobs"] for s in samples], dtype=torch.float32)
    adv = torch.tensor([s["advantage"] for s in samples], dtype=torch.float32)
    opt = torch.optim.AdamW(list(params.values()), lr=batch["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)

    losses, times = [], []
    for _ in range(batch["steps"]):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss = ppo_loss(forward(cfg, w, lora, tokens), batch, tokens, mask, old, adv)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), batch["maxGradNorm"])
        opt.step()
        times.append((time.perf_counter() - t0) * 1000)
        losses.append(loss.item())
    print(
        json.dumps(
            {
                "torch_version": torch.__version__,
                "threads": torch.get_num_threads(),
                "losses": losses,
                "step_ms": times,
                "lora_params": sum(p.numel() for p in params.values()),
                "blas": torch.__config__.show().split("BLAS_INFO=")[-1].split(",")[0],
                "matmul512_gflops": matmul_gflops(),
            }
        )
    )


if __name__ == "__main__":
    main()
