//! Load on the scoring engine: many threads share one `Predictor` and send
//! a mix of valid and invalid requests, each in its own order, round after
//! round. Every valid request gets exactly (bit for bit) its single-threaded
//! scores, every invalid one its single-threaded error, and the process's
//! memory stays flat once the scratches have grown. Bounded: a fixed number
//! of requests and rounds (a few seconds).

use std::sync::Arc;

use dien_model::serve::{Items, Predictor, Scratch};
use dien_model::{ModelConfig, ModelKind, ParamStore};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N_UID: u32 = 40;
const N_MID: u32 = 500;
const N_CAT: u32 = 25;
const THREADS: usize = 8;
const ROUNDS: usize = 6;

struct Request {
    uid: u32,
    hist_mid: Vec<u32>,
    hist_cat: Vec<u32>,
    cand_mid: Vec<u32>,
    cand_cat: Vec<u32>,
}

/// A valid request, or (one in four) one broken in one of several ways.
fn request(rng: &mut ChaCha8Rng) -> Request {
    let (l, k) = (rng.random_range(0..40usize), rng.random_range(1..24usize));
    let mut r = Request {
        uid: rng.random_range(0..N_UID),
        hist_mid: (0..l).map(|_| rng.random_range(0..N_MID)).collect(),
        hist_cat: (0..l).map(|_| rng.random_range(0..N_CAT)).collect(),
        cand_mid: (0..k).map(|_| rng.random_range(0..N_MID)).collect(),
        cand_cat: (0..k).map(|_| rng.random_range(0..N_CAT)).collect(),
    };
    match rng.random_range(0..12) {
        0 => r.uid = N_UID + rng.random_range(0..5),
        1 => r.cand_mid[k - 1] = N_MID,
        2 if l > 0 => r.hist_cat[l / 2] = u32::MAX,
        3 => {
            r.cand_cat.pop();
        }
        4 => r.hist_mid.push(1),
        5 => {
            r.cand_mid.clear();
            r.cand_cat.clear();
        }
        _ => {}
    }
    r
}

/// The outcome of a request: score bits, or the error message.
fn score(p: &Predictor, scratch: &mut Scratch, r: &Request) -> Result<Vec<u32>, String> {
    p.score(scratch, r.uid, Items::new(&r.hist_mid, &r.hist_cat), Items::new(&r.cand_mid, &r.cand_cat))
        .map(|s| s.iter().map(|x| x.to_bits()).collect())
        .map_err(|e| e.to_string())
}

/// Resident memory of this process in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pages * 4096
}

#[test]
fn many_threads_one_predictor_mixed_requests() {
    let mut cfg = ModelConfig::new(ModelKind::Dien, N_UID as usize, N_MID as usize, N_CAT as usize);
    cfg.d = 8;
    cfg.hidden = 16;
    cfg.max_len = 30;
    let p = Arc::new(Predictor::new(cfg.clone(), ParamStore::init(&cfg, 7)).unwrap());
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let requests: Vec<Request> = (0..400).map(|_| request(&mut rng)).collect();
    let mut scratch = Scratch::new();
    let expected: Vec<Result<Vec<u32>, String>> = requests.iter().map(|r| score(&p, &mut scratch, r)).collect();
    let invalid = expected.iter().filter(|e| e.is_err()).count();
    assert!(invalid > 40 && invalid < 200, "{invalid} invalid requests: the mix is not a mix");

    let mut rss_after_first = 0;
    for round in 0..ROUNDS {
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (p, requests, expected) = (&p, &requests, &expected);
                s.spawn(move || {
                    let mut order: Vec<usize> = (0..requests.len()).collect();
                    order.shuffle(&mut ChaCha8Rng::seed_from_u64((round * THREADS + t) as u64));
                    let mut scratch = Scratch::new();
                    for i in order {
                        let got = score(p, &mut scratch, &requests[i]);
                        assert_eq!(got, expected[i], "thread {t}, round {round}, request {i}");
                    }
                });
            }
        });
        if round == 0 {
            rss_after_first = rss();
        }
    }
    // Later rounds allocate scratches of the sizes already seen: memory stays
    // flat (a leak of one buffer per request would add megabytes).
    let growth = rss().saturating_sub(rss_after_first);
    eprintln!(
        "resident memory after round 1: {} KiB, growth over {} more rounds: {} KiB",
        rss_after_first >> 10,
        ROUNDS - 1,
        growth >> 10
    );
    assert!(growth < 4 << 20, "resident memory grew by {growth} bytes over {} rounds", ROUNDS - 1);
}
