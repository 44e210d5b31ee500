"""Order-independent result fingerprints, used to compare eddy's answers with DuckDB's.

A fingerprint is the row count plus, per column (matched by position): the exact (math.fsum) sum of a
numeric or timestamp column (timestamps as epoch seconds), or an order-independent CRC sum of a string
column, and the null count. Same method as the peer benchmark's bench_lib.py, so the numbers agree.
"""
import math
import zlib

import pyarrow as pa
import pyarrow.compute as pc


def _col_fp(col):
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    nulls = col.null_count
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        ts = col.cast(pa.timestamp("us", tz=t.tz) if pa.types.is_timestamp(t) else pa.timestamp("us"))
        vals = pc.divide(ts.cast(pa.int64()).cast(pa.float64()), 1e6).drop_null().to_numpy()
        return {"kind": "num", "sum": math.fsum(vals), "nulls": nulls}
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t):
        vals = col.cast(pa.float64()).drop_null().to_numpy()
        vals = vals[~(vals != vals)]  # drop NaN
        return {"kind": "num", "sum": math.fsum(vals), "nulls": nulls}
    if pa.types.is_null(t):
        return {"kind": "null", "sum": 0, "nulls": nulls}
    strs = col.cast(pa.string())
    vc = pc.value_counts(strs.drop_null())
    s = 0
    for v, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
        s = (s + zlib.crc32(v.encode()) * n) % (1 << 61)
    fp = {"kind": "str", "sum": s, "nulls": nulls}
    try:  # numbers that arrived as text (an unknown type OID): keep their sum too
        fp["num_sum"] = math.fsum(strs.drop_null().cast(pa.float64()).to_numpy())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    return fp


def fingerprint_arrow(tbl):
    return {"rows": tbl.num_rows, "names": tbl.column_names,
            "cols": [_col_fp(tbl.column(i)) for i in range(tbl.num_columns)]}


def _py_column_to_arrow(values):
    """Python values from a DB-API cursor -> Arrow array (falls back to float, then to str)."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
        pass
    try:
        return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    except (ValueError, TypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def fingerprint_rows(rows, names):
    """Fingerprint of DB-API rows (a list of tuples) with column names `names`."""
    if rows:
        cols = [pa.chunked_array([_py_column_to_arrow(list(c))]) for c in zip(*rows)]
    else:
        cols = [pa.chunked_array([pa.array([], type=pa.null())]) for _ in names]
    return {"rows": len(rows), "names": list(names), "cols": [_col_fp(c) for c in cols]}


def compare_fp(ref, got, rtol=1e-6):
    """-> (ok, message). `ref` is DuckDB's fingerprint. Loose: a relative tolerance of 1e-6 on sums."""
    if ref["rows"] != got["rows"]:
        return False, f"rows {got['rows']} != {ref['rows']}"
    if len(ref["cols"]) != len(got["cols"]):
        return False, f"{len(got['cols'])} columns != {len(ref['cols'])}"
    msgs = []
    for i, (x, y) in enumerate(zip(ref["cols"], got["cols"])):
        name = ref["names"][i]
        if x["nulls"] != y["nulls"]:
            msgs.append(f"{name}: {y['nulls']} nulls != {x['nulls']}")
        if "null" in (x["kind"], y["kind"]):
            continue  # an all-null or empty column: nothing more to compare
        if x["kind"] != y["kind"]:
            if x["kind"] == "num" and "num_sum" in y:  # numbers sent as text: compare their values
                y = {**y, "kind": "num", "sum": y["num_sum"]}
            else:
                msgs.append(f"{name}: {y['kind']} != {x['kind']}")
                continue
        if x["kind"] == "str":
            if x["sum"] != y["sum"]:
                msgs.append(f"{name}: strings differ")
        else:
            d = abs(x["sum"] - y["sum"]) / max(abs(x["sum"]), abs(y["sum"]), 1e-300)
            if d > rtol:
                msgs.append(f"{name}: sum differs (rel {d:.1e})")
    return not msgs, "; ".join(msgs)
