#!/usr/bin/env python3
"""The OHLC job (Q1: 1-minute OHLC + VWAP per symbol) on Apache Flink, for benches/rollups/run.py.

Exact streaming semantics, as eddy's view has: event-time tumbling windows with a 30 s
watermark, open/close by a window Top-N on event time (not arrival order), joined back.
Runs in an interpreter with apache-flink installed (it pins old pyarrow, so keep it in its
own venv):  python -m venv venv-flink && venv-flink/bin/pip install apache-flink
usage: venv-flink/bin/python flink_q1.py --input ticks_10m.jsonl --work DIR --out result.json
"""
import argparse
import json
import os
import shutil
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def sql(name):
    with open(os.path.join(HERE, "flink", name)) as f:
        text = "\n".join(ln for ln in f.read().splitlines() if not ln.strip().startswith("--"))
    return text.strip().rstrip(";")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--parallelism", type=int, default=2)
    a = ap.parse_args()
    from pyflink.table import EnvironmentSettings, TableEnvironment
    tenv = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = tenv.get_config()
    conf.set("parallelism.default", str(a.parallelism))
    conf.set("taskmanager.memory.process.size", "4g")
    outdir = os.path.join(a.work, "flink_out")
    shutil.rmtree(outdir, ignore_errors=True)
    tenv.execute_sql(sql("source_ddl.sql").replace("{path}", os.path.abspath(a.input)))
    tenv.execute_sql(sql("sink_ddl.sql").replace("{path}", outdir))
    print("flink: running the exact streaming OHLC job ...", flush=True)
    t = time.perf_counter()
    res = tenv.execute_sql(sql("q1_stream_exact.sql"))
    jr = res.get_job_client().get_job_execution_result().result()
    wall = time.perf_counter() - t
    net = jr.get_net_runtime() / 1000
    rows = sum(1 for _ in open(a.input))
    out = {"engine": "flink", "variant": "stream_exact", "parallelism": a.parallelism, "input_rows": rows,
           "job_wall_s": wall, "job_net_s": net, "rows_per_s_net": rows / net, "rows_per_s_wall": rows / wall}
    print(json.dumps(out, indent=1))
    json.dump(out, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
