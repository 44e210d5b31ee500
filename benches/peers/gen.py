#!/usr/bin/env python3
# Copied verbatim from the shared peer benchmark (bench/gen.py). Keep the data definitions identical, so
# that eddy's figures stay comparable with the published peer results. run.py calls it with --out.
"""Deterministic data generator for the peer OLAP benchmark.

ticks : symbol, ts (event time, µs), price (float64 random walk per symbol with
        rare >5 % jumps), volume (int64). Rows are written in *arrival* order:
        ts is strictly increasing except ~1 % of rows that arrive late by up to 30 s.
events: clickstream ts, event_type, user_id, session_id, product_id, amount.
        Sessions are generated so that a 30-minute inactivity gap separates them
        exactly (so Q6 has a known answer); a few "bot" users get bursts of >5
        purchases within one minute (so Q8b has a known answer).

Outputs Parquet (timestamp[us], no tz == UTC) and NDJSON ("YYYY-MM-DD HH:MM:SS.ffffff").
Usage: python gen.py --ticks 1m,10m --events 10m [--out data] [--seed 42]
       python gen.py --ticks 100m          # the big flag
"""
import argparse, json, os, time
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import polars as pl

BASE_US = 1704067200 * 1_000_000  # 2024-01-01 00:00:00 UTC
N_SYMBOLS = 1000
N_USERS = 100_000
N_PRODUCTS = 10_000
EVENT_TYPES = ["page_view", "button_click", "add_to_cart", "purchase", "login", "logout", "search"]


def parse_size(s):
    s = s.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000, "b": 1_000_000_000}
    return int(float(s[:-1]) * mult[s[-1]]) if s[-1] in mult else int(s)


def segmented_cumsum(values, group_first_mask):
    """cumsum that restarts at every True in group_first_mask (array sorted by group)."""
    cs = np.cumsum(values)
    starts = np.flatnonzero(group_first_mask)
    # value of cs just before each group start
    before = np.where(starts > 0, cs[starts - 1], 0)
    lens = np.diff(np.append(starts, len(values)))
    return cs - np.repeat(before, lens)


def write_outputs(df: pl.DataFrame, path_base: str, label: str):
    t = time.time()
    df.write_parquet(path_base + ".parquet", compression="snappy", row_group_size=1_000_000)
    tp = time.time() - t
    t = time.time()
    df.with_columns(pl.col("ts").dt.strftime("%Y-%m-%d %H:%M:%S%.6f")).write_ndjson(path_base + ".jsonl")
    tj = time.time() - t
    print(f"  {label}: parquet {tp:.1f}s ({os.path.getsize(path_base + '.parquet')/1e6:.0f} MB), "
          f"jsonl {tj:.1f}s ({os.path.getsize(path_base + '.jsonl')/1e6:.0f} MB)", flush=True)


def gen_ticks(n, seed, span_hours, out, label):
    rng = np.random.default_rng(seed)
    span_us = int(span_hours * 3600 * 1_000_000)
    step = span_us // n
    assert step >= 2, "too many rows for the span"
    arrival = np.arange(n, dtype=np.int64) * step + rng.integers(0, step, n)  # strictly increasing
    sym = rng.integers(0, N_SYMBOLS, n).astype(np.int32)
    late = rng.random(n) < 0.01
    lateness = rng.integers(1, 30_000_001, n)  # up to 30 s
    ts = np.where(late, np.maximum(arrival - lateness, 0), arrival)
    # make (symbol, ts) unique so open/close are unambiguous
    while True:
        order = np.lexsort((ts, sym))
        d = (np.diff(ts[order]) == 0) & (np.diff(sym[order]) == 0)
        if not d.any():
            break
        ts[order[1:][d]] += 1
    sym_s = sym[order]
    first = np.ones(n, dtype=bool)
    first[1:] = sym_s[1:] != sym_s[:-1]
    r = rng.normal(0.0, 0.0005, n)                      # per-tick log return
    jump = (rng.random(n) < 1e-5) & ~first
    mag = rng.uniform(0.06, 0.15, n) * np.where(rng.random(n) < 0.5, 1, -1)
    r = np.where(jump, r + np.log1p(mag), r)
    r[first] = 0.0
    logp = segmented_cumsum(r, first)
    p0 = rng.uniform(10, 500, N_SYMBOLS)
    price_s = np.round(p0[sym_s] * np.exp(logp), 4)
    price = np.empty(n); price[order] = price_s
    volume = (rng.integers(1, 50, n) * 100).astype(np.int64)
    names = pl.Series("symbol", [f"SYM{i+1:04d}" for i in range(N_SYMBOLS)])
    df = pl.DataFrame({
        "symbol": names.gather(pl.Series(sym)),  # gather: avoids a 28-byte/row numpy unicode array at 100M rows
        "ts": pl.Series((BASE_US + ts).astype("datetime64[us]")),
        "price": price,
        "volume": volume,
    })
    base = os.path.join(out, f"ticks_{label}")
    write_outputs(df, base, f"ticks_{label}")
    return {"rows": n, "late_rows": int(late.sum()), "injected_jumps": int(jump.sum()),
            "symbols": N_SYMBOLS, "span_hours": span_hours,
            "min_ts_us": int(BASE_US + ts.min()), "max_ts_us": int(BASE_US + ts.max())}


def gen_events(n, seed, out, label):
    rng = np.random.default_rng(seed + 1)
    # events per session ~ 1+Poisson(9), trimmed so the total is exactly n
    k = 1 + rng.poisson(9, n // 10 + 1000)
    cs = np.cumsum(k)
    S = int(np.searchsorted(cs, n)) + 1
    k = k[:S]; k[-1] -= cs[S - 1] - n
    if k[-1] <= 0:
        S -= 1; k = k[:S]; k[-1] += n - k.sum()
    assert k.sum() == n and (k > 0).all()
    user = rng.integers(0, N_USERS, S)
    sorder = np.argsort(user, kind="stable")
    user = user[sorder]; k = k[sorder]
    sess_of_event = np.repeat(np.arange(S), k)
    first_ev = np.zeros(n, dtype=bool); first_ev[np.cumsum(k) - k] = True
    last_ev = np.zeros(n, dtype=bool); last_ev[np.cumsum(k) - 1] = True
    # event types
    mid_types = np.array([0, 6, 1, 2, 3])           # page_view, search, button_click, add_to_cart, purchase
    etype = mid_types[rng.choice(5, n, p=[0.55, 0.15, 0.15, 0.10, 0.05])]
    etype = np.where(first_ev & (rng.random(n) < 0.5), 4, etype)            # login
    etype = np.where(last_ev & ~first_ev & (rng.random(n) < 0.4), 5, etype)  # logout
    # within-session gaps: Exp(20 s), capped at 25 min (< 30 min gap => same session)
    gap = np.minimum(rng.exponential(20e6, n), 25 * 60e6).astype(np.int64) + 1
    # bot bursts: 50 sessions with >=8 events get 8 purchases within ~50 s
    cand = np.flatnonzero(k >= 8)
    bots = rng.choice(cand, 50, replace=False)
    sess_start_idx = np.cumsum(k) - k
    for s in bots:
        i0 = sess_start_idx[s]
        etype[i0:i0 + 8] = 3
        gap[i0 + 1:i0 + 8] = rng.integers(1_000_000, 7_000_000, 7)
    gap[first_ev] = 0
    offset_in_sess = segmented_cumsum(gap, first_ev)
    dur = offset_in_sess[last_ev]                    # per session duration (µs)
    # session starts per user: first in [0,4h), next = prev_start + prev_dur + 30min + 1s + Exp(40min)
    ufirst = np.ones(S, dtype=bool); ufirst[1:] = user[1:] != user[:-1]
    inc = np.empty(S, dtype=np.int64)
    inc[ufirst] = rng.integers(0, 4 * 3600 * 1_000_000, int(ufirst.sum()))
    between = (30 * 60e6 + 1e6 + rng.exponential(40 * 60e6, S)).astype(np.int64)
    prev_dur = np.concatenate([[0], dur[:-1]])
    inc[~ufirst] = (prev_dur + between)[~ufirst]
    start = segmented_cumsum(inc, ufirst)
    ts = BASE_US + start[sess_of_event] + offset_in_sess
    # products (skewed popularity), amounts for purchases
    has_prod = np.isin(etype, [0, 1, 2, 3])
    prod = (np.floor(N_PRODUCTS * rng.random(n) ** 3) + 1).astype(np.int64)
    amount = np.round(rng.lognormal(3.5, 1.0, n), 2)
    is_p = etype == 3
    sess_ids = rng.permutation(S).astype(np.int64) * 7919 + 1_000_003  # opaque ids
    df = pl.DataFrame({
        "ts": pl.Series(ts.astype("datetime64[us]")),
        "event_type": pl.Series(np.array(EVENT_TYPES)[etype]),
        "user_id": (user[sess_of_event] + 1).astype(np.int64),
        "session_id": sess_ids[sess_of_event],
        "product_id": np.where(has_prod, prod, -1),
        "amount": pl.Series(np.where(is_p, amount, np.nan)),
    }).with_columns(
        session_id=pl.format("s{}", pl.col("session_id")),
        product_id=pl.when(pl.col("product_id") >= 0).then(pl.col("product_id")),
        amount=pl.when(pl.col("amount").is_not_nan()).then(pl.col("amount")),
    ).sort("ts", maintain_order=True)
    base = os.path.join(out, f"events_{label}")
    write_outputs(df, base, f"events_{label}")
    return {"rows": n, "sessions": int(S), "users_with_events": int(np.unique(user).size),
            "bot_burst_users": int(np.unique(user[bots]).size), "purchases": int(is_p.sum()),
            "min_ts_us": int(ts.min()), "max_ts_us": int(ts.max())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", default="1m,10m", help="comma list of sizes, e.g. 1m,10m,100m ('' = none)")
    ap.add_argument("--events", default="10m", help="comma list of sizes ('' = none)")
    ap.add_argument("--span-hours", type=float, default=24.0, help="event-time span of the tick data")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    mpath = os.path.join(a.out, "manifest.json")
    manifest = json.load(open(mpath)) if os.path.exists(mpath) else {}
    for s in filter(None, a.ticks.split(",")):
        t = time.time(); print(f"ticks {s} ...", flush=True)
        manifest[f"ticks_{s}"] = gen_ticks(parse_size(s), a.seed, a.span_hours, a.out, s)
        manifest[f"ticks_{s}"]["gen_seconds"] = round(time.time() - t, 1)
    for s in filter(None, a.events.split(",")):
        t = time.time(); print(f"events {s} ...", flush=True)
        manifest[f"events_{s}"] = gen_events(parse_size(s), a.seed, a.out, s)
        manifest[f"events_{s}"]["gen_seconds"] = round(time.time() - t, 1)
    json.dump(manifest, open(mpath, "w"), indent=1)
    print(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
