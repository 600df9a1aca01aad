//! `diffrecon bench --latency N`: the table a host reads (its columns, one row per step count,
//! ordered percentiles), the bundled prior as the default, and each bad argument's exit-2
//! message. The timings themselves are the machine's; only their order is checked.

use std::process::{Command, Output};

mod common;
use common::small_weights;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diffrecon"))
        .args(args)
        .output()
        .unwrap()
}

/// `bench --latency …` on the small golden weights at 16×16 on the CPU, plus `extra`.
fn latency(extra: &[&str]) -> Output {
    let w = small_weights();
    let mut args = vec![
        "bench",
        "--device",
        "cpu",
        "--size",
        "16",
        "--weights",
        w.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn stdout_ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {err}");
    String::from_utf8(out.stdout.clone()).unwrap()
}

const HEADER: &str =
    "| steps | warm runs | load ms | cold ms | p50 ms | p95 ms | p99 ms | max ms |";

/// The table's data rows as numbers: steps, runs, load, cold, p50, p95, p99, max.
fn rows(stdout: &str) -> Vec<Vec<f64>> {
    let mut lines = stdout.lines().skip_while(|l| *l != HEADER);
    assert_eq!(lines.next(), Some(HEADER), "no latency table in: {stdout}");
    assert_eq!(lines.next(), Some("|---|---|---|---|---|---|---|---|"));
    lines
        .map(|l| {
            let cells: Vec<f64> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().parse().unwrap_or_else(|_| panic!("cell in {l}")))
                .collect();
            assert_eq!(cells.len(), 8, "row {l}");
            cells
        })
        .collect()
}

fn check_row(row: &[f64], steps: f64, runs: f64) {
    assert_eq!((row[0], row[1]), (steps, runs), "row {row:?}");
    let [load, cold, p50, p95, p99, max] = [row[2], row[3], row[4], row[5], row[6], row[7]];
    assert!(
        load > 0.0 && cold >= load,
        "cold includes the load: {row:?}"
    );
    assert!(
        0.0 < p50 && p50 <= p95 && p95 <= p99 && p99 <= max,
        "percentiles out of order: {row:?}"
    );
}

#[test]
fn latency_table_has_one_ordered_row_per_step_count() {
    let out = stdout_ok(&latency(&["--latency", "3", "--steps", "2,3"]));
    assert!(out.contains("DiffPIR (published)"), "{out}");
    assert!(out.contains("nearest rank"), "{out}");
    let rows = rows(&out);
    assert_eq!(rows.len(), 2, "{out}");
    check_row(&rows[0], 2.0, 3.0);
    check_row(&rows[1], 3.0, 3.0);
}

#[test]
fn latency_runs_other_samplers_and_ct() {
    for extra in [
        &["--sampler", "dps"][..],
        &["--sampler", "diffpir"],
        &["--sampler", "dps-paper"],
        &["--operator", "ct", "--views", "20"],
    ] {
        let mut args = vec!["--latency", "2", "--steps", "2"];
        args.extend_from_slice(extra);
        let out = stdout_ok(&latency(&args));
        let rows = rows(&out);
        assert_eq!(rows.len(), 1, "{args:?}: {out}");
        check_row(&rows[0], 2.0, 2.0);
    }
    let ct = stdout_ok(&latency(&[
        "--latency",
        "1",
        "--steps",
        "2",
        "--operator",
        "ct",
    ]));
    assert!(ct.contains("parallel-beam CT, 60 views"), "{ct}");
}

#[test]
fn latency_defaults_to_the_bundled_prior() {
    let out = stdout_ok(&run(&[
        "bench",
        "--device",
        "cpu",
        "--latency",
        "1",
        "--steps",
        "2",
    ]));
    assert!(
        out.contains(&format!("weights/{}", diffrecon::DEFAULT_WEIGHTS)),
        "{out}"
    );
    check_row(&rows(&out)[0], 2.0, 1.0);
}

/// The timing table at batch 1, 2 steps, one repeat.
const ONE_QUICK_ROW: [&str; 6] = ["--batches", "1", "--steps", "2", "--repeats", "1"];

#[test]
fn bench_without_latency_keeps_its_table() {
    let out = stdout_ok(&latency(&ONE_QUICK_ROW));
    assert!(out.contains("| op | batch | median ms | min ms |"), "{out}");
    for op in [
        "forward",
        "vjp",
        "diffpir_2",
        "dps_2",
        "diffpir_pnp_2",
        "dps_paper_2",
    ] {
        assert!(out.contains(&format!("| {op} | 1 | ")), "{op}: {out}");
    }
    assert!(!out.contains("p99"), "{out}");
}

/// `--profile` on the CPU: after the timings, one table per op of the backend ops' wall time by
/// layer shape, whose shares add up to the table's total.
#[test]
fn bench_profile_on_the_cpu_tables_each_op_by_layer() {
    let out = stdout_ok(&latency(&[&ONE_QUICK_ROW[..], &["--profile"]].concat()));
    for op in ["forward", "vjp", "dps_2"] {
        let at = out
            .find(&format!("### profile: {op} batch 1"))
            .unwrap_or_else(|| panic!("no {op} profile in: {out}"));
        let table = &out[at..];
        let table = &table[..table.find("| all |").expect("a total row")];
        assert!(table.contains("| conv2d 3x3/1 "), "{op}: {table}");
        let shares: f64 = table
            .lines()
            .filter_map(|l| {
                l.strip_suffix("% |")?
                    .rsplit("| ")
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
            .sum();
        assert!((shares - 100.0).abs() < 1.0, "{op}: shares {shares}");
    }
    let vjp = &out[out.find("### profile: vjp").unwrap()..];
    assert!(vjp.contains("| conv2d_vjp 3x3/1 "), "{vjp}");
}

#[test]
fn bad_latency_arguments_exit_2_with_a_message() {
    let cases: [(&[&str], &str); 17] = [
        (
            &["--latency", "0"],
            "--latency takes the number of warm runs, 1 to 10000, got 0",
        ),
        (&["--latency", "-3"], "got -3"),
        (&["--latency", "10001"], "1 to 10000, got 10001"),
        (
            &["--latency", "2", "--steps", "1"],
            "--steps must be at least 2, got 1",
        ),
        (
            &["--latency", "2", "--steps", "10,0"],
            "--steps must be at least 2, got 0",
        ),
        (&["--latency", "2", "--steps", "401"], "between 2 and 400"),
        (
            &["--latency", "2", "--batches", "1"],
            "--batches does not apply",
        ),
        (
            &["--latency", "2", "--repeats", "3"],
            "--repeats does not apply",
        ),
        (&["--latency", "2", "--profile"], "--profile does not apply"),
        (&["--latency", "2", "--sampler", "tv"], "diffusion samplers"),
        (
            &["--latency", "2", "--operator", "ct", "--views", "0"],
            "--views",
        ),
        (
            &["--latency", "2", "--views", "30"],
            "--views applies to --operator ct",
        ),
        (&["--latency", "2", "--size", "8"], "out of range"),
        // A slice the model's size rule refuses: the engine's message.
        (
            &["--latency", "1", "--steps", "2", "--size", "18"],
            "multiples of 4",
        ),
        (
            &["--sampler", "dps"],
            "--sampler applies to --latency N only",
        ),
        (
            &["--steps", "10,20"],
            "--steps takes one value without --latency",
        ),
        (&["--operator", "ct"], "apply to --latency N only"),
    ];
    for (extra, needle) in cases {
        let w = small_weights();
        let mut args = vec!["bench", "--device", "cpu", "--weights", w.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{extra:?} panicked: {err}");
        assert!(
            err.contains(needle),
            "{extra:?}: expected '{needle}' in: {err}"
        );
    }
}
