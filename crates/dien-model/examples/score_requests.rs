//! Scores requests with the Rust request path (`dien_model::serve::Predictor`)
//! and prints every probability's exact bits, so that another front end (the
//! Python package's tests) can check it computes the same scores bit for bit.
//!
//! ```sh
//! cargo run --release -p dien-model --example score_requests -- m.safetensors requests.json
//! ```
//!
//! `requests.json` is a JSON array of requests, each either by string id
//! (`{"uid": "u1", "hist_items": ["i1", ...], "hist_cats": [...],
//! "cand_items": [...], "cand_cats": [...]}`, `uid` optional) or by index
//! (`{"uid": 3, "hist_mid": [5, 6], "hist_cat": [1, 2], "cand_mid": [...],
//! "cand_cat": [...]}`). The output has one line per request: a JSON array
//! of the probabilities' `f32` bit patterns as integers (`f32::to_bits`).

use std::path::Path;
use std::process::ExitCode;

use dien_model::serve::{Items, Predictor, Scratch};
use serde_json::Value;

fn strings(r: &Value, key: &str) -> Result<Vec<String>, String> {
    let a = r.get(key).and_then(Value::as_array).ok_or_else(|| format!("`{key}` must be an array"))?;
    a.iter().map(|v| v.as_str().map(str::to_owned).ok_or_else(|| format!("`{key}` must hold strings"))).collect()
}

fn indices(r: &Value, key: &str) -> Result<Vec<u32>, String> {
    let a = r.get(key).and_then(Value::as_array).ok_or_else(|| format!("`{key}` must be an array"))?;
    a.iter()
        .map(|v| v.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or_else(|| format!("`{key}` must hold indices")))
        .collect()
}

fn run(ckpt: &Path, requests: &Path) -> Result<(), String> {
    let p = Predictor::load(ckpt).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(requests).map_err(|e| format!("{}: {e}", requests.display()))?;
    let reqs: Vec<Value> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let mut scratch = Scratch::new();
    for r in &reqs {
        let scores = if r.get("cand_items").is_some() {
            let user = r.get("uid").and_then(Value::as_str).unwrap_or("");
            let (hi, hc) = (strings(r, "hist_items")?, strings(r, "hist_cats")?);
            let (ci, cc) = (strings(r, "cand_items")?, strings(r, "cand_cats")?);
            p.score_ids(&mut scratch, user, &hi, &hc, &ci, &cc).map_err(|e| e.to_string())?
        } else {
            let uid = r.get("uid").and_then(Value::as_u64).unwrap_or(0);
            let uid = u32::try_from(uid).map_err(|_| "`uid` out of range".to_string())?;
            let (hm, hc) = (indices(r, "hist_mid")?, indices(r, "hist_cat")?);
            let (cm, cc) = (indices(r, "cand_mid")?, indices(r, "cand_cat")?);
            p.score(&mut scratch, uid, Items::new(&hm, &hc), Items::new(&cm, &cc)).map_err(|e| e.to_string())?
        };
        let bits: Vec<u32> = scores.iter().map(|x| x.to_bits()).collect();
        println!("{}", serde_json::to_string(&bits).map_err(|e| e.to_string())?);
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: score_requests CHECKPOINT REQUESTS.json");
        return ExitCode::from(2);
    }
    match run(Path::new(&args[1]), Path::new(&args[2])) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("score_requests: {e}");
            ExitCode::FAILURE
        }
    }
}
