#!/usr/bin/env python3
"""Turns the criterion output of `cargo bench -p redcache-benches` into the
README's results table (printed as Markdown) and the hit-path plot
(benches/hit_throughput.png).

    cargo bench -p redcache-benches
    python3 -m pip install matplotlib     # once, for the plot
    python3 benches/report.py [CRITERION_HOME]   # default: target/criterion

Figures are criterion's median time per iteration; ratios compare contenders
measured in the same run, side by side against the same redis-server.
"""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(
    os.environ.get("CRITERION_HOME", ROOT / "target" / "criterion"))
CONCURRENCY = [1, 4, 16, 64]


def load(home):
    """full_id -> (median ns per iteration, elements per iteration or None)."""
    results = {}
    for bench in home.glob("**/new/benchmark.json"):
        meta = json.loads(bench.read_text())
        estimates = json.loads((bench.parent / "estimates.json").read_text())
        elements = (meta.get("throughput") or {}).get("Elements")
        results[meta["full_id"]] = (estimates["median"]["point_estimate"], elements)
    return results


R = load(HOME)
if not R:
    sys.exit(f"no criterion results under {HOME}: run `cargo bench -p redcache-benches` first")

# Paired ratios (benches/benches/paired.rs): contender and reference
# alternating in short batches; they decide the targets, being the ones that
# hold on a noisy machine.
PAIRED = {}
paired_file = HOME / "paired" / "ratios.json"
if paired_file.exists():
    for p in json.loads(paired_file.read_text()):
        PAIRED[(p["id"], p["vs"])] = p


def paired(a, b):
    p = PAIRED.get((a, b))
    return f"{p['median']:.2f}× ({p['q1']:.2f}–{p['q3']:.2f})" if p else ""


def paired_verdict(a, b, target):
    p = PAIRED.get((a, b))
    return verdict(p["median"], target) if p else ""


def ns(full_id):
    return R[full_id][0]


def ops(full_id):
    """Calls per second."""
    time, elements = R[full_id]
    return (elements or 1) * 1e9 / time


def fmt_time(t):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if t >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t:.3g} ns"


def fmt_ops(x):
    return f"{x / 1e3:,.1f} k/s" if x < 1e6 else f"{x / 1e6:.2f} M/s"


def verdict(ratio, target):
    return "met" if ratio >= target else "**missed**"


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.split("\n")[0].strip()
        except OSError:
            return "?"

    return (f"{cpu}, {os.cpu_count()} cores; {platform.system()} {platform.release()}; "
            f"{version('rustc', '--version')}; {version('redis-server', '--version').split(' sha=')[0]}")


rows = []


def row(what, figures, ratio="", pair="", target="", result=""):
    rows.append(f"| {what} | {figures} | {ratio} | {pair} | {target} | {result} |")


# The table shows 1 and 64 tasks (the targets); the plot shows every level.
for tasks in (1, 64):
    raw = f"hit/raw_get/{tasks}"
    if raw not in R:
        continue
    n = f"{tasks} task{'s' if tasks > 1 else ''}"
    ours, tagged, mget = f"hit/redcache/{tasks}", f"hit/redcache_tagged/{tasks}", f"hit/raw_mget/{tasks}"
    peer, decode = f"hit/cached_crate/{tasks}", f"hit/raw_get_decode/{tasks}"
    row(f"hit, {n}: redcache vs raw GET", f"{fmt_ops(ops(ours))} vs {fmt_ops(ops(raw))}",
        f"{ops(ours) / ops(raw):.2f}×", paired(ours, raw), "≥ 0.97×", paired_verdict(ours, raw, 0.97))
    if (decode, raw) in PAIRED:
        row(f"hit, {n}: raw GET + JSON decode of the entry vs raw GET", "", "",
            paired(decode, raw))
        row(f"hit, {n}: redcache vs raw GET + JSON decode", "", "", paired(ours, decode))
    row(f"tagged hit, {n}: vs raw GET", f"{fmt_ops(ops(tagged))}",
        f"{ops(tagged) / ops(raw):.2f}×", paired(tagged, raw), "≥ 0.90×", paired_verdict(tagged, raw, 0.90))
    row(f"tagged hit, {n}: vs raw MGET of entry + epoch", f"MGET {fmt_ops(ops(mget))}",
        f"{ops(tagged) / ops(mget):.2f}×", paired(tagged, mget))
    row(f"hit, {n}: `cached` crate vs raw GET", f"`cached` {fmt_ops(ops(peer))}",
        f"{ops(peer) / ops(raw):.2f}×", paired(peer, raw))

# The near cache (L1), paired only: the figures that decide its targets.
for tasks in CONCURRENCY:
    near, raw = f"hit/redcache_near/{tasks}", f"hit/raw_get/{tasks}"
    target = {1: 20.0, 64: 5.0}.get(tasks)
    if (near, raw) in PAIRED:
        n = f"{tasks} task{'s' if tasks > 1 else ''}"
        row(f"near-cache (L1) hit, {n}: vs raw GET", "", "", paired(near, raw),
            f"≥ {target:g}×" if target else "", paired_verdict(near, raw, target) if target else "")
for tasks in (1, 64):
    tagged, near = f"hit/redcache_near_tagged/{tasks}", f"hit/redcache_near/{tasks}"
    if (tagged, near) in PAIRED:
        n = f"{tasks} task{'s' if tasks > 1 else ''}"
        row(f"tagged L1 hit vs untagged L1 hit, {n}", "", "", paired(tagged, near),
            "≥ 0.90× (no per-hit epoch read)", paired_verdict(tagged, near, 0.90))
for name, what in (("redcache_near", "L1 hit"), ("redcache_memory", "embedded hit")):
    ours, moka = f"hit/{name}/1", "hit/moka_get/1"
    if (ours, moka) in PAIRED:
        row(f"{what} vs bare moka `get` (key rendering included)", "", "", paired(ours, moka),
            "≥ 0.5× (≤ 2× the time)", paired_verdict(ours, moka, 0.5))

if "memory_hit/moka_get" in R:
    r = ns("memory_hit/moka_get") / ns("memory_hit/redcache_memory")
    row("embedded hit vs bare moka `get`",
        f"{fmt_time(ns('memory_hit/redcache_memory'))} vs {fmt_time(ns('memory_hit/moka_get'))}", f"{r:.2f}×")

if "miss/redcache" in R:
    r = ns("miss/cached_crate") / ns("miss/redcache")
    row("miss + load + write: redcache vs `cached` crate",
        f"{fmt_time(ns('miss/redcache'))} vs {fmt_time(ns('miss/cached_crate'))}", f"{r:.2f}×")

loads_file = HOME / "stampede" / "loads.json"
if loads_file.exists():
    loads = json.loads(loads_file.read_text())
    n = loads["callers"]
    row(f"stampede, {n} callers on one cold key (5 ms load): loads",
        f"redcache {loads['redcache']:.2f}, `cached` {loads['cached_crate']:.2f}")
    r = ns(f"stampede/cached_crate/{n}") / ns(f"stampede/redcache/{n}")
    row(f"stampede, {n} callers: wall time",
        f"{fmt_time(ns(f'stampede/redcache/{n}'))} vs {fmt_time(ns(f'stampede/cached_crate/{n}'))}",
        f"{r:.2f}×")

inv = [k for k in (10, 10_000, 1_000_000) if f"invalidate_tag/{k}" in R]
if inv:
    times = [ns(f"invalidate_tag/{k}") for k in inv]
    growth = times[-1] / times[0]
    # A cost linear in the entries would grow 100 000x from 10 to 1M; within
    # 2x is flat on a machine whose runs differ by up to 30 %.
    row("invalidate a tag with " + " / ".join(f"{k:,}" for k in inv) + " entries",
        " / ".join(fmt_time(t) for t in times), f"{inv[-1]:,} vs {inv[0]}: {growth:.2f}×", "",
        "flat", "met" if growth < 2 else "**missed**")

for algorithm in ("sliding_log", "sliding_window", "fixed_window", "gcra"):
    for tasks in (1, 64):
        ours, raw = f"rate_limit/redcache/{algorithm}/{tasks}", f"rate_limit/raw_evalsha/{algorithm}/{tasks}"
        if ours in R and raw in R:
            r = ops(ours) / ops(raw)
            row(f"rate-limit check, {algorithm}, {tasks} task{'s' if tasks > 1 else ''}: vs raw EVALSHA",
                f"{fmt_ops(ops(ours))} vs {fmt_ops(ops(raw))}", f"{r:.2f}×", paired(ours, raw),
                "≥ 0.95×", paired_verdict(ours, raw, 0.95))

if "rate_limit_deny/governor" in R:
    r = ns("rate_limit_deny/governor") / ns("rate_limit_deny/redcache_local")
    row("local deny (caller over its limit) vs governor",
        f"{fmt_time(ns('rate_limit_deny/redcache_local'))} vs {fmt_time(ns('rate_limit_deny/governor'))}", f"{r:.2f}×")

for size, label in ((100, "100 B"), (10240, "10 KB"), (1048576, "1 MB")):
    ours, raw = f"payload/redcache/{size}", f"payload/raw_get/{size}"
    if ours in R and raw in R:
        r = ns(raw) / ns(ours)
        row(f"hit with a {label} value vs raw GET", f"{fmt_time(ns(ours))} vs {fmt_time(ns(raw))}", f"{r:.2f}×")

print(f"Machine: {machine()}.\n")
print("| benchmark | criterion figures | criterion ratio | paired ratio: median (quartiles) | target | |")
print("|---|---|---|---|---|---|")
print("\n".join(rows))

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("\n(no plot: `python3 -m pip install matplotlib`, then run this again)")

fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.4), dpi=120)
for fn, label, style in (("raw_get", "raw redis-rs GET (limit)", "k--"),
                         ("redcache", "redcache #[cached]", "C0-o"),
                         ("redcache_tagged", "redcache, tagged", "C0:s"),
                         ("raw_mget", "raw MGET (tagged limit)", "C7--"),
                         ("cached_crate", "cached crate (redis)", "C3-^")):
    points = [(t, ops(f"hit/{fn}/{t}")) for t in CONCURRENCY if f"hit/{fn}/{t}" in R]
    if points:
        ax.plot([t for t, _ in points], [o / 1e3 for _, o in points], style, label=label)
ax.set_title("Hit throughput (criterion, one run)")
ax.set_ylabel("cache hits per second (thousands)")
ax.legend(fontsize=8)
for fn, label, style in (("redcache", "redcache #[cached]", "C0-o"),
                         ("redcache_tagged", "redcache, tagged", "C0:s"),
                         ("raw_get_decode", "raw GET + JSON decode", "C2--"),
                         ("cached_crate", "cached crate (redis)", "C3-^")):
    points = [(t, PAIRED[(f"hit/{fn}/{t}", f"hit/raw_get/{t}")])
              for t in CONCURRENCY if (f"hit/{fn}/{t}", f"hit/raw_get/{t}") in PAIRED]
    if points:
        xs = [t for t, _ in points]
        bx.plot(xs, [p["median"] for _, p in points], style, label=label)
        bx.fill_between(xs, [p["q1"] for _, p in points], [p["q3"] for _, p in points],
                        color=style[:2], alpha=0.12)
bx.axhline(1.0, color="k", linestyle="--", linewidth=1)
bx.axhline(0.97, color="grey", linestyle=":", linewidth=1)
bx.set_title("Throughput / raw GET's (paired batches, median and quartiles)")
bx.set_ylabel("ratio to a raw GET of the same bytes")
bx.legend(fontsize=8)
for a in (ax, bx):
    a.set_xscale("log", base=2)
    a.set_xticks(CONCURRENCY, [str(t) for t in CONCURRENCY])
    a.set_xlabel("concurrent tasks")
    a.grid(True, alpha=0.3)
fig.text(0.01, 0.01, machine(), fontsize=6, color="grey")
fig.tight_layout(rect=(0, 0.03, 1, 1))
out = ROOT / "benches" / "hit_throughput.png"
fig.savefig(out)
print(f"\nplot: {out.relative_to(ROOT)}")
