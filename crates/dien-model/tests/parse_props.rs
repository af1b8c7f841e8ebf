//! Properties of the parsers of untrusted input in this crate: checkpoints
//! and tensor files (`checkpoint::from_bytes`, `tensors_from_bytes`, the set
//! entries), JSON batches (`Batch::from_json_str`, then `validate`) and the
//! vocabulary sidecar (`Vocabs::from_json_bytes`).
//!
//! For each: arbitrary bytes and valid inputs with one part changed never
//! panic, return within a time bound and hold at most a bounded number of
//! bytes at once (a counting allocator, tests/support/bounded.rs, tracks the peak of each
//! thread); inputs that claim huge sizes are refused before anything of that
//! size is allocated; valid inputs round-trip through the writers.
//! The same parsers are fuzzed by the targets in `fuzz/`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::OnceLock;

use dien_model::checkpoint::{self, TensorRef, set};
use dien_model::vocab::Vocabs;
use dien_model::{AttForm, AuxForm, Batch, ModelConfig, ModelKind, ParamStore, Variant};
use proptest::collection::{btree_map, hash_map, vec};
use proptest::prelude::*;

#[path = "../../../tests/support/bounded.rs"]
mod bounded;

use bounded::{config, parse_bounded};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

// --- Checkpoints. ---

/// A tiny valid configuration of any model, variant and form.
fn tiny_config() -> impl Strategy<Value = ModelConfig> {
    (
        prop::sample::select(ModelKind::ALL),
        prop::sample::select(Variant::ALL),
        prop::sample::select(AttForm::ALL),
        prop::sample::select(AuxForm::ALL),
        (1usize..3, 1usize..4, 1usize..8),
        (1usize..5, 1usize..6, 1usize..4),
        prop::sample::select(&[0.0f32, 0.25, 1.0][..]),
    )
        .prop_map(|(model, variant, att, aux, (d, hidden, max_len), (n_uid, n_mid, n_cat), alpha)| {
            let mut c = ModelConfig::new(model, n_uid, n_mid, n_cat);
            (c.variant, c.att, c.aux, c.d, c.hidden, c.max_len) = (variant, att, aux, d, hidden, max_len);
            if aux == AuxForm::Dot {
                c.hidden = 2 * d;
            }
            if model != ModelKind::DienNoaux {
                c.alpha_aux = alpha;
            }
            c
        })
}

/// One valid checkpoint's bytes, written once.
fn sample_checkpoint() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let mut c = ModelConfig::new(ModelKind::Dien, 3, 4, 2);
        (c.d, c.hidden, c.max_len) = (1, 2, 5);
        checkpoint::to_bytes(&c, &ParamStore::init(&c, 3)).unwrap()
    })
}

/// Named tensors with distinct names and any values (NaN included).
fn tensors() -> impl Strategy<Value = BTreeMap<String, (Vec<usize>, Vec<f32>)>> {
    let tensor = vec(0usize..4, 0..3).prop_flat_map(|shape| {
        let n = shape.iter().product::<usize>();
        (Just(shape), vec(any::<f32>(), n))
    });
    btree_map("[a-z][a-z0-9._]{0,11}", tensor, 0..5)
}

fn meta() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map("[a-z_.]{1,10}", ".{0,20}", 0..4).prop_map(|mut m| {
        m.remove(checkpoint::CHECKSUM_KEY);
        m
    })
}

/// A safetensors-shaped buffer: a header length, then text.
fn framed(header: &str, body: &[u8], claimed: Option<u64>) -> Vec<u8> {
    let mut b = claimed.unwrap_or(header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(body);
    b
}

/// Near-valid safetensors headers: pieces of a real header recombined.
fn header_text() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(
        &[
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"__metadata__\"",
            "\"dtype\"",
            "\"F32\"",
            "\"F16\"",
            "\"I64\"",
            "\"shape\"",
            "\"data_offsets\"",
            "\"t\"",
            "\"format_version\"",
            "\"1\"",
            "0",
            "1",
            "4",
            "8",
            "18446744073709551615",
            "4294967296",
            "-1",
            "1e3",
            "null",
            "\"\"",
            " ",
        ][..],
    );
    vec(piece, 0..40).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn checkpoints_of_arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        parse_bounded(bytes.len(), || {
            let _ = checkpoint::from_bytes(&bytes);
            let _ = checkpoint::tensors_from_bytes(&bytes);
        });
    }

    #[test]
    fn near_valid_headers_never_panic(
        header in header_text(),
        body in vec(any::<u8>(), 0..64),
        claimed in prop::option::of(any::<u64>()),
    ) {
        let bytes = framed(&header, &body, claimed);
        parse_bounded(bytes.len(), || {
            let _ = checkpoint::from_bytes(&bytes);
            if let Ok((meta, _)) = checkpoint::tensors_from_bytes(&bytes) {
                for v in meta.values() {
                    let _ = set::parse_entry(v);
                }
            }
        });
    }

    #[test]
    fn a_checkpoint_with_one_byte_changed_never_panics(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = sample_checkpoint().to_vec();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        // A change the checksum covers is refused; one it does not (the
        // header's padding, the checksum's own key) may load, to the same values.
        if let Ok((cfg, params)) = parse_bounded(bytes.len(), || checkpoint::from_bytes(&bytes)) {
            let (cfg0, params0) = checkpoint::from_bytes(sample_checkpoint()).unwrap();
            prop_assert!(cfg == cfg0 && params == params0, "a change at byte {} loaded other values", i);
        }
    }

    #[test]
    fn a_truncated_checkpoint_is_refused(len in 0usize..100_000) {
        let bytes = &sample_checkpoint()[..len.min(sample_checkpoint().len() - 1)];
        prop_assert!(parse_bounded(bytes.len(), || checkpoint::from_bytes(bytes)).is_err());
    }

    #[test]
    fn model_checkpoints_round_trip(cfg in tiny_config(), seed in any::<u64>()) {
        let params = ParamStore::init(&cfg, seed);
        let bytes = checkpoint::to_bytes(&cfg, &params).unwrap();
        let (cfg2, params2) = checkpoint::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&cfg2, &cfg);
        prop_assert_eq!(cfg2.alpha_aux.to_bits(), cfg.alpha_aux.to_bits());
        for ((s1, d1), (s2, d2)) in params.iter().zip(params2.iter()) {
            prop_assert_eq!(s1, s2);
            prop_assert_eq!(bits(d1), bits(d2));
        }
        // Equal content, equal bytes.
        prop_assert_eq!(checkpoint::to_bytes(&cfg2, &params2).unwrap(), bytes);
    }

    #[test]
    fn tensor_files_round_trip(t in tensors(), meta in meta()) {
        let refs: Vec<TensorRef<'_>> = t.iter().map(|(n, (s, d))| (n.as_str(), s.as_slice(), d.as_slice())).collect();
        let bytes = checkpoint::tensors_to_bytes(&refs, &meta).unwrap();
        let (meta2, t2) = checkpoint::tensors_from_bytes(&bytes).unwrap();
        prop_assert_eq!(meta2, meta);
        prop_assert_eq!(t2.len(), t.len());
        for ((n1, (s1, d1)), (n2, s2, d2)) in t.iter().zip(&t2) {
            prop_assert_eq!((n1, s1), (n2, s2));
            prop_assert_eq!(bits(d1), bits(d2));
        }
    }

    #[test]
    fn a_tensor_file_with_one_byte_changed_never_panics(
        t in tensors(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let refs: Vec<TensorRef<'_>> = t.iter().map(|(n, (s, d))| (n.as_str(), s.as_slice(), d.as_slice())).collect();
        let mut bytes = checkpoint::tensors_to_bytes(&refs, &BTreeMap::new()).unwrap();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        parse_bounded(bytes.len(), || {
            let _ = checkpoint::tensors_from_bytes(&bytes);
            let _ = checkpoint::from_bytes(&bytes);
        });
    }

    #[test]
    fn set_entries_name_only_files_beside_the_checkpoint(value in ".{0,30}") {
        if let Ok((name, sum)) = set::parse_entry(&value) {
            prop_assert!(!name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..");
            prop_assert_eq!(format!("{name} {sum}"), value);
        }
    }
}

#[test]
fn checkpoints_claiming_huge_sizes_are_refused_before_allocating() {
    // A header length of 2^64 - 1, or of 1 GB over a few bytes.
    for claimed in [u64::MAX, 1 << 30, 100] {
        let bytes = framed("{}", b"", Some(claimed));
        assert!(parse_bounded(bytes.len(), || checkpoint::tensors_from_bytes(&bytes)).is_err());
    }
    // A tensor of 10^9 × 10^9 floats over 8 bytes of data.
    let header = r#"{"t":{"dtype":"F32","shape":[1000000000,1000000000],"data_offsets":[0,8]}}"#;
    let bytes = framed(header, &[0; 8], None);
    assert!(parse_bounded(bytes.len(), || checkpoint::tensors_from_bytes(&bytes)).is_err());
    // Metadata describing 10^12-row tables over tiny tensors: refused from the
    // metadata, before a table is allocated.
    let mut cfg = ModelConfig::new(ModelKind::Base, 1_000_000_000_000, 4, 2);
    cfg.d = 1;
    let meta = cfg.metadata();
    let bytes = checkpoint::tensors_to_bytes(&[("emb.uid", &[1, 1], &[0.0])], &meta).unwrap();
    let err = parse_bounded(bytes.len(), || checkpoint::from_bytes(&bytes)).unwrap_err().to_string();
    assert!(err.contains("1000000000000") && err.contains("rows"), "{err}");
}

// --- JSON batches. ---

/// Per-sample fields of a valid batch: (uid, mid, cat, history, label).
type Sample = (u32, u32, u32, Vec<(u32, u32, u32, u32)>, bool);

fn samples() -> impl Strategy<Value = (Vec<Sample>, bool)> {
    let step = (0u32..16, 0u32..4, 0u32..16, 0u32..4);
    (vec((0u32..4, 0u32..16, 0u32..4, vec(step, 0..6), any::<bool>()), 0..6), any::<bool>())
}

fn batch_of(samples: &[Sample], with_neg: bool) -> Batch {
    let col = |f: fn(&(u32, u32, u32, u32)) -> u32| -> Vec<Vec<u32>> {
        samples.iter().map(|s| s.3.iter().map(f).collect()).collect()
    };
    let (hm, hc, nm, nc) = (col(|s| s.0), col(|s| s.1), col(|s| s.2), col(|s| s.3));
    Batch::from_samples(
        samples.iter().map(|s| s.0).collect(),
        samples.iter().map(|s| s.1).collect(),
        samples.iter().map(|s| s.2).collect(),
        &hm,
        &hc,
        with_neg.then_some(&nm[..]),
        with_neg.then_some(&nc[..]),
        samples.iter().map(|s| f32::from(u8::from(s.4))).collect(),
    )
    .unwrap()
}

/// Near-valid JSON: pieces of a batch file recombined.
fn batch_text() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(
        &[
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"uid\"",
            "\"mid\"",
            "\"cat\"",
            "\"hist_mid\"",
            "\"hist_cat\"",
            "\"neg_mid\"",
            "\"neg_cat\"",
            "\"label\"",
            "0",
            "1",
            "0.5",
            "-1",
            "4294967296",
            "1e400",
            "null",
            "[]",
            "[[]]",
            "[0]",
            "[[0]]",
            "[1,0]",
            "\"x\"",
            " ",
        ][..],
    );
    vec(piece, 0..60).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn batches_of_arbitrary_text_never_panic(text in "\\PC{0,200}", json in batch_text()) {
        for t in [&text, &json] {
            parse_bounded(t.len(), || {
                if let Ok(b) = Batch::from_json_str(t) {
                    let _ = b.validate(4, 16, 4);
                    let mut b = b;
                    b.keep_recent(2);
                    let _ = b.validate(4, 16, 4);
                }
            });
        }
    }

    #[test]
    fn batches_round_trip_through_json((s, with_neg) in samples()) {
        let b = batch_of(&s, with_neg);
        let json = b.to_json_string().unwrap();
        let back = parse_bounded(json.len(), || Batch::from_json_str(&json)).unwrap();
        prop_assert_eq!(&back, &b);
        prop_assert!(back.validate(4, 16, 4).is_ok());
    }

    #[test]
    fn a_batch_with_one_field_changed_never_panics(
        (s, with_neg) in samples(),
        field in prop::sample::select(&["uid", "mid", "cat", "hist_mid", "hist_cat", "neg_mid", "neg_cat", "label"][..]),
        value in prop::sample::select(&[
            "null", "0", "[]", "[[]]", "[0,1,2,3,4,5,6,7]", "[[1],[2],[3],[4],[5],[6],[7]]", "[0.5]", "[-1]",
            "[4294967296]", "\"x\"", "[[1,2,3,4,5,6,7,8,9]]", "{}",
        ][..]),
    ) {
        let b = batch_of(&s, with_neg);
        let mut v: serde_json::Value = serde_json::from_str(&b.to_json_string().unwrap()).unwrap();
        v[field] = serde_json::from_str(value).unwrap();
        let text = v.to_string();
        parse_bounded(text.len(), || {
            if let Ok(b) = Batch::from_json_str(&text) {
                let _ = b.validate(4, 16, 4);
                prop_assert_eq!(Batch::from_json_str(&b.to_json_string().unwrap()).unwrap(), b);
            }
            Ok(())
        })?;
    }
}

#[test]
fn batches_claiming_more_than_the_bounds_are_refused_before_allocating() {
    // 8193 samples, one history of 8193 steps: 8193² > 2^26 history entries,
    // about 1 GiB of padded arrays from 100 KB of text.
    let n = 8193;
    let ids = format!("[{}]", vec!["0"; n].join(","));
    let labels = format!("[{}]", vec!["1"; n].join(","));
    let mut hist = vec!["[]".to_string(); n];
    hist[0] = ids.clone();
    let hist = format!("[{}]", hist.join(","));
    let text =
        format!(r#"{{"uid":{ids},"mid":{ids},"cat":{ids},"hist_mid":{hist},"hist_cat":{hist},"label":{labels}}}"#);
    let err = parse_bounded(text.len(), || Batch::from_json_str(&text)).unwrap_err().to_string();
    assert!(err.contains("at most"), "{err}");
    // More samples than a batch holds.
    let n = dien_model::batch::MAX_SAMPLES + 1;
    let ids = format!("[{}]", vec!["0"; n].join(","));
    let hist = format!("[{}]", vec!["[]"; n].join(","));
    let text = format!(r#"{{"uid":{ids},"mid":{ids},"cat":{ids},"hist_mid":{hist},"hist_cat":{hist},"label":{ids}}}"#);
    let err = parse_bounded(text.len(), || Batch::from_json_str(&text)).unwrap_err().to_string();
    assert!(err.contains("at most"), "{err}");
    // A batch assembled by hand whose sizes disagree is refused, not indexed.
    let mut b = Batch::zeros(2, 3, true);
    b.lengths[1] = 4;
    assert!(b.to_json_string().is_err() && b.validate(1, 1, 1).is_err());
    b.lengths[1] = 0;
    b.steps = usize::MAX;
    assert!(b.to_json_string().is_err() && b.validate(1, 1, 1).is_err());
}

// --- The vocabulary sidecar. ---

fn vocab_map() -> impl Strategy<Value = HashMap<String, u32>> {
    hash_map("\\PC{0,8}", 0u32..1000, 0..8)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sidecars_of_arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..300), text in "\\PC{0,200}") {
        for b in [&bytes[..], text.as_bytes()] {
            parse_bounded(b.len(), || {
                let _ = Vocabs::from_json_bytes(b, Path::new("<p>"));
            });
        }
    }

    #[test]
    fn sidecars_round_trip(u in vocab_map(), m in vocab_map(), c in vocab_map()) {
        let v = Vocabs::new(u, m, c);
        let bytes = v.to_json_bytes();
        let back = parse_bounded(bytes.len(), || Vocabs::from_json_bytes(&bytes, Path::new("<p>"))).unwrap();
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(back.to_json_bytes(), bytes);
    }

    #[test]
    fn a_sidecar_with_one_part_changed_never_panics(
        u in vocab_map(),
        table in prop::sample::select(&["uid", "mid", "cat", "other"][..]),
        value in prop::sample::select(&[
            "null", "[]", "{}", "{\"a\":-1}", "{\"a\":4294967296}", "{\"a\":1.5}", "{\"a\":\"1\"}", "7", "\"x\"",
        ][..]),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let v = Vocabs::new(u.clone(), u.clone(), u);
        let mut json: serde_json::Value = serde_json::from_slice(&v.to_json_bytes()).unwrap();
        json[table] = serde_json::from_str(value).unwrap();
        let mut bytes = json.to_string().into_bytes();
        parse_bounded(bytes.len(), || {
            let _ = Vocabs::from_json_bytes(&bytes, Path::new("<p>"));
        });
        let i = at.index(bytes.len());
        bytes[i] = byte;
        parse_bounded(bytes.len(), || {
            if let Ok(v) = Vocabs::from_json_bytes(&bytes, Path::new("<p>")) {
                assert_eq!(Vocabs::from_json_str(&v.to_json_string()).unwrap(), v);
            }
        });
    }
}
