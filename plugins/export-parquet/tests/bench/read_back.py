#!/usr/bin/env python3
"""Reads medgate Parquet exports back with pyarrow and DuckDB, independently of the Rust reader.

The Rust tests never need Python; this script is the benchmark's second opinion (issue #9):
another implementation of Parquet must accept the file, see the documented schema, and
compute the same numbers.

    pip install pyarrow duckdb
    # the 1M-row workload file (release build), then the rich fixture file:
    MEDGATE_PARQUET_KEEP=/tmp/million.parquet cargo test --release \
        -p medgate-export-parquet --test million -- --ignored
    MEDGATE_PARQUET_RICH_OUT=/tmp/rich.parquet cargo test -p medgate-export-parquet \
        --test export every_cell_of_every_row_round_trips
    python3 plugins/export-parquet/tests/bench/read_back.py /tmp/million.parquet --rich /tmp/rich.parquet

Exits non-zero when a check fails.
"""

import argparse
import datetime as dt
import re
import sys
import time

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

UTC = dt.timezone.utc
FAILED = []


def check(what, actual, expected):
    ok = actual == expected
    print(f"  {'ok  ' if ok else 'FAIL'} {what}: {actual!r}" + ("" if ok else f" (expected {expected!r})"))
    if not ok:
        FAILED.append(what)


def describe(path, columns=True):
    meta = pq.read_metadata(path)
    schema = pq.read_schema(path)
    print(f"{path}: {meta.num_rows} rows, {meta.num_row_groups} row groups, {meta.num_columns} columns, "
          f"created by {meta.created_by!r}")
    first = meta.row_group(0) if meta.num_row_groups else None
    for i, field in enumerate(schema if columns else []):
        # `Timestamp(isAdjustedToUTC=true, timeUnit=microseconds, is_from_converted_type=…)`:
        # the first two parameters are the ones that matter here.
        logical = re.sub(r"(\w+=\w+, \w+=\w+), .*\)", r"\1)", str(meta.schema.column(i).logical_type))
        codec = first.column(i).compression if first else "-"
        print(f"  {field.name:20} {str(field.type):22} {logical:56} {codec}")
    kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
    for key in sorted(k for k in kv if k.startswith("medgate:")):
        print(f"  {key}: {kv[key][:110]}…")
    return meta, schema, kv


def million(path):
    print("== pyarrow")
    meta, schema, kv = describe(path)
    check("timestamp type", str(schema.field("effective").type), "timestamp[us, tz=UTC]")
    check("isAdjustedToUTC", "isAdjustedToUTC=true" in str(meta.schema.column(9).logical_type).replace(" ", ""), True)
    check("metadata says UTC", "adjusted to UTC" in kv.get("medgate:timestamps", ""), True)
    started = time.perf_counter()
    table = pq.read_table(path)
    seconds = time.perf_counter() - started
    print(f"  read {table.num_rows} rows in {seconds:.2f} s ({table.num_rows / seconds:,.0f} rows/s), "
          f"{table.nbytes / 2**20:.0f} MiB in Arrow")
    check("null doubles in `value`", table.column("value").null_count, 0)
    first = table.slice(0, 1).to_pylist()[0]
    print(f"  first row: id={first['id']} value={first['value']} value_text={first['value_text']} "
          f"effective={first['effective']} effective_text={first['effective_text']}")
    # The instant must be the written text's instant.
    written = dt.datetime.fromisoformat(first["effective_text"])
    check("first effective == its text as an instant", first["effective"], written.astimezone(UTC))

    print("== duckdb")
    con = duckdb.connect()
    started = time.perf_counter()
    rows = con.execute(
        "select code, count(*), round(avg(value), 3), min(value_text), max(value_text) "
        "from read_parquet(?) group by code order by code", [path]).fetchall()
    seconds = time.perf_counter() - started
    for row in rows:
        print(f"  {row}")
    print(f"  aggregated in {seconds:.2f} s")
    check("duckdb row count", sum(r[1] for r in rows), meta.num_rows)
    kind = con.execute("select typeof(effective) from read_parquet(?) limit 1", [path]).fetchone()[0]
    check("duckdb effective type", kind, "TIMESTAMP WITH TIME ZONE")
    mismatched = con.execute(
        "select count(*) from read_parquet(?) where effective <> cast(effective_text as timestamptz)",
        [path]).fetchone()[0]
    check("duckdb rows whose instant differs from its text", mismatched, 0)


def rich(path):
    print("== rich fixture (pyarrow)")
    describe(path, columns=False)
    rows = {r["id"]: r for r in pq.read_table(path).to_pylist()}
    at = lambda *a: dt.datetime(*a, tzinfo=UTC)
    check("q-precision value", rows["q-precision"]["value"], 98.6)
    check("q-precision value_text", rows["q-precision"]["value_text"], "98.60")
    check("q-precision effective (08:00+08:00)", rows["q-precision"]["effective"], at(2024, 1, 1, 0, 0))
    check("q-precision effective_text", rows["q-precision"]["effective_text"], "2024-01-01T08:00:00+08:00")
    check("q-tiny value", rows["q-tiny"]["value"], 1e-22)
    check("q-tiny effective (08:00-05:00)", rows["q-tiny"]["effective"], at(2024, 1, 1, 13, 0))
    for ident, text in [("q-underflow", "1e-400"), ("q-overflow", "1e400"),
                        ("q-30-digits", "1.23456789012345678901234567890")]:
        check(f"{ident} value", rows[ident]["value"], None)
        check(f"{ident} value_text", rows[ident]["value_text"], text)
    check("q-30-digits effective (local)", rows["q-30-digits"]["effective"], None)
    check("q-30-digits effective_text", rows["q-30-digits"]["effective_text"], "2016-12-13T11:02:30.123")
    check("q-underflow effective_date", rows["q-underflow"]["effective_date"], dt.date(2024, 1, 1))
    check("q-16-digits effective (µs kept)", rows["q-16-digits"]["effective"],
          at(2024, 2, 2, 22, 35, 6, 789123))
    check("assumed effective", rows["assumed"]["effective"], at(2016, 12, 13, 3, 2, 30, 500000))
    check("assumed effective_zone", rows["assumed"]["effective_zone"], "assumed")
    check("before-1900 effective_date", rows["before-1900"]["effective_date"], dt.date(1899, 12, 31))
    check("int-max value_integer", rows["int-max"]["value_integer"], 2**31 - 1)
    check("bool-false value_boolean", rows["bool-false"]["value_boolean"], False)
    check("bp#1 value", rows["bp#1"]["value"], 95.0)
    check("bp#1 value_text", rows["bp#1"]["value_text"], "95.0")
    check("unreadable data_absent_reason", rows["unreadable"]["data_absent_reason"], "error")
    con = duckdb.connect()
    duck = dict(con.execute("select id, value from read_parquet(?)", [path]).fetchall())
    check("duckdb q-underflow value", duck["q-underflow"], None)
    check("duckdb q-precision value", duck["q-precision"], 98.6)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="a workload export, e.g. from the million-row test")
    parser.add_argument("--rich", help="the rich fixture's export")
    args = parser.parse_args()
    print(f"pyarrow {pa.__version__}, duckdb {duckdb.__version__}")
    million(args.file)
    if args.rich:
        rich(args.rich)
    print("FAILED: " + ", ".join(FAILED) if FAILED else "all checks passed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()
