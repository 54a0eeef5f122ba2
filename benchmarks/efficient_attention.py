"""Chapter 7's figures at sizes a notebook cannot afford: tiles vs the L x L matrix, linear vs softmax time.

Prints three tables, measured side by side in one run (one head, D = Dv = 64, float32, B = 1):
  1. L = S = 8192: peak extra memory and time of naive attention, of FlashAttention's tiled forward
     (`attnkit.flash_attention`, tiles of 256 x 256) and of F.scaled_dot_product_attention, with the tiled
     output's largest difference from SDPA's. Targets: tiled peak <= 1/20 of naive, difference <= 1e-5.
  2. Naive vs SDPA, time and peak memory, L = 1024 .. 8192.
  3. Linear attention (`attnkit.linear_attention_parallel`) vs softmax attention (SDPA) time, L = 512 ..
     16384, their ratio, and the slopes of log(time) against log(L) (targets: near 1 and near 2), with a
     log-log plot written to benchmarks/efficient_attention.png.

Memory is counted two ways. "tensor bytes" (`attnkit.peak_tensor_bytes`): every tensor storage that a
PyTorch operation returns is added when created and subtracted when its last tensor is freed; the peak is
the highest total (inputs excluded; what a fused kernel allocates and frees inside one operation is not
seen). "RSS" cross-checks it from the operating system: the rise of the process's peak resident memory
(VmHWM in /proc/self/status, reset through /proc/self/clear_refs before each run; Linux only; large
tensors are mmap-ed and returned to the system when freed, so runs do not hide each other).

Run: python benchmarks/efficient_attention.py   (about 2 minutes on 2 CPU cores; --threads N, default 1)
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from attnkit import best_time, flash_attention, linear_attention_parallel, peak_tensor_bytes

PNG = Path(__file__).with_suffix(".png")
MB = 2**20


def naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention as three lines: the (L, S) scores, their softmax, the weighted sum."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, L, S)
    return torch.softmax(scores, dim=-1) @ v  # (B, H, L, Dv)


def tiled(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return flash_attention(q, k, v, block_q=256, block_k=256)[0]


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_peak_rise(fn, *args) -> int | None:
    """Bytes by which the process's peak resident memory rose while fn ran (None where not measurable)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        return None
    before = _status_kb("VmRSS")
    fn(*args)
    peak = _status_kb("VmHWM")
    return None if before is None or peak is None else max(peak - before, 0) * 1024  # RSS may have shrunk


def inputs(L: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(1, 1, L, 64, generator=gen) for _ in range(3))  # (B, H, L, D) each


def slope(lengths: list[int], times: list[float]) -> float:
    """Least-squares slope of log(time) against log(L)."""
    x = torch.tensor(lengths, dtype=torch.float64).log()
    y = torch.tensor(times, dtype=torch.float64).log()
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x * x).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per time (the best is kept)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), best of {args.repeats}; load average "
          f"{os.getloadavg()[0]:.1f}")

    # 1. the target: L = S = 8192
    L = 8192
    q, k, v = inputs(L)
    reference = F.scaled_dot_product_attention(q, k, v)
    rows = []
    for name, fn in (("naive (3 lines)", naive), ("tiled (attnkit.flash_attention)", tiled),
                     ("F.scaled_dot_product_attention", F.scaled_dot_product_attention)):
        out, tensor_bytes = peak_tensor_bytes(fn, q, k, v)
        difference = float((out - reference).abs().max())
        del out
        rss = rss_peak_rise(fn, q, k, v)
        seconds = best_time(fn, q, k, v, repeats=1 if fn is tiled else args.repeats)
        rows.append((name, tensor_bytes, rss, seconds, difference))
    print(f"\n1. L = S = {L}, D = 64, one head, float32 (inputs: 3 x {L * 64 * 4 / MB:.0f} MB, not counted)")
    print(f"{'':32s} | tensor bytes MB | RSS rise MB | seconds | max |out - SDPA|")
    for name, tensor_bytes, rss, seconds, difference in rows:
        rss_text = f"{rss / MB:11.1f}" if rss is not None else "          -"
        print(f"{name:32s} | {tensor_bytes / MB:15.1f} | {rss_text} | {seconds:7.2f} | {difference:.1e}")
    ratio = rows[0][1] / rows[1][1]
    print(f"tiled peak = 1/{ratio:.0f} of naive (target: at most 1/20): {'met' if ratio >= 20 else 'NOT met'}; "
          f"tiled vs SDPA {rows[1][4]:.1e} (target <= 1e-5): {'met' if rows[1][4] <= 1e-5 else 'NOT met'}")

    # 2. naive vs SDPA as L grows
    print("\n2. naive vs F.scaled_dot_product_attention as L grows (L = S, D = 64)")
    print(f"{'L':>6} | naive s | SDPA s | speed-up | naive MB | SDPA MB")
    for L in (1024, 2048, 4096, 8192):
        q, k, v = inputs(L)
        t_naive, t_sdpa = best_time(naive, q, k, v, repeats=args.repeats), best_time(
            F.scaled_dot_product_attention, q, k, v, repeats=args.repeats)
        m_naive = peak_tensor_bytes(naive, q, k, v)[1]
        m_sdpa = peak_tensor_bytes(F.scaled_dot_product_attention, q, k, v)[1]
        print(f"{L:6d} | {t_naive:7.3f} | {t_sdpa:6.3f} | {t_naive / t_sdpa:7.1f}x | {m_naive / MB:8.1f} | "
              f"{m_sdpa / MB:7.2f}")

    # 3. linear vs softmax attention
    lengths = [512, 1024, 2048, 4096, 8192, 16384]
    soft, lin = [], []
    print("\n3. linear attention (elu + 1, non-causal) vs softmax attention (SDPA), D = Dv = 64")
    print(f"{'L':>6} | softmax s | linear s | softmax / linear")
    for L in lengths:
        q, k, v = inputs(L)
        # short runs: more of them, so that a burst of load on a shared machine spoils none of the minima
        soft.append(best_time(F.scaled_dot_product_attention, q, k, v, repeats=max(args.repeats, 7)))
        lin.append(best_time(linear_attention_parallel, q, k, v, repeats=max(args.repeats, 15)))
        print(f"{L:6d} | {soft[-1]:9.4f} | {lin[-1]:8.4f} | {soft[-1] / lin[-1]:8.1f}")
    fit = [L for L in lengths if L >= 2048]  # small L is dominated by fixed overheads
    s_soft, s_lin = slope(fit, soft[-len(fit):]), slope(fit, lin[-len(fit):])
    s_ratio = slope(fit, [a / b for a, b in zip(soft[-len(fit):], lin[-len(fit):], strict=True)])
    print(f"log-log slopes for L = {fit[0]}..{fit[-1]}: softmax {s_soft:.2f} (target near 2), linear {s_lin:.2f} "
          f"(near 1), their ratio {s_ratio:.2f} (near 1: the ratio grows linearly with L)")
    print(f"over all of L = {lengths[0]}..{lengths[-1]}: softmax {slope(lengths, soft):.2f}, "
          f"linear {slope(lengths, lin):.2f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(lengths, soft, "o-", label=f"softmax (SDPA), slope {s_soft:.2f}")
    ax.loglog(lengths, lin, "s-", label=f"linear attention, slope {s_lin:.2f}")
    ax.set_xticks(lengths, labels=[str(n) for n in lengths])
    ax.minorticks_off()
    ax.set(xlabel="L = S", ylabel="seconds (best of runs)", title="one head, D = 64, float32, CPU")
    ax.legend()
    fig.savefig(PNG, dpi=100, bbox_inches="tight", metadata={"Software": None})
    print(f"wrote {PNG.relative_to(Path.cwd()) if PNG.is_relative_to(Path.cwd()) else PNG}")
    print(f"done in {time.process_time():.0f} s of CPU time")


if __name__ == "__main__":
    main()
