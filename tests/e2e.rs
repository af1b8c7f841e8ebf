//! End to end, across the crates: `dien generate` → `dien train` → `dien
//! eval` → `dien predict` → `dien grads` run as a user would, then the
//! same checkpoints scored through the C ABI (`dien_capi`, called from
//! Rust) and through `dien_model::serve::Predictor`, for the last and the
//! best checkpoint of the run.
//!
//! The data set and the trained checkpoints are made once per test binary
//! (a shared fixture) in `target/tmp/e2e`; each test reads them.

mod common;

use std::ffi::{CStr, CString, c_char};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{Request, dien, last_json, read_probabilities, requests, s, scratch_dir};
use dien_capi::{
    DIEN_ERR_LOAD, DIEN_OK, DienPredictor, dien_last_error, dien_predictor_free, dien_predictor_has_vocabs,
    dien_predictor_max_len, dien_predictor_open, dien_score, dien_score_ids,
};
use dien_model::checkpoint;
use dien_model::serve::{Items, Precision, Predictor, Scratch, Vocabs};
use dien_trainer::data::DataSet;

/// Largest difference allowed between `dien predict` (the batched training
/// forward pass, `fast::Model::forward` in evaluation mode) and the request
/// path (`Predictor`): the same equations, summed in different orders
/// (about 1e-7 seen; 1e-6 is some 16 units in the last place near 0.5).
const PREDICT_TOLERANCE: f32 = 1e-6;

/// A generated data set and a short training run on it.
struct Fixture {
    dir: PathBuf,
    data: PathBuf,
    /// The last checkpoint, `m.safetensors`.
    last: PathBuf,
    /// The best checkpoint, `m.best.safetensors`.
    best: PathBuf,
    /// The training run's summary (its last line of output).
    train: serde_json::Value,
}

impl Fixture {
    fn test_file(&self) -> PathBuf {
        DataSet::test_file(&self.data)
    }
}

/// Generates a small data set (300 users) and trains DIEN for 4 steps,
/// evaluating every step (so that the best checkpoint is written).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = scratch_dir("e2e");
        let data = dir.join("data");
        let (out, _) = dien(&["generate", "--out", s(&data), "--seed", "3", "--users", "300"]);
        assert!(last_json(&out)["test_samples"].as_u64().unwrap() > 0);
        let last = dir.join("ck/m.safetensors");
        let (out, _) = dien(&[
            "train",
            "--data",
            s(&data),
            "--model",
            "dien",
            "--out",
            s(&last),
            "--epochs",
            "1",
            "--seed",
            "4",
            "--threads",
            "2",
            "--dim",
            "4",
            "--hidden",
            "8",
            "--max-steps",
            "4",
            "--eval-every",
            "1",
            "--quiet",
        ]);
        let train = last_json(&out);
        let best = dien_trainer::train::best_path(&last);
        Fixture { dir, data, last, best, train }
    })
}

#[test]
fn train_then_eval_reproduces_the_metrics() {
    let f = fixture();
    let j = &f.train;
    for k in ["auc", "gauc", "logloss", "accuracy", "samples", "steps", "best_auc", "valid", "best", "split"] {
        assert!(j.get(k).is_some(), "train output lacks {k}: {j}");
    }
    assert_eq!(j["steps"], 4);
    let (out, _) = dien(&["eval", "--checkpoint", s(&f.last), "--data", s(&f.data)]);
    let e = last_json(&out);
    assert_eq!(e["samples"], j["samples"]);
    assert_eq!(e["auc"], j["auc"], "eval of the saved checkpoint reproduces the training run's final metrics");
    // The test file itself, named directly, gives the same metrics.
    let (out, _) = dien(&["eval", "--checkpoint", s(&f.last), "--data", s(&f.test_file())]);
    assert_eq!(last_json(&out), e);

    // The best checkpoint (the best validation AUC the run saw) stands on
    // its own (with its vocabulary sidecar), and its test metrics are those
    // the run reported for it.
    assert!(checkpoint::sidecar_path(&f.best, checkpoint::VOCAB_SUFFIX).is_file());
    let (out, _) = dien(&["eval", "--checkpoint", s(&f.best), "--data", s(&f.data)]);
    let b = last_json(&out);
    assert_eq!(b["samples"], j["samples"]);
    assert_eq!(b["auc"], j["best"]["test"]["auc"], "eval of m.best.safetensors gives the best model's test AUC");
    assert_eq!(j["best"]["valid_auc"], j["best_auc"]);
    let (best_auc, last_auc) = (j["best_auc"].as_f64().unwrap(), j["valid"]["auc"].as_f64().unwrap());
    assert!(best_auc >= last_auc);
    if j["best"]["step"] != j["steps"] {
        // An earlier model: different parameters.
        let (_, best) = checkpoint::load(&f.best).unwrap();
        let (_, last) = checkpoint::load(&f.last).unwrap();
        assert!(best.iter().zip(last.iter()).any(|(a, b)| a.1 != b.1), "best and last checkpoints are equal");
    }
}

#[test]
fn predict_writes_one_probability_per_line_in_order() {
    let f = fixture();
    let test = f.test_file();
    let dir = f.dir.join("predict-order");
    std::fs::create_dir_all(&dir).unwrap();
    let preds = dir.join("p.txt");
    dien(&["predict", "--checkpoint", s(&f.last), "--data", s(&test), "--out", s(&preds)]);
    let text = std::fs::read_to_string(&test).unwrap();
    let p = read_probabilities(&preds);
    assert_eq!(p.len(), text.lines().count());
    assert!(p.iter().all(|&x| x > 0.0 && x < 1.0));
    // Scoring a file holding only line 2 gives line 2's probability.
    let one = dir.join("one");
    std::fs::write(&one, format!("{}\n", text.lines().nth(1).unwrap())).unwrap();
    let p1 = dir.join("p1.txt");
    dien(&["predict", "--checkpoint", s(&f.last), "--data", s(&one), "--out", s(&p1)]);
    let v = read_probabilities(&p1);
    assert_eq!(v.len(), 1);
    assert!((v[0] - p[1]).abs() < 1e-6, "{} vs {}", v[0], p[1]);
    // Lines without the label column (data to be scored) give the same
    // probabilities as the labelled lines.
    let unlabelled = dir.join("unlabelled");
    let stripped: String = text.lines().map(|l| format!("{}\n", l.split_once('\t').unwrap().1)).collect();
    std::fs::write(&unlabelled, stripped).unwrap();
    let pu = dir.join("pu.txt");
    dien(&["predict", "--checkpoint", s(&f.last), "--data", s(&unlabelled), "--out", s(&pu)]);
    assert_eq!(std::fs::read_to_string(&pu).unwrap(), std::fs::read_to_string(&preds).unwrap());
}

#[test]
fn predict_in_bf16_is_close_to_f32_or_names_the_missing_cpu_feature() {
    let f = fixture();
    let test = f.test_file();
    let dir = f.dir.join("predict-bf16");
    std::fs::create_dir_all(&dir).unwrap();
    let (p32, p16) = (dir.join("f32.txt"), dir.join("bf16.txt"));
    dien(&["predict", "--checkpoint", s(&f.last), "--data", s(&test), "--out", s(&p32)]);
    // The request path over the file in f32 (what --precision bf16 runs, in
    // f32): the batch path's probabilities, samples of one history grouped
    // into requests (also across batch sizes that cut a group in two).
    let (model, vocabs) = dien_trainer::train::load_checkpoint(&f.last).unwrap();
    let pred = Predictor::from_model(&model).unwrap();
    let r = dien_trainer::predict::predict_file_requests(&pred, vocabs, &test, 7).unwrap();
    let batch = read_probabilities(&p32);
    assert_eq!(r.logits.len(), batch.len());
    assert!(r.requests < batch.len(), "positive and negative lines share a request");
    assert!(r.labels.iter().all(|&y| y == 0.0 || y == 1.0) && r.labels.contains(&1.0));
    for (&z, &p) in r.logits.iter().zip(&batch) {
        assert!((1.0 / (1.0 + (-z).exp()) - p).abs() <= PREDICT_TOLERANCE, "{z} vs probability {p}");
    }
    let args = ["predict", "--checkpoint", s(&f.last), "--data", s(&test), "--out", s(&p16), "--precision", "bf16"];
    if !Precision::Bf16.supported() {
        let out = std::process::Command::new(common::dien_bin()).args(args).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("AVX512_BF16"), "{err}");
        println!("skipped the comparison: this CPU lacks AVX512_BF16 (checked the error)");
        return;
    }
    let (out, _) = dien(&args);
    assert_eq!(last_json(&out)["precision"], "bf16");
    let (a, b) = (read_probabilities(&p32), read_probabilities(&p16));
    assert_eq!(a.len(), b.len());
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst < 0.01, "largest probability difference {worst}");
    println!("largest |bf16 - f32| probability of dien predict: {worst:e}");
}

#[test]
fn grads_dump_every_parameter_and_leave_the_checkpoint() {
    let f = fixture();
    let dir = f.dir.join("grads");
    std::fs::create_dir_all(&dir).unwrap();
    // grads: logits, losses and grad.<name> for every parameter, dense.
    let batch = dir.join("b.json");
    std::fs::write(
        &batch,
        r#"{"uid":[1,2,3],"mid":[1,2,3],"cat":[1,1,2],"hist_mid":[[1,2],[],[3,1,2]],"hist_cat":[[1,1],[],[2,1,1]],
            "neg_mid":[[2,3],[],[1,2,3]],"neg_cat":[[1,2],[],[1,1,2]],"label":[1,0,1]}"#,
    )
    .unwrap();
    let (cfg, params) = checkpoint::load(&f.last).unwrap();
    assert_eq!(cfg.model, dien_model::ModelKind::Dien);
    for extra in [&[][..], &["--f64"][..]] {
        let g = dir.join("g.safetensors");
        let mut args = vec!["grads", "--checkpoint", s(&f.last), "--batch", s(&batch), "--out", s(&g)];
        args.extend_from_slice(extra);
        dien(&args);
        let (_, tensors) = checkpoint::load_tensors(&g).unwrap();
        let get = |n: &str| tensors.iter().find(|t| t.0 == n).unwrap_or_else(|| panic!("{n} missing"));
        assert_eq!(get("logits").1, vec![3]);
        for n in ["loss", "loss_target", "loss_aux"] {
            assert_eq!(get(n).1, vec![1]);
        }
        assert!(get("loss_aux").2[0] > 0.0);
        for (tensor, _) in params.iter() {
            if tensor.kind == dien_model::TensorKind::Param {
                assert_eq!(get(&format!("grad.{}", tensor.name)).1, tensor.shape, "{}", tensor.name);
            }
        }
        let (_, after) = checkpoint::load(&f.last).unwrap();
        assert!(after.iter().zip(params.iter()).all(|(a, b)| a.1 == b.1), "grads must not change the checkpoint");
    }
}

/// A predictor opened through the C ABI, freed on drop.
struct CPredictor(*mut DienPredictor);

impl CPredictor {
    fn open(path: &Path) -> Self {
        let c = CString::new(s(path)).unwrap();
        let mut p = std::ptr::null_mut();
        // SAFETY: `c` is NUL-terminated, `p` is writable.
        let rc = unsafe { dien_predictor_open(c.as_ptr(), &mut p) };
        assert_eq!(rc, DIEN_OK, "dien_predictor_open({}): {}", path.display(), last_error());
        assert!(!p.is_null());
        Self(p)
    }

    /// `dien_score_ids` on a request (a per-thread scratch).
    fn score_ids(&self, r: &Request) -> Vec<f32> {
        let cstrings = |v: &[String]| v.iter().map(|x| CString::new(x.as_str()).unwrap()).collect::<Vec<_>>();
        let ptrs = |v: &[CString]| v.iter().map(|x| x.as_ptr()).collect::<Vec<*const c_char>>();
        let user = CString::new(r.user.as_str()).unwrap();
        let (hm, hc) = (cstrings(&r.hist_items), cstrings(&r.hist_cats));
        let (cm, cc) = (cstrings(&r.cand_items), cstrings(&r.cand_cats));
        let (hm_p, hc_p, cm_p, cc_p) = (ptrs(&hm), ptrs(&hc), ptrs(&cm), ptrs(&cc));
        let mut out = vec![f32::NAN; r.cand_items.len()];
        // SAFETY: every array holds its stated number of NUL-terminated
        // strings, alive for the call; `out` holds one float per candidate.
        let rc = unsafe {
            dien_score_ids(
                self.0,
                std::ptr::null_mut(),
                user.as_ptr(),
                hm_p.as_ptr(),
                hc_p.as_ptr(),
                hm_p.len(),
                cm_p.as_ptr(),
                cc_p.as_ptr(),
                cm_p.len(),
                out.as_mut_ptr(),
            )
        };
        assert_eq!(rc, DIEN_OK, "dien_score_ids: {}", last_error());
        out
    }

    /// `dien_score` by index (a per-thread scratch).
    fn score(&self, uid: u32, hist: Items<'_>, cands: Items<'_>) -> Vec<f32> {
        let mut out = vec![f32::NAN; cands.len()];
        // SAFETY: the arrays hold their stated lengths; `out` one float per
        // candidate.
        let rc = unsafe {
            dien_score(
                self.0,
                std::ptr::null_mut(),
                uid,
                hist.mid.as_ptr(),
                hist.cat.as_ptr(),
                hist.len(),
                cands.mid.as_ptr(),
                cands.cat.as_ptr(),
                cands.len(),
                out.as_mut_ptr(),
            )
        };
        assert_eq!(rc, DIEN_OK, "dien_score: {}", last_error());
        out
    }
}

impl Drop for CPredictor {
    fn drop(&mut self) {
        // SAFETY: opened by `dien_predictor_open`, freed once.
        unsafe { dien_predictor_free(self.0) }
    }
}

fn last_error() -> String {
    // SAFETY: `dien_last_error` returns a NUL-terminated string valid until
    // the next failing call on this thread.
    unsafe { CStr::from_ptr(dien_last_error()) }.to_string_lossy().into_owned()
}

/// Scores the data file `test` with `checkpoint` three ways – `dien
/// predict`, the C ABI and `Predictor` – and checks that they agree.
/// Returns the number of requests and the largest predict–Predictor
/// difference.
fn check_three_ways_agree(checkpoint: &Path, test: &Path, name: &str) -> (usize, f32) {
    let f = fixture();
    let preds = f.dir.join(format!("{name}.p.txt"));
    let (out, _) = dien(&["predict", "--checkpoint", s(checkpoint), "--data", s(test), "--out", s(&preds)]);
    let from_predict = read_probabilities(&preds);
    assert_eq!(last_json(&out)["samples"], from_predict.len());

    let reqs = requests(test);
    assert_eq!(reqs.iter().map(|r| r.cand_items.len()).sum::<usize>(), from_predict.len());
    assert!(reqs.iter().any(|r| r.cand_items.len() > 1), "some request has several candidates");

    let predictor = Predictor::load(checkpoint).expect("Predictor::load");
    let vocabs = predictor.vocabs().expect("the checkpoint's vocabularies are loaded");
    let capi = CPredictor::open(checkpoint);
    // SAFETY: a live predictor.
    assert_eq!(unsafe { dien_predictor_has_vocabs(capi.0) }, 1);
    // SAFETY: a live predictor.
    assert_eq!(unsafe { dien_predictor_max_len(capi.0) }, predictor.config().max_len);

    let mut scratch = Scratch::new();
    let mut worst = 0.0f32;
    for r in &reqs {
        let k = r.cand_items.len();
        let rust = predictor
            .score_ids(&mut scratch, &r.user, &r.hist_items, &r.hist_cats, &r.cand_items, &r.cand_cats)
            .expect("Predictor::score_ids")
            .to_vec();
        // The C ABI wraps the same request path: bit-identical.
        let c_ids = capi.score_ids(r);
        assert_eq!(c_ids, rust, "C ABI by id vs Predictor, user {}", r.user);
        let map = |v: &[String], f: fn(&Vocabs, &str) -> u32| v.iter().map(|x| f(vocabs, x)).collect::<Vec<u32>>();
        let (hm, hc) = (map(&r.hist_items, Vocabs::mid), map(&r.hist_cats, Vocabs::cat));
        let (cm, cc) = (map(&r.cand_items, Vocabs::mid), map(&r.cand_cats, Vocabs::cat));
        let c_idx = capi.score(vocabs.uid(&r.user), Items::new(&hm, &hc), Items::new(&cm, &cc));
        assert_eq!(c_idx, rust, "C ABI by index vs by id, user {}", r.user);
        // `dien predict` runs the batched training forward pass: equal up
        // to rounding.
        for (j, &p) in rust.iter().enumerate() {
            assert!(p > 0.0 && p < 1.0 && p.is_finite(), "user {}: probability {p}", r.user);
            let q = from_predict[r.first + j];
            let d = (p - q).abs();
            worst = worst.max(d);
            assert!(
                d <= PREDICT_TOLERANCE,
                "{name}: sample {} (user {}, candidate {j} of {k}): Predictor {p} vs dien predict {q}",
                r.first + j,
                r.user
            );
        }
    }
    (reqs.len(), worst)
}

#[test]
fn predict_c_abi_and_predictor_agree_on_the_last_checkpoint() {
    let f = fixture();
    let (n, worst) = check_three_ways_agree(&f.last, &f.test_file(), "last");
    eprintln!("m.safetensors: {n} requests, largest |predict − Predictor| = {worst:e}");
    // Users of the training set are in the uid vocabulary (the test set's
    // users are not, and map to index 0): the first 40 training lines.
    let text = std::fs::read_to_string(DataSet::train_file(&f.data)).unwrap();
    let head = f.dir.join("train-head");
    std::fs::write(&head, text.lines().take(40).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let known = requests(&head);
    let vocabs = Predictor::load(&f.last).unwrap().vocabs().unwrap().clone();
    assert!(known.iter().all(|r| vocabs.uid(&r.user) != 0), "training users are in the vocabulary");
    let (n, worst) = check_three_ways_agree(&f.last, &head, "last-train");
    eprintln!("m.safetensors, training lines: {n} requests, largest |predict − Predictor| = {worst:e}");
}

#[test]
fn predict_c_abi_and_predictor_agree_on_the_best_checkpoint() {
    let f = fixture();
    assert!(f.best.is_file(), "{} was not written", f.best.display());
    let (n, worst) = check_three_ways_agree(&f.best, &f.test_file(), "best");
    eprintln!("m.best.safetensors: {n} requests, largest |predict − Predictor| = {worst:e}");
}

#[test]
fn c_abi_reports_a_missing_checkpoint() {
    let path = CString::new("/nonexistent/m.safetensors").unwrap();
    let mut p = std::ptr::NonNull::<DienPredictor>::dangling().as_ptr();
    // SAFETY: `path` is NUL-terminated, `p` is writable.
    let rc = unsafe { dien_predictor_open(path.as_ptr(), &mut p) };
    assert_eq!(rc, DIEN_ERR_LOAD);
    assert!(p.is_null(), "a failed open sets *out to null");
    assert!(last_error().contains("/nonexistent/m.safetensors"), "{}", last_error());
}
