"""PyTorch CPU reference for bench/scale.ts: one LoRA PPO update at real model sizes.

The same update as train_step.py (float32 forward, PPO clipped surrogate with token-mean
aggregation, backward into LoRA A/B only, global grad-norm clip, AdamW) generalised to the
architectures bench/scale.ts runs: Qwen2 and Llama (biases wherever the checkpoint has them,
Llama 3 RoPE scaling) and Qwen3 (per-head q_norm/k_norm before RoPE, when those tensors exist).
It accumulates gradients over micro-batches of `micro` sequences, the same split Fulgur uses, so a
8 x 1,024-token batch of a 151,936-word vocabulary fits in memory. Prints one JSON object with
the step times, losses, the torch build, and which BLAS library the process actually mapped
(torch's BLAS_INFO says "generic" on Debian; the library loaded decides the speed).

Usage: python3 scale_step.py <model_dir> <adapter_dir> <batch.json> <threads>
batch.json: as train_step.py's, plus optional "micro" (sequences per micro-batch).
"""
import json
import math
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step import load_safetensors, load_weights, matmul_gflops, ppo_loss, repeat_kv, rms_norm, rotate_half  # noqa: E402


def inv_frequencies(cfg, head_dim):
    base = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    rs = cfg.get("rope_scaling") or {}
    if (rs.get("rope_type") or rs.get("type")) == "llama3":
        factor, low, high = rs.get("factor", 8.0), rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
        old = rs.get("original_max_position_embeddings", 8192)
        wavelen = 2 * math.pi / inv
        smooth = (old / wavelen - low) / (high - low)
        scaled = torch.where(wavelen > old / low, inv / factor, inv)
        mid = (wavelen <= old / low) & (wavelen >= old / high)
        inv = torch.where(mid, (1 - smooth) * inv / factor + smooth * inv, scaled)
    return inv.to(torch.float32)


def forward(cfg, w, lora, ids):
    """Logits [B, T, V] of a Qwen2/Llama/Qwen3 model with PEFT LoRA on the projections `lora` holds."""
    hidden = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or hidden // heads
    eps = cfg.get("rms_norm_eps", 1e-6)
    scaling = lora["scaling"]

    def linear(x, prefix):
        y = x @ w[prefix + ".weight"].T
        bias = w.get(prefix + ".bias")
        if bias is not None:
            y = y + bias
        a = lora["params"].get(f"base_model.model.{prefix}.lora_A.weight")
        if a is not None:
            b = lora["params"][f"base_model.model.{prefix}.lora_B.weight"]
            y = y + (x @ a.T) @ b.T * scaling
        return y

    B, T = ids.shape
    x = w["model.embed_tokens.weight"][ids]
    freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv_frequencies(cfg, head_dim))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None, None], emb.sin()[None, None]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}"
        residual = x
        h = rms_norm(x, w[f"{p}.input_layernorm.weight"], eps)
        q = linear(h, f"{p}.self_attn.q_proj").view(B, T, heads, head_dim)
        k = linear(h, f"{p}.self_attn.k_proj").view(B, T, kv_heads, head_dim)
        v = linear(h, f"{p}.self_attn.v_proj").view(B, T, kv_heads, head_dim).transpose(1, 2)
        if f"{p}.self_attn.q_norm.weight" in w:
            q = rms_norm(q, w[f"{p}.self_attn.q_norm.weight"], eps)
            k = rms_norm(k, w[f"{p}.self_attn.k_norm.weight"], eps)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = repeat_kv(k, heads // kv_heads)
        v = repeat_kv(v, heads // kv_heads)
        scores = q @ k.transpose(2, 3) / math.sqrt(head_dim) + mask
        attn = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, T, heads * head_dim)
        x = residual + linear(attn, f"{p}.self_attn.o_proj")
        residual = x
        h = rms_norm(x, w[f"{p}.post_attention_layernorm.weight"], eps)
        gate = linear(h, f"{p}.mlp.gate_proj")
        up = linear(h, f"{p}.mlp.up_proj")
        x = residual + linear(torch.nn.functional.silu(gate) * up, f"{p}.mlp.down_proj")
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["lm_head.weight"] if "lm_head.weight" in w else w["model.embed_tokens.weight"]
    return x @ head.T


def blas_libraries():
    """The BLAS/LAPACK shared objects this process has mapped (Linux)."""
    try:
        with open("/proc/self/maps") as f:
            return sorted({line.split()[-1] for line in f if "blas" in line.lower() or "lapack" in line.lower()})
    except OSError:
        return []


def main():
    model_dir, adapter_dir, batch_path, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(threads)
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    batch = json.load(open(batch_path))
    samples = batch["samples"]
    micro = batch.get("micro") or len(samples)
    w = load_weights(model_dir)
    acfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    r, alpha = acfg["r"], acfg["lora_alpha"]
    scaling = alpha / math.sqrt(r) if acfg.get("use_rslora") else alpha / r
    params = {
        k: t.clone().requires_grad_(True)
        for k, t in load_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors")).items()
    }
    lora = {"params": params, "scaling": scaling}
    opt = torch.optim.AdamW(list(params.values()), lr=batch["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    total_mask = sum(sum(s["lossMask"][1:]) for s in samples)

    losses, times = [], []
    for _ in range(batch["steps"]):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss_sum = 0.0
        for i in range(0, len(samples), micro):
            part = samples[i : i + micro]
            tokens = torch.tensor([s["tokens"] for s in part], dtype=torch.long)
            mask = torch.tensor([s["lossMask"] for s in part], dtype=torch.float32)
            old = torch.tensor([s["oldLogprobs"] for s in part], dtype=torch.float32)
            adv = torch.tensor([s["advantage"] for s in part], dtype=torch.float32)
            # Token-mean over the whole batch = sum of micro-batch means weighted by token share.
            share = float(mask[:, 1:].sum()) / total_mask
            loss = ppo_loss(forward(cfg, w, lora, tokens), batch, tokens, mask, old, adv) * share
            loss.backward()
            loss_sum += loss.item()
        torch.nn.utils.clip_grad_norm_(list(params.values()), batch["maxGradNorm"])
        opt.step()
        times.append((time.perf_counter() - t0) * 1000)
        losses.append(loss_sum)
    print(
        json.dumps(
            {
                "torch_version": torch.__version__,
                "threads": torch.get_num_threads(),
                "losses": losses,
                "step_ms": times,
                "lora_params": sum(p.numel() for p in params.values()),
                "blas": torch.__config__.show().split("BLAS_INFO=")[-1].split(",")[0],
                "blas_libraries": blas_libraries(),
                "matmul512_gflops": matmul_gflops(),
                "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
