//! Engine throughput benchmark: definitions from bench/definitions, each run in its own
//! process (so peak RSS is per definition), printing transitions/second and peak memory, and
//! — when Node.js is available — the same files on aws-local-stepfunctions for a side-by-side
//! ratio (it has no Distributed Map, so those cases stand alone, in items/second). Run with
//! `cargo bench -p opsflow-asl --bench engine` (or `make bench`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use opsflow_asl::{model, Engine, MemoryStore, StartOptions, Status, TaskRequest};
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    file: &'static str,
    input: fn() -> Value,
    als_args: &'static [&'static str],
    /// Items a Map processes (0: not a Map case), for items/second.
    items: usize,
    runs: usize,
    /// Keep the history (and the Distributed Map's child histories) in the result.
    record: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "counter loop (Choice+Pass, States.MathAdd)",
        file: "counter-loop.asl.json",
        input: || json!({"i": 0, "n": 5000}),
        als_args: &["--input", r#"{"i":0,"n":5000}"#],
        items: 0,
        runs: RUNS,
        record: true,
    },
    Case {
        name: "Map over 10,000 items (Pass)",
        file: "map-pass.asl.json",
        input: || json!({"items": (0..10_000).collect::<Vec<_>>()}),
        als_args: &["--items", "10000"],
        items: 10_000,
        runs: RUNS,
        record: true,
    },
    Case {
        name: "Task loop (in-process handler)",
        file: "task-loop.asl.json",
        input: || json!({"i": 0, "n": 5000}),
        als_args: &["--input", r#"{"i":0,"n":5000}"#, "--handler", "counter"],
        items: 0,
        runs: RUNS,
        record: true,
    },
    Case {
        name: "Distributed Map 100,000 items, batches of 100",
        file: "distributed-map-batch100.asl.json",
        input: || json!({}),
        als_args: &[],
        items: 100_000,
        runs: 5,
        record: false,
    },
    Case {
        name: "Distributed Map 100,000 items, batches of 1",
        file: "distributed-map-batch1.asl.json",
        input: || json!({}),
        als_args: &[],
        items: 100_000,
        runs: 3,
        record: false,
    },
];

const RUNS: usize = 25;

fn definitions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/definitions")
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Child process: run one case RUNS times, print {"tps", "transitions", "seconds", "peak_rss"}.
fn run_one(case: &Case) {
    let text = std::fs::read_to_string(definitions_dir().join(case.file)).unwrap();
    let sm = Arc::new(model::parse(&text).expect("valid definition"));
    // The Distributed Maps read their 100,000 items from s3://bench/items.json, in memory.
    let store = Arc::new(MemoryStore::new());
    if case.file.starts_with("distributed") {
        let items: Vec<Value> = (0..case.items).map(|i| json!({"id": i})).collect();
        store.insert("bench", "items.json", Value::Array(items).to_string());
    }
    let engine = Engine::builder()
        .object_store(store)
        .lambda("counter", |req: TaskRequest| async move {
            let mut v = req.payload;
            let i = v["i"].as_i64().unwrap_or(0);
            v["i"] = json!(i + 1);
            Ok(v)
        })
        .build();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut best = f64::MAX;
    let mut transitions = 0;
    for _ in 0..case.runs {
        let input = (case.input)();
        let opts = StartOptions {
            record_history: case.record,
            ..StartOptions::default()
        };
        let t = Instant::now();
        let r = rt.block_on(engine.run(&sm, input, opts));
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(r.status, Status::Succeeded, "{:?} {:?}", r.error, r.cause);
        transitions = r.transitions;
        best = best.min(secs);
    }
    println!(
        "{}",
        json!({"transitions": transitions, "seconds": best, "tps": transitions as f64 / best,
            "items_per_s": case.items as f64 / best, "peak_rss": peak_rss_bytes()})
    );
}

fn child(case_index: usize) -> Option<Value> {
    let out = Command::new(std::env::current_exe().ok()?)
        .env("OPSFLOW_BENCH_CASE", case_index.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("case {case_index} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    serde_json::from_slice(out.stdout.split(|b| *b == b'\n').find(|l| l.starts_with(b"{"))?).ok()
}

/// aws-local-stepfunctions on the same file: best of 3 runs, or None when Node or the
/// package (bench/als, `npm ci` there) is missing.
fn als(case: &Case) -> Option<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/als");
    if case.als_args.is_empty() {
        return None;
    }
    if !dir.join("node_modules/aws-local-stepfunctions").exists() {
        return None;
    }
    let mut best: Option<Value> = None;
    for _ in 0..3 {
        let out = Command::new("node")
            .current_dir(&dir)
            .arg("run.mjs")
            .arg("--definition")
            .arg(definitions_dir().join(case.file))
            .args(case.als_args)
            .arg("--no-events")
            .output()
            .ok()?;
        let v: Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').find(|l| l.starts_with(b"{"))?).ok()?;
        if v["status"] != "SUCCEEDED" {
            return None;
        }
        if best.as_ref().is_none_or(|b| v["seconds"].as_f64() < b["seconds"].as_f64()) {
            best = Some(v);
        }
    }
    best
}

fn main() {
    if let Ok(i) = std::env::var("OPSFLOW_BENCH_CASE") {
        run_one(&CASES[i.parse::<usize>().unwrap()]);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("opsflow-asl engine benchmark (best of {RUNS} runs — 5 and 3 for the Distributed Maps, whose child histories are not kept — one process per definition)");
    println!(
        "{:<48} {:>11} {:>14} {:>10} {:>10} | {:>14} {:>10} {:>8}",
        "definition", "transitions", "transitions/s", "items/s", "peak RSS", "ALS trans/s", "ALS RSS", "ratio"
    );
    for (i, case) in CASES.iter().enumerate() {
        let Some(ours) = child(i) else { continue };
        let tps = ours["tps"].as_f64().unwrap_or(0.0);
        let rss = ours["peak_rss"].as_f64().unwrap_or(0.0) / 1048576.0;
        let (als_tps, als_rss, ratio) = match als(case) {
            Some(a) => {
                let t = a["transitions"]
                    .as_f64()
                    .unwrap_or(ours["transitions"].as_f64().unwrap_or(0.0))
                    .max(ours["transitions"].as_f64().unwrap_or(0.0))
                    / a["seconds"].as_f64().unwrap_or(f64::MAX);
                (
                    format!("{t:.0}"),
                    format!("{:.1} MiB", a["peakRssBytes"].as_f64().unwrap_or(0.0) / 1048576.0),
                    format!("{:.1}x", tps / t),
                )
            }
            None => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        // A Distributed Map's parent makes one transition; its children are counted in items.
        let tps = if case.file.starts_with("distributed") {
            "-".to_string()
        } else {
            format!("{tps:.0}")
        };
        let items = match ours["items_per_s"].as_f64() {
            Some(x) if case.items > 0 => format!("{x:.0}"),
            _ => "-".into(),
        };
        println!(
            "{:<48} {:>11} {:>14} {:>10} {:>6.1} MiB | {:>14} {:>10} {:>8}",
            case.name, ours["transitions"], tps, items, rss, als_tps, als_rss, ratio
        );
    }
}
