//! `dien bench`.

use anyhow::Result;
use dien_model::cost::flops_per_sample;
use dien_trainer::bench::{time_requests, time_steps};
use serde_json::json;

use crate::cli::{BenchArgs, BenchMode};

/// Times full steps (`train`, `infer`) or requests (`score`); the last line
/// is a JSON object.
pub(crate) fn run(a: &BenchArgs) -> Result<()> {
    // Every core unless told: the same default as the other commands.
    let threads = a.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let train_mode = match a.mode {
        BenchMode::Train => true,
        BenchMode::Infer => false,
        BenchMode::Score => return run_score(a, threads),
    };
    let mut cfg = a.arch.model_config(a.model, 1000, 50_000, 800)?;
    cfg.max_len = a.seqlen.max(1);
    let timed = time_steps(&cfg, a.batch, a.seqlen, threads, a.steps, train_mode, a.stages)?;
    let mut sorted = timed.steps.clone();
    sorted.sort_by(f64::total_cmp);
    let med = sorted[sorted.len() / 2];
    let sps = a.batch as f64 / med;
    let yard = dien_engine::gemm::sgemm_yardstick_gflops(1024, 3);
    let gflops = flops_per_sample(&cfg, a.seqlen, train_mode) * sps / 1e9;
    eprintln!(
        "{} {} B={} T={} threads={}: median {:.2} ms/step, {:.0} samples/s, {:.1} GFLOP/s ({:.1}% of {} x {:.1} GFLOP/s single-thread SGEMM) [{}]",
        a.model,
        a.mode.name(),
        a.batch,
        a.seqlen,
        threads,
        med * 1e3,
        sps,
        gflops,
        100.0 * gflops / (yard * threads as f64),
        threads,
        yard,
        dien_engine::simd_target()
    );
    let mut line = json!({"impl": "dien-rs", "mode": a.mode.name(), "model": a.model.to_string(), "batch": a.batch,
                          "T": a.seqlen, "threads": threads, "samples_per_s": sps, "ms_per_step": med * 1e3,
                          "gflops": gflops, "sgemm_gflops_1thread": yard});
    if let Some(stages) = &timed.stages {
        // Mean milliseconds per step of each stage, and the rest of the
        // step (the time between stages: step bookkeeping).
        let n = timed.steps.len() as f64;
        let total: f64 = timed.steps.iter().sum::<f64>() / n;
        eprintln!("{:<20} {:>9} {:>7}", "stage", "ms/step", "share");
        let mut map = serde_json::Map::new();
        let mut covered = 0.0;
        for &(name, secs) in stages {
            let ms = secs / n * 1e3;
            covered += secs / n;
            eprintln!("{name:<20} {ms:>9.3} {:>6.1}%", 100.0 * secs / n / total);
            map.insert(name.to_string(), json!(ms));
        }
        let rest = (total - covered).max(0.0);
        eprintln!("{:<20} {:>9.3} {:>6.1}%", "other", rest * 1e3, 100.0 * rest / total);
        map.insert("other".into(), json!(rest * 1e3));
        line["stages_ms_per_step"] = serde_json::Value::Object(map);
    }
    println!("{line}");
    Ok(())
}

/// `dien bench --mode score`: times the request path for one user with a
/// history of `--seqlen` behaviours and `--candidates` items, each of
/// `--threads` threads scoring on its own scratch. Prints the benchmark
/// line (`batch` = candidates per request, `samples_per_s` = candidates
/// scored per second over all threads, `ms_per_step` = median request
/// latency) with `p50_us` and `p99_us` added.
fn run_score(a: &BenchArgs, threads: usize) -> Result<()> {
    let mut cfg = a.arch.model_config(a.model, 1000, 50_000, 800)?;
    cfg.max_len = a.seqlen.max(1);
    let mut times = time_requests(&cfg, a.candidates, a.seqlen, threads, a.steps, a.precision)?;
    times.sort_by(f64::total_cmp);
    let pct = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let (p50, p99) = (pct(0.5), pct(0.99));
    // Throughput of the timed requests (warm-up excluded): the threads run
    // side by side, so their busy time divided by their number is the span.
    let span = times.iter().sum::<f64>() / threads as f64;
    let cps = (times.len() * a.candidates) as f64 / span;
    eprintln!(
        "{} score K={} T={} threads={} precision={}: p50 {:.1} µs, p99 {:.1} µs, {:.0} candidates/s over {} requests [{}]",
        a.model,
        a.candidates,
        a.seqlen,
        threads,
        a.precision,
        p50 * 1e6,
        p99 * 1e6,
        cps,
        times.len(),
        dien_engine::simd_target()
    );
    println!(
        "{}",
        json!({"impl": "dien-rs", "mode": "score", "model": a.model.to_string(), "batch": a.candidates,
               "T": a.seqlen, "threads": threads, "samples_per_s": cps, "ms_per_step": p50 * 1e3,
               "p50_us": p50 * 1e6, "p99_us": p99 * 1e6, "candidates": a.candidates,
               "precision": a.precision.name()})
    );
    Ok(())
}
