//! Optimiser state: checkpoint round trips that continue bit-identically,
//! what the state holds, and the rejection of bad state files.

mod common;

use std::collections::BTreeMap;

use dien_model::TensorKind;
use dien_model::checkpoint;
use dien_model::fast::Model;
use dien_trainer::optim::{OptimConfig, Optimizer, sidecar_path};

use common::*;

// ---------------------------------------------------------------------------
// State.

/// `n` steps of `cfg` on model `seed`, halving the rate after step 2; with
/// `resume_at = Some(k)`, the model and the optimiser go through checkpoint
/// files after `k` steps and a fresh model and optimiser continue.
fn run_steps(cfg: &OptimConfig, n: u64, resume_at: Option<u64>, dir: &std::path::Path) -> (Model, Optimizer) {
    let mut model = tiny_model(9);
    let mut opt = Optimizer::new(cfg.clone(), model.params()).unwrap();
    for step in 0..n {
        if Some(step) == resume_at {
            let ckpt = dir.join("model.safetensors");
            checkpoint::save(&ckpt, model.config(), model.params()).unwrap();
            opt.save(&sidecar_path(&ckpt)).unwrap();
            assert!(dir.join("model.optim.safetensors").is_file());
            let (mc, params) = checkpoint::load(&ckpt).unwrap();
            model = Model::new(mc, params).unwrap();
            opt = Optimizer::new(cfg.clone(), model.params()).unwrap();
            opt.load(&sidecar_path(&ckpt)).unwrap();
        }
        let g = grads(&mut model, 40 + step);
        opt.step(model.params_mut(), &g).unwrap();
        if step == 1 {
            opt.halve_lr();
        }
    }
    (model, opt)
}

#[test]
fn state_round_trip_continues_bit_identically() {
    let dir = temp_dir("resume");
    let configs = [
        OptimConfig::adam(),
        OptimConfig { lazy_embeddings: false, clip_norm: Some(0.05), ..OptimConfig::adam() },
        OptimConfig::sgd(0.1),
    ];
    for cfg in &configs {
        let (a, oa) = run_steps(cfg, 5, None, &dir);
        let (b, ob) = run_steps(cfg, 5, Some(3), &dir);
        assert_eq!(params_bits(a.params()), params_bits(b.params()), "{cfg:?}");
        assert_eq!(state_bits(&oa), state_bits(&ob), "{cfg:?}");
        assert_eq!((oa.steps(), oa.lr().to_bits()), (ob.steps(), ob.lr().to_bits()));
        assert_eq!((ob.steps(), ob.lr()), (5, cfg.lr / 2.0));
        // A step that did not go through the files differs (the test is not vacuous).
        let (c, _) = run_steps(cfg, 4, None, &dir);
        assert_ne!(params_bits(a.params()), params_bits(c.params()));
    }
    std::fs::remove_dir_all(&dir).unwrap();

    // In memory: bytes and `state_tensors` + `state_metadata` restore the same.
    let (model, opt) = run_steps(&OptimConfig::adam(), 2, None, &dir);
    let mut from_bytes = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
    from_bytes.load_bytes(&opt.state_to_bytes().unwrap()).unwrap();
    let mut from_parts = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
    let mut meta = opt.state_metadata();
    meta.insert("train.epoch".into(), "3".into()); // keys of other owners are ignored
    from_parts.load_state(&meta, opt.state_tensors()).unwrap();
    for o in [&from_bytes, &from_parts] {
        assert_eq!(state_bits(o), state_bits(&opt));
        assert_eq!((o.steps(), o.lr()), (2, 0.0005));
    }
}

#[test]
fn state_holds_full_tables_and_no_buffers() {
    let mut model = tiny_model(10);
    let mut opt = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
    let g = grads(&mut model, 50);
    opt.step(model.params_mut(), &g).unwrap();
    let state = opt.state_tensors();
    let trainable: Vec<_> = model.params().specs().iter().filter(|s| s.kind == TensorKind::Param).collect();
    assert_eq!(state.len(), 2 * trainable.len());
    for s in &trainable {
        for prefix in ["adam.m.", "adam.v."] {
            let (_, shape, v) = state.iter().find(|(n, _, _)| *n == format!("{prefix}{}", s.name)).unwrap();
            assert_eq!(shape, &s.shape);
            assert_eq!(v.len(), s.numel());
        }
    }
    assert!(state.iter().all(|(n, _, _)| !n.contains("running")));
    let d = model.config().d;
    let m = state_of(&state, "adam.m.emb.mid");
    for r in 0..tiny_cfg().n_mid as u32 {
        let row = &m[r as usize * d..(r as usize + 1) * d];
        // Full table: m = 0.1·g on rows with a non-zero gradient, zero elsewhere.
        let nonzero_grad = g.emb[1].row(r).is_some_and(|gr| gr.iter().any(|&x| x != 0.0));
        assert_eq!(nonzero_grad, row.iter().any(|&x| x != 0.0), "row {r}");
    }
    let meta = opt.state_metadata();
    assert_eq!(meta["optim.step"], "1");
    assert_eq!(meta["optim.kind"], "adam");
    assert_eq!(meta["optim.lr"].parse::<f32>().unwrap(), 0.001);
}

#[test]
fn load_state_rejects_bad_files_and_changes_nothing() {
    let mut model = tiny_model(11);
    let mut good = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
    let g = grads(&mut model, 60);
    good.step(model.params_mut(), &g).unwrap();
    let (meta, tensors) = (good.state_metadata(), good.state_tensors());

    type Meta = BTreeMap<String, String>;
    type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;
    type Edit = Box<dyn Fn(&mut Meta, &mut Tensors)>;
    fn edit(f: impl Fn(&mut Meta, &mut Tensors) + 'static) -> Edit {
        Box::new(f)
    }
    fn on(t: &mut Tensors, name: &str, f: impl Fn(&mut (String, Vec<usize>, Vec<f32>))) {
        t.iter_mut().filter(|x| x.0 == name).for_each(f);
    }
    let cases: Vec<(&str, Edit)> = vec![
        ("optim.kind", edit(|m, _| _ = m.insert("optim.kind".into(), "sgd".into()))),
        ("optim.step", edit(|m, _| _ = m.remove("optim.step"))),
        ("optim.lr", edit(|m, _| _ = m.insert("optim.lr".into(), "-1".into()))),
        ("optim.beta2", edit(|m, _| _ = m.insert("optim.beta2".into(), "0.99".into()))),
        ("optim.format_version", edit(|m, _| _ = m.insert("optim.format_version".into(), "2".into()))),
        ("adam.v.gru1.b", edit(|_, t| t.retain(|(n, _, _)| n != "adam.v.gru1.b"))),
        ("adam.m.head.fc1.w", edit(|_, t| on(t, "adam.m.head.fc1.w", |x| x.1.reverse()))),
        ("adam.m.emb.uid", edit(|_, t| on(t, "adam.m.emb.uid", |x| x.2[3] = f32::NAN))),
        ("adam.v.att.fc1.b", edit(|_, t| on(t, "adam.v.att.fc1.b", |x| x.2[0] = -1.0))),
        (
            "adam.m.head.bn.running_mean",
            edit(|_, t| t.push(("adam.m.head.bn.running_mean".into(), vec![1], vec![0.0]))),
        ),
    ];
    for (what, edit) in cases {
        let mut fresh = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
        let before = state_bits(&fresh);
        let (mut m, mut t) = (meta.clone(), tensors.clone());
        edit(&mut m, &mut t);
        match fresh.load_state(&m, t) {
            Err(e) => assert!(e.to_string().contains(what), "{what}: {e}"),
            Ok(()) => panic!("{what}: accepted"),
        }
        assert_eq!(state_bits(&fresh), before, "{what}");
        assert_eq!((fresh.steps(), fresh.lr()), (0, 0.001), "{what}");
    }
    // A corrupted file fails its checksum.
    let mut bytes = good.state_to_bytes().unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    let err = Optimizer::new(OptimConfig::adam(), model.params()).unwrap().load_bytes(&bytes).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    // SGD state has no tensors and refuses Adam's.
    let mut sgd = Optimizer::new(OptimConfig::sgd(0.1), model.params()).unwrap();
    assert!(sgd.load_state(&meta, tensors).is_err());
}
