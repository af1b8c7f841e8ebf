//! Compiles the C example `tests/c/score.c` against `include/dien.h` and
//! the crate's static library with the `cc` crate, runs it on a checkpoint
//! written here, and checks its scores against the Rust API.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use dien_model::serve::{Items, Predictor, Scratch};
use dien_model::{ModelConfig, ModelKind, ParamStore, checkpoint};

const N_UID: u32 = 50;
const N_MID: u32 = 400;
const N_CAT: u32 = 40;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`, where cargo puts `libdien_capi.a` (the test binary
/// lives in its `deps/`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf()
}

fn build_example(out_dir: &Path) -> PathBuf {
    // A test build leaves the library in `deps/` beside the test binary;
    // a plain `cargo build` puts it one level up.
    let deps = std::env::current_exe().expect("test binary path").parent().expect("deps/").to_path_buf();
    let lib = [deps.join("libdien_capi.a"), profile_dir().join("libdien_capi.a")]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("libdien_capi.a is missing beside {}", deps.display()));
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .cargo_warnings(false)
        .target(env!("DIEN_CAPI_TARGET"))
        .host(env!("DIEN_CAPI_HOST"))
        .opt_level(1)
        .debug(false)
        .try_get_compiler()
        .expect("a C compiler (gcc or cc)");
    let exe = out_dir.join("score");
    let mut cmd = compiler.to_command();
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-pthread"])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(crate_dir().join("tests/c/score.c"))
        .arg(&lib)
        // What a Rust static library needs from the system on Linux
        // (`rustc --print native-static-libs`).
        .args(["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"])
        .arg("-o")
        .arg(&exe);
    let out = cmd.output().expect("run the C compiler");
    assert!(
        out.status.success(),
        "compiling score.c failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

fn write_checkpoint(dir: &Path) -> PathBuf {
    let mut cfg = ModelConfig::new(ModelKind::Dien, N_UID as usize, N_MID as usize, N_CAT as usize);
    cfg.max_len = 20;
    let mut params = ParamStore::init(&cfg, 5);
    // Larger embeddings than the initialisation's, so scores differ visibly.
    for name in ["emb.uid", "emb.mid", "emb.cat"] {
        for (i, v) in params.get_mut(name).iter_mut().enumerate() {
            *v = ((i as f32) * 0.618).sin() * 0.8;
        }
    }
    let ckpt = dir.join("m.safetensors");
    checkpoint::save(&ckpt, &cfg, &params).unwrap();
    let map = |p: &str, n: u32| -> HashMap<String, u32> { (0..n).map(|i| (format!("{p}{i}"), i)).collect() };
    let vocab = serde_json::json!({"uid": map("user", N_UID), "mid": map("item", N_MID), "cat": map("cat", N_CAT)});
    std::fs::write(checkpoint::sidecar_path(&ckpt, checkpoint::VOCAB_SUFFIX), vocab.to_string()).unwrap();
    ckpt
}

#[test]
fn the_c_example_scores_like_the_rust_api() {
    let dir = std::env::temp_dir().join(format!("dien-capi-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = write_checkpoint(&dir);
    let exe = build_example(&dir);

    let pred = Predictor::load(&ckpt).unwrap();
    let mut sc = Scratch::new();
    // A history longer than max_len (20), one without, one candidate.
    let cases: [(u32, usize, usize); 3] = [(7, 33, 45), (49, 0, 3), (0, 5, 1)];
    for (uid, l, k) in cases {
        let hm: Vec<u32> = (0..l as u32).map(|i| (i * 37 + uid) % N_MID).collect();
        let hc: Vec<u32> = (0..l as u32).map(|i| (i * 7) % N_CAT).collect();
        let cm: Vec<u32> = (0..k as u32).map(|i| (i * 13 + 1) % N_MID).collect();
        let cc: Vec<u32> = (0..k as u32).map(|i| (i * 3) % N_CAT).collect();
        let want = pred.score(&mut sc, uid, Items::new(&hm, &hc), Items::new(&cm, &cc)).unwrap().to_vec();

        let mut args = vec![ckpt.display().to_string(), uid.to_string(), l.to_string()];
        for i in 0..l {
            args.extend([hm[i].to_string(), hc[i].to_string()]);
        }
        args.push(k.to_string());
        for i in 0..k {
            args.extend([cm[i].to_string(), cc[i].to_string()]);
        }
        let out = Command::new(&exe).args(&args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "score failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let mut lines = stdout.lines();
        let scores = lines.next().and_then(|s| s.strip_prefix("scores")).expect("a scores line");
        let got: Vec<f32> = scores.split_whitespace().map(|s| s.parse().unwrap()).collect();
        assert_eq!(lines.next(), Some("ok"));
        // %.9g prints an f32 exactly: the C and Rust scores are the same floats.
        assert_eq!(got, want, "uid {uid}, L {l}, K {k}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
