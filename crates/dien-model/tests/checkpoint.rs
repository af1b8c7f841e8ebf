//! Checkpoint files (docs/MODEL.md#checkpoints): exact round trips for every model, a clear
//! error naming the tensor or key for every kind of invalid file, and no
//! panic on truncated, corrupted or random input.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use dien_model::checkpoint::{
    self, CHECKSUM_KEY, OPTIM_SUFFIX, from_bytes, load, load_tensors, save, save_tensors, sidecar_path, to_bytes,
};
use dien_model::{AttForm, AuxForm, ModelConfig, ModelError, ModelKind, ParamStore, Variant, tensor_specs};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// A fresh, empty directory for one test.
fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dien-model-checkpoint").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small configuration (fast tests) of the given model.
fn small(model: ModelKind) -> ModelConfig {
    let mut c = ModelConfig::new(model, 3, 5, 2);
    c.d = 2;
    c.hidden = 4; // = E, so aux = dot is valid too
    c
}

/// Initialised parameters with the buffers perturbed and a few awkward
/// values (−0, subnormal, huge) so the round trip is tested on every bit pattern class.
fn params(cfg: &ModelConfig, seed: u64) -> ParamStore<f32> {
    let mut p = ParamStore::init(cfg, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    for i in 0..p.len() {
        for x in p.data_mut(i) {
            *x += rng.random_range(-1.0f32..1.0).abs() * 0.5;
        }
    }
    let e = p.get_mut("emb.mid");
    e[0] = -0.0;
    e[1] = f32::MIN_POSITIVE / 8.0;
    e[2] = 3.0e38;
    e[3] = -f32::MIN_POSITIVE;
    p
}

fn all_configs() -> Vec<ModelConfig> {
    let mut out = Vec::new();
    for &model in ModelKind::ALL {
        for &att in AttForm::ALL {
            for &aux in AuxForm::ALL {
                let mut c = small(model);
                c.att = att;
                c.aux = aux;
                out.push(c);
            }
        }
    }
    out
}

fn assert_same(a: &ParamStore<f32>, b: &ParamStore<f32>) {
    assert_eq!(a.specs(), b.specs());
    for ((spec, x), (_, y)) in a.iter().zip(b.iter()) {
        assert!(x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()), "{} differs", spec.name);
    }
}

/// The `(subject, message)` of a checkpoint error; panics on anything else.
fn ckpt_err<T>(r: Result<T, ModelError>) -> (String, String) {
    match r {
        Ok(_) => panic!("expected a checkpoint error, got Ok"),
        Err(ModelError::Checkpoint(what, msg)) => (what, msg),
        Err(e) => panic!("expected a checkpoint error, got {e}"),
    }
}

/// Writes `cfg`'s metadata with the given tensors through the generic writer
/// (so the file is well-formed and checksummed, and only the content is wrong).
fn write_with(path: &Path, meta: &BTreeMap<String, String>, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let refs: Vec<(&str, &[usize], &[f32])> =
        tensors.iter().map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice())).collect();
    save_tensors(path, &refs, meta).unwrap();
}

fn owned(p: &ParamStore<f32>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    p.iter().map(|(s, d)| (s.name.clone(), s.shape.clone(), d.to_vec())).collect()
}

#[test]
fn round_trip_is_exact_for_every_model() {
    let dir = test_dir("round_trip");
    for (i, mut cfg) in all_configs().into_iter().enumerate() {
        cfg.variant = Variant::ALL[i % Variant::ALL.len()];
        cfg.max_len = 17 + i;
        if cfg.model != ModelKind::DienNoaux {
            cfg.alpha_aux = 0.1 * i as f32;
        }
        let p = params(&cfg, i as u64);
        let path = dir.join(format!("{}-{}-{}.safetensors", cfg.model, cfg.att, cfg.aux));
        save(&path, &cfg, &p).unwrap();
        let (cfg2, p2) = load(&path).unwrap();
        assert_eq!(cfg2, cfg);
        assert_same(&p, &p2);

        let bytes = to_bytes(&cfg, &p).unwrap();
        assert_eq!(bytes, std::fs::read(&path).unwrap(), "file and to_bytes agree");
        let (cfg3, p3) = from_bytes(&bytes).unwrap();
        assert_eq!(cfg3, cfg);
        assert_same(&p, &p3);

        // The file is plain safetensors: names, f32, shapes and metadata as docs/MODEL.md#checkpoints says.
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut names: Vec<_> = st.names().into_iter().map(String::from).collect();
        names.sort();
        let mut want: Vec<_> = tensor_specs(&cfg).into_iter().map(|s| s.name).collect();
        want.sort();
        assert_eq!(names, want);
        for spec in tensor_specs(&cfg) {
            let t = st.tensor(&spec.name).unwrap();
            assert_eq!((t.dtype(), t.shape()), (Dtype::F32, spec.shape.as_slice()));
            let first = f32::from_le_bytes(t.data()[..4].try_into().unwrap());
            assert_eq!(first.to_bits(), p.get(&spec.name)[0].to_bits(), "{} little-endian", spec.name);
        }
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().as_ref().unwrap();
        for (k, v) in cfg.metadata() {
            assert_eq!(meta.get(&k), Some(&v), "metadata {k}");
        }
        assert_eq!(meta["format_version"], "1");
    }
}

#[test]
fn save_is_atomic_and_replaces() {
    let dir = test_dir("atomic");
    let cfg = small(ModelKind::Din);
    let path = dir.join("model.safetensors");
    save(&path, &cfg, &params(&cfg, 1)).unwrap();
    let p2 = params(&cfg, 2);
    save(&path, &cfg, &p2).unwrap();
    assert_same(&load(&path).unwrap().1, &p2);
    let listing: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(listing, ["model.safetensors"], "no temporary file left behind");

    // A rename that fails (the target is a non-empty directory) leaves the
    // target untouched and no temporary file.
    let blocked = dir.join("blocked.safetensors");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("keep"), b"x").unwrap();
    match save(&blocked, &cfg, &p2) {
        Err(ModelError::Io(p, _)) => assert!(p.contains("blocked.safetensors"), "{p}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert_eq!(std::fs::read(blocked.join("keep")).unwrap(), b"x");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);

    // Missing directory: an I/O error, nothing created.
    let missing = dir.join("no/such/dir/model.safetensors");
    assert!(matches!(save(&missing, &cfg, &p2), Err(ModelError::Io(..))));
    match load(&missing) {
        Err(ModelError::Io(p, _)) => assert!(p.contains("no/such/dir")),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn save_rejects_params_of_another_config() {
    let dien = small(ModelKind::Dien);
    let din = small(ModelKind::Din);
    let (what, msg) = ckpt_err(to_bytes(&dien, &params(&din, 0)));
    assert_eq!(what, "<bytes>");
    assert!(msg.contains("do not belong"), "{msg}");
    let mut bad = dien.clone();
    bad.n_mid = 0;
    assert!(matches!(to_bytes(&bad, &params(&dien, 0)), Err(ModelError::Config(m)) if m.contains("n_mid")));
}

#[test]
fn missing_tensor_is_named() {
    let dir = test_dir("missing");
    let cfg = small(ModelKind::Dien);
    let all = owned(&params(&cfg, 3));
    for skip in 0..all.len() {
        let path = dir.join("m.safetensors");
        let kept: Vec<_> = all.iter().enumerate().filter(|&(i, _)| i != skip).map(|(_, t)| t.clone()).collect();
        write_with(&path, &cfg.metadata(), &kept);
        let (what, msg) = ckpt_err(load(&path));
        assert_eq!(what, all[skip].0);
        assert!(msg.contains("missing") && msg.contains("m.safetensors"), "{msg}");
    }
}

#[test]
fn wrong_shape_is_named() {
    let dir = test_dir("shape");
    let cfg = small(ModelKind::Dien);
    let path = dir.join("s.safetensors");
    for name in ["head.fc1.w", "emb.uid", "gru1.b", "att.q.prelu"] {
        let mut t = owned(&params(&cfg, 4));
        let entry = t.iter_mut().find(|e| e.0 == name).unwrap();
        let want = entry.1.clone();
        // Same element count, different shape: only the shape check can catch it.
        entry.1 = if want.len() == 2 { vec![want[1], want[0]] } else { vec![1, want[0]] };
        write_with(&path, &cfg.metadata(), &t);
        let (what, msg) = ckpt_err(load(&path));
        assert_eq!(what, name);
        assert!(msg.contains(&format!("{want:?}")) && msg.contains("shape"), "{msg}");
    }
    // A table with more rows than the metadata's vocabulary.
    let mut t = owned(&params(&cfg, 4));
    let entry = t.iter_mut().find(|e| e.0 == "emb.mid").unwrap();
    entry.1[0] += 1;
    entry.2.extend([0.0; 2]);
    write_with(&path, &cfg.metadata(), &t);
    assert_eq!(ckpt_err(load(&path)).0, "emb.mid");
}

#[test]
fn unknown_tensor_is_named() {
    let dir = test_dir("unknown");
    let path = dir.join("u.safetensors");
    let cfg = small(ModelKind::Din);
    let mut t = owned(&params(&cfg, 5));
    t.push(("att.extra".into(), vec![2], vec![0.0, 1.0]));
    write_with(&path, &cfg.metadata(), &t);
    let (what, msg) = ckpt_err(load(&path));
    assert_eq!(what, "att.extra");
    assert!(msg.contains("unknown"), "{msg}");

    // A dien checkpoint relabelled dien-noaux carries aux tensors it must not have.
    let dien = small(ModelKind::Dien);
    let mut noaux = dien.clone();
    noaux.model = ModelKind::DienNoaux;
    noaux.alpha_aux = 0.0;
    write_with(&path, &noaux.metadata(), &owned(&params(&dien, 5)));
    let (what, _) = ckpt_err(load(&path));
    assert!(what.starts_with("aux."), "{what}");
}

#[test]
fn wrong_dtype_is_named() {
    let cfg = small(ModelKind::Base);
    let p = params(&cfg, 6);
    let bytes: Vec<Vec<u8>> = p
        .iter()
        .map(|(s, d)| {
            if s.name == "head.fc2.b" {
                d.iter().flat_map(|&x| f64::from(x).to_le_bytes()).collect()
            } else {
                d.iter().flat_map(|x| x.to_le_bytes()).collect()
            }
        })
        .collect();
    let views: Vec<_> = p
        .iter()
        .zip(&bytes)
        .map(|((s, _), b)| {
            let dt = if s.name == "head.fc2.b" { Dtype::F64 } else { Dtype::F32 };
            (s.name.clone(), TensorView::new(dt, s.shape.clone(), b).unwrap())
        })
        .collect();
    let meta: HashMap<String, String> = cfg.metadata().into_iter().collect();
    let file = safetensors::serialize(views, Some(meta)).unwrap();
    let (what, msg) = ckpt_err(from_bytes(&file));
    assert_eq!(what, "head.fc2.b");
    assert!(msg.contains("F64") && msg.contains("F32"), "{msg}");
    assert_eq!(ckpt_err(checkpoint::tensors_from_bytes(&file)).0, "head.fc2.b");
}

#[test]
fn metadata_errors_name_the_key() {
    let dir = test_dir("metadata");
    let path = dir.join("meta.safetensors");
    let cfg = small(ModelKind::Dien);
    let t = owned(&params(&cfg, 7));
    for key in cfg.metadata().keys() {
        let mut meta = cfg.metadata();
        meta.remove(key);
        write_with(&path, &meta, &t);
        let (what, msg) = ckpt_err(load(&path));
        assert!(what.ends_with("meta.safetensors"), "{what}");
        assert!(msg.contains(&format!("`{key}`")) && msg.contains("missing"), "{key}: {msg}");

        let mut meta = cfg.metadata();
        meta.insert(key.clone(), "banana".into());
        write_with(&path, &meta, &t);
        let (_, msg) = ckpt_err(load(&path));
        assert!(msg.contains(&format!("`{key}`")), "{key}: {msg}");
    }
    let mut meta = cfg.metadata();
    meta.insert("format_version".into(), "2".into());
    write_with(&path, &meta, &t);
    let (_, msg) = ckpt_err(load(&path));
    assert!(msg.contains("format_version") && msg.contains("unsupported"), "{msg}");

    // Values that parse but describe an invalid model.
    let mut meta = cfg.metadata();
    meta.insert("aux".into(), "dot".into());
    meta.insert("H".into(), "3".into());
    write_with(&path, &meta, &t);
    let (_, msg) = ckpt_err(load(&path));
    assert!(msg.contains("aux = dot"), "{msg}");

    // No metadata at all.
    write_with(&path, &BTreeMap::new(), &t);
    let (_, msg) = ckpt_err(load(&path));
    assert!(msg.contains("format_version"), "{msg}");

    // The checksum key is reserved for the writer.
    let mut meta = cfg.metadata();
    meta.insert(CHECKSUM_KEY.into(), "x".into());
    let (what, _) = ckpt_err(checkpoint::tensors_to_bytes(&[], &meta));
    assert_eq!(what, CHECKSUM_KEY);
}

#[test]
fn non_finite_values_and_negative_variances_are_named() {
    let dir = test_dir("values");
    let path = dir.join("v.safetensors");
    let cfg = small(ModelKind::Dien);
    for (name, value) in [("gru2.w_hh", f32::NAN), ("emb.cat", f32::INFINITY), ("head.dice2.running_var", -0.5)] {
        let mut t = owned(&params(&cfg, 8));
        t.iter_mut().find(|e| e.0 == name).unwrap().2[1] = value;
        write_with(&path, &cfg.metadata(), &t);
        let (what, msg) = ckpt_err(load(&path));
        assert_eq!(what, name);
        assert!(msg.contains("element 1"), "{msg}");
    }
}

#[test]
fn files_from_other_writers_load_without_checksum() {
    // What a writer following docs/MODEL.md#checkpoints alone produces: no checksum entry.
    let cfg = small(ModelKind::Dien);
    let p = params(&cfg, 9);
    let bytes: Vec<Vec<u8>> = p.iter().map(|(_, d)| d.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views: Vec<_> = p
        .iter()
        .zip(&bytes)
        .map(|((s, _), b)| (s.name.clone(), TensorView::new(Dtype::F32, s.shape.clone(), b).unwrap()))
        .collect();
    let meta: HashMap<String, String> = cfg.metadata().into_iter().collect();
    let file = safetensors::serialize(views, Some(meta)).unwrap();
    let (cfg2, p2) = from_bytes(&file).unwrap();
    assert_eq!(cfg2, cfg);
    assert_same(&p, &p2);
}

/// Start of the data section of a safetensors buffer.
fn data_start(bytes: &[u8]) -> usize {
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

#[test]
fn truncated_files_are_errors() {
    let dir = test_dir("truncated");
    let cfg = small(ModelKind::Dien);
    let bytes = to_bytes(&cfg, &params(&cfg, 10)).unwrap();
    let hs = data_start(&bytes);
    let n = bytes.len();
    for cut in [0, 1, 7, 8, 9, hs / 2, hs - 1, hs, hs + 1, hs + 4, n / 2, n - 4, n - 1] {
        let (what, msg) = ckpt_err(from_bytes(&bytes[..cut]));
        assert_eq!(what, "<bytes>", "cut {cut}: {msg}");
    }
    // Trailing bytes are as wrong as missing ones.
    let mut longer = bytes.clone();
    longer.extend([0; 4]);
    ckpt_err(from_bytes(&longer));
    // And through the file path: the error names the file.
    let path = dir.join("t.safetensors");
    std::fs::write(&path, &bytes[..n - 100]).unwrap();
    let (what, _) = ckpt_err(load(&path));
    assert!(what.ends_with("t.safetensors"), "{what}");
}

#[test]
fn flipped_bytes_are_errors_or_harmless() {
    let cfg = small(ModelKind::Dien);
    let p = params(&cfg, 11);
    let bytes = to_bytes(&cfg, &p).unwrap();
    let hs = data_start(&bytes);
    // Every header byte, three bit patterns each: the result is an error, or
    // (a flip that changes nothing the file means, e.g. inside the checksum's
    // own key name) exactly the original model. Never a different model.
    let (mut errors, mut harmless) = (0, 0);
    let mut buf = bytes.clone();
    for i in 0..hs {
        for mask in [0x01u8, 0x20, 0x80] {
            buf[i] ^= mask;
            match from_bytes(&buf) {
                Err(ModelError::Checkpoint(..)) => errors += 1,
                Err(e) => panic!("byte {i}: unexpected error kind {e}"),
                Ok((c, q)) => {
                    assert_eq!(c, cfg, "byte {i} mask {mask:#x} loaded a different config");
                    assert_same(&p, &q);
                    harmless += 1;
                }
            }
            buf[i] ^= mask;
        }
    }
    assert!(harmless <= 3 * CHECKSUM_KEY.len(), "{harmless} harmless flips");
    assert!(errors > 0);
    // Data bytes: a flip anywhere is caught by the checksum.
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for _ in 0..300 {
        let i = rng.random_range(hs..bytes.len());
        buf[i] ^= 1 << rng.random_range(0..8);
        let (_, msg) = ckpt_err(from_bytes(&buf));
        assert!(msg.contains("checksum") || msg.contains("non-finite"), "byte {i}: {msg}");
        buf[i] = bytes[i];
    }
}

#[test]
fn random_garbage_is_an_error() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    for round in 0..2000 {
        let len = rng.random_range(0..600);
        let mut buf: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        // Half the time a plausible header length, so the JSON parser is reached.
        if round % 2 == 0 && len >= 8 {
            let n = rng.random_range(0..len as u64);
            buf[..8].copy_from_slice(&n.to_le_bytes());
        }
        ckpt_err(from_bytes(&buf));
        assert!(checkpoint::tensors_from_bytes(&buf).is_err());
    }
    // Well-formed JSON headers with hostile content.
    let hostile = [
        r#"{"a":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,8]}}"#,
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
        r#"{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#,
        r#"{"__metadata__":{"format_version":1}}"#,
        r#"{"__metadata__":{"format_version":"1","model":"dien","variant":"augru","att":"mlp","aux":"mlp","d":"99999999999999999999","H":"4","max_len":"1","n_uid":"1","n_mid":"1","n_cat":"1","alpha_aux":"1"}}"#,
        r#"{"__metadata__":{"format_version":"1","model":"din","variant":"augru","att":"mlp","aux":"mlp","d":"1","H":"1","max_len":"1","n_uid":"4611686018427387904","n_mid":"1","n_cat":"1","alpha_aux":"1"}}"#,
        r#"[]"#,
        r#"{}"#,
    ];
    for h in hostile {
        let mut buf = (h.len() as u64).to_le_bytes().to_vec();
        buf.extend(h.as_bytes());
        buf.extend([0u8; 4]);
        ckpt_err(from_bytes(&buf));
    }
}

#[test]
fn generic_tensor_files_round_trip() {
    let dir = test_dir("generic");
    let ckpt = dir.join("model.safetensors");
    let path = sidecar_path(&ckpt, OPTIM_SUFFIX);
    assert_eq!(path, dir.join("model.optim.safetensors"));
    let m: Vec<f32> = (0..6).map(|i| i as f32 * 0.25 - 1.0).collect();
    let step = [42.0f32];
    let tensors: [(&str, &[usize], &[f32]); 3] =
        [("m.emb.uid", &[3, 2], &m), ("step", &[1], &step), ("empty", &[0, 4], &[])];
    let meta: BTreeMap<String, String> = [("kind".to_string(), "adam".to_string())].into();
    save_tensors(&path, &tensors, &meta).unwrap();
    let (meta2, back) = load_tensors(&path).unwrap();
    assert_eq!(meta2, meta, "checksum entry is not returned");
    let names: Vec<_> = back.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(names, ["empty", "m.emb.uid", "step"], "sorted by name");
    assert_eq!((back[1].1.as_slice(), back[1].2.as_slice()), (&[3usize, 2][..], m.as_slice()));
    assert_eq!(back[2].2, step);
    assert_eq!(back[0].1, [0, 4]);

    // Writer-side validation names the tensor.
    let (what, _) = ckpt_err(save_tensors(&path, &[("x", &[2, 2], &m)], &meta));
    assert_eq!(what, "x");
    let (what, msg) = ckpt_err(save_tensors(&path, &[("x", &[1], &step), ("x", &[1], &step)], &meta));
    assert!(what == "x" && msg.contains("twice"), "{msg}");
    let (what, _) = ckpt_err(save_tensors(&path, &[("__metadata__", &[1], &step)], &meta));
    assert_eq!(what, "__metadata__");
    // The failed writes left the earlier file intact.
    assert_eq!(load_tensors(&path).unwrap().1, back);
}
