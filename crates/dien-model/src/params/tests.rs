//! The tensor list against an independent transcription, initialisation
//! rules and store access.

use super::*;
use crate::config::{AuxForm, ModelKind, Variant};

/// The tensor list of docs/MODEL.md#tensors, written out independently of `tensor_specs`.
fn expected(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (d, e, h) = (cfg.d, cfg.e(), cfg.hidden);
    let mut v: Vec<(&str, Vec<usize>)> =
        vec![("emb.uid", vec![cfg.n_uid, d]), ("emb.mid", vec![cfg.n_mid, d]), ("emb.cat", vec![cfg.n_cat, d])];
    let gru_model = matches!(cfg.model, ModelKind::Dien | ModelKind::DienNoaux);
    if gru_model {
        v.extend([
            ("gru1.w_ih", vec![3 * h, e]),
            ("gru1.w_hh", vec![3 * h, h]),
            ("gru1.b", vec![3 * h]),
            ("gru2.w_ih", vec![3 * h, h]),
            ("gru2.w_hh", vec![3 * h, h]),
            ("gru2.b", vec![3 * h]),
        ]);
    }
    if cfg.model == ModelKind::Dien && cfg.aux == AuxForm::Mlp {
        v.extend([
            ("aux.fc1.w", vec![100, h + e]),
            ("aux.fc1.b", vec![100]),
            ("aux.fc2.w", vec![50, 100]),
            ("aux.fc2.b", vec![50]),
            ("aux.fc3.w", vec![1, 50]),
            ("aux.fc3.b", vec![1]),
        ]);
    }
    let a = if gru_model { h } else { e };
    if cfg.model != ModelKind::Base {
        match cfg.att {
            AttForm::Mlp => v.extend([
                ("att.q.w", vec![a, e]),
                ("att.q.b", vec![a]),
                ("att.q.prelu", vec![a]),
                ("att.fc1.w", vec![80, 4 * a]),
                ("att.fc1.b", vec![80]),
                ("att.fc2.w", vec![40, 80]),
                ("att.fc2.b", vec![40]),
                ("att.fc3.w", vec![1, 40]),
                ("att.fc3.b", vec![1]),
            ]),
            AttForm::Bilinear => v.push(("att.w", vec![a, e])),
        }
    }
    let dh = d + 3 * e + if gru_model { h } else { e };
    v.extend([
        ("head.bn.gamma", vec![dh]),
        ("head.bn.beta", vec![dh]),
        ("head.bn.running_mean", vec![dh]),
        ("head.bn.running_var", vec![dh]),
        ("head.fc1.w", vec![200, dh]),
        ("head.fc1.b", vec![200]),
        ("head.dice1.alpha", vec![200]),
        ("head.dice1.running_mean", vec![200]),
        ("head.dice1.running_var", vec![200]),
        ("head.fc2.w", vec![80, 200]),
        ("head.fc2.b", vec![80]),
        ("head.dice2.alpha", vec![80]),
        ("head.dice2.running_mean", vec![80]),
        ("head.dice2.running_var", vec![80]),
        ("head.fc3.w", vec![1, 80]),
        ("head.fc3.b", vec![1]),
    ]);
    v.into_iter().map(|(n, s)| (n.to_string(), s)).collect()
}

fn all_configs() -> Vec<ModelConfig> {
    let mut out = Vec::new();
    for &model in ModelKind::ALL {
        for &variant in Variant::ALL {
            for &att in AttForm::ALL {
                for &aux in AuxForm::ALL {
                    for (d, hidden) in [(18, 36), (3, 5)] {
                        let mut c = ModelConfig::new(model, 7, 11, 4);
                        c.variant = variant;
                        c.att = att;
                        c.aux = aux;
                        c.d = d;
                        c.hidden = hidden;
                        if c.validate().is_ok() {
                            out.push(c);
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn specs_match_spec_for_every_combination() {
    let configs = all_configs();
    // models × variants × att forms × aux forms × 2 sizes, minus dien/dot
    // with H ≠ E (variants × att forms, small size only).
    let (m, v, a, x) = (ModelKind::ALL.len(), Variant::ALL.len(), AttForm::ALL.len(), AuxForm::ALL.len());
    assert_eq!(configs.len(), m * v * a * x * 2 - v * a);
    for cfg in &configs {
        let got: Vec<_> = tensor_specs(cfg).into_iter().map(|s| (s.name, s.shape)).collect();
        assert_eq!(got, expected(cfg), "{cfg:?}");
    }
    let dien = ModelConfig::new(ModelKind::Dien, 7, 11, 4);
    let mut dot = dien.clone();
    dot.aux = AuxForm::Dot;
    assert!(tensor_specs(&dot).iter().all(|s| !s.name.starts_with("aux.")));
    assert!(tensor_specs(&dien).iter().any(|s| s.name == "aux.fc1.w"));
}

#[test]
fn kinds_and_init_rules() {
    let cfg = ModelConfig::new(ModelKind::Dien, 7, 11, 4);
    for s in tensor_specs(&cfg) {
        let is_buffer = s.name.ends_with("running_mean") || s.name.ends_with("running_var");
        assert_eq!(s.kind == TensorKind::Buffer, is_buffer, "{}", s.name);
        let want = if s.name.starts_with("emb.") {
            Init::Normal { std: 0.01 }
        } else if s.name.starts_with("gru") && s.name.ends_with(".b") {
            Init::GruBias
        } else if s.name.starts_with("gru") {
            Init::Uniform { bound: (1.0f64 / 36.0).sqrt() as f32 }
        } else if s.name.ends_with(".w") {
            Init::GlorotUniform
        } else if [".b", "beta", "running_mean", "alpha"].iter().any(|x| s.name.ends_with(x)) {
            Init::Const(0.0)
        } else if s.name.ends_with("gamma") || s.name.ends_with("running_var") {
            Init::Const(1.0)
        } else if s.name == "att.q.prelu" {
            Init::Const(0.1)
        } else {
            panic!("unexpected tensor {}", s.name)
        };
        assert_eq!(s.init, want, "{}", s.name);
    }
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / n;
    (m, var.sqrt())
}

#[test]
fn init_statistics() {
    let mut cfg = ModelConfig::new(ModelKind::Dien, 5, 20_000, 50);
    cfg.hidden = 36;
    let p = ParamStore::init(&cfg, 7);

    // Embeddings: N(0, 0.01²). 360k samples: the std estimate is good to ~0.2 %.
    let mid = p.get("emb.mid");
    let (m, s) = mean_std(mid);
    assert!(m.abs() < 1e-4, "mean {m}");
    assert!((s - 0.01).abs() < 1e-4, "std {s}");
    // Normal, not uniform: about 4.55 % beyond 2σ (uniform with this std: 0 %).
    let tail = mid.iter().filter(|&&x| x.abs() > 0.02).count() as f64 / mid.len() as f64;
    assert!((tail - 0.0455).abs() < 0.003, "tail {tail}");

    // Glorot: bound sqrt(6 / (in + out)), filling it (max near bound), mean ~0.
    let w = p.get("head.fc1.w");
    let bound = (6.0f64 / (162.0 + 200.0)).sqrt();
    let max = w.iter().fold(0.0f64, |a, &x| a.max(f64::from(x).abs()));
    assert!(max <= bound && max > 0.99 * bound, "max {max} bound {bound}");
    let (m, s) = mean_std(w);
    assert!(m.abs() < 0.01 * bound && (s - bound / 3f64.sqrt()).abs() < 0.01 * bound, "{m} {s}");

    // GRU weights: U(±sqrt(1/H)).
    let b = (1.0f64 / 36.0).sqrt();
    for name in ["gru1.w_ih", "gru1.w_hh", "gru2.w_ih", "gru2.w_hh"] {
        let w = p.get(name);
        let max = w.iter().fold(0.0f64, |a, &x| a.max(f64::from(x).abs()));
        assert!(max <= b && max > 0.95 * b, "{name}: max {max}");
    }
    // GRU bias: r and u blocks 1, c block 0.
    for name in ["gru1.b", "gru2.b"] {
        let bias = p.get(name);
        assert!(bias[..72].iter().all(|&x| x == 1.0) && bias[72..].iter().all(|&x| x == 0.0), "{name}");
    }
    // Constants.
    assert!(p.get("att.q.prelu").iter().all(|&x| x == 0.1));
    assert!(p.get("head.bn.gamma").iter().all(|&x| x == 1.0));
    assert!(p.get("head.bn.running_var").iter().all(|&x| x == 1.0));
    assert!(p.get("head.dice2.running_mean").iter().all(|&x| x == 0.0));
    assert!(p.get("head.dice1.alpha").iter().all(|&x| x == 0.0));
    assert!(p.get("aux.fc2.b").iter().all(|&x| x == 0.0));
}

#[test]
fn init_is_deterministic_and_seed_dependent() {
    let cfg = ModelConfig::new(ModelKind::Dien, 9, 13, 5);
    let a = ParamStore::init(&cfg, 42);
    let b = ParamStore::init(&cfg, 42);
    let c = ParamStore::init(&cfg, 43);
    assert!(a.iter().zip(b.iter()).all(|((_, x), (_, y))| x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())));
    for (spec, x) in a.iter() {
        let y = c.get(&spec.name);
        let random = !matches!(spec.init, Init::Const(_) | Init::GruBias);
        assert_eq!(x != y, random, "{}", spec.name);
    }
    // Different tensors of one shape get different values.
    assert_ne!(a.get("gru2.w_hh"), a.get("gru1.w_hh"));
    // A tensor's values depend on seed and name only, not on the other tensors.
    let din = ParamStore::init(&ModelConfig::new(ModelKind::Din, 9, 13, 5), 42);
    assert_eq!(din.get("emb.mid"), a.get("emb.mid"));
}

#[test]
fn store_access_and_map() {
    let cfg = ModelConfig::new(ModelKind::Din, 3, 4, 2);
    let mut p: ParamStore<f32> = ParamStore::zeros(&cfg);
    assert_eq!(p.len(), tensor_specs(&cfg).len());
    assert!(!p.is_empty());
    assert_eq!(p.numel(), tensor_specs(&cfg).iter().map(TensorSpec::numel).sum::<usize>());
    assert!(p.try_get("gru1.b").is_none() && p.index_of("gru1.b").is_none());
    let i = p.index_of("emb.cat").unwrap();
    assert_eq!(p.specs()[i].name, "emb.cat");
    p.get_mut("emb.cat")[5] = 2.5;
    assert_eq!(p.data(i)[5], 2.5);
    p.data_mut(i)[0] = -1.0;
    assert_eq!(p.get("emb.cat")[0], -1.0);
    let q: ParamStore<f64> = p.map(|x| f64::from(x) * 2.0);
    assert_eq!(q.get("emb.cat")[5], 5.0);
    assert_eq!(q.specs(), p.specs());
    for ((s, a), (t, b)) in p.iter().zip(q.iter()) {
        assert_eq!(s, t);
        assert_eq!(a.len(), b.len());
    }
    p.fill(0.0);
    assert!(p.iter().all(|(_, v)| v.iter().all(|&x| x == 0.0)));

    let data: Vec<Vec<f32>> = p.iter().map(|(_, v)| v.to_vec()).collect();
    assert!(ParamStore::from_data(&cfg, data.clone()).is_some());
    let mut short = data.clone();
    short[2].pop();
    assert!(ParamStore::from_data(&cfg, short).is_none());
    assert!(ParamStore::from_data(&cfg, data[1..].to_vec()).is_none());
}

#[test]
#[should_panic(expected = "no tensor named `gru1.b`")]
fn get_unknown_name_panics() {
    let p: ParamStore<f32> = ParamStore::zeros(&ModelConfig::new(ModelKind::Base, 3, 4, 2));
    let _ = p.get("gru1.b");
}
