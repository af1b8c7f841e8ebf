//! Synchronised statistics (`dien_model::sync`): N replicas, each running
//! its share of a batch with a `StatSync` that sums over the replicas,
//! compute the model of one process on the whole batch. The replicas are
//! threads here, exchanging through shared memory; the trainer's MPI
//! backend does the same across processes.
//!
//! Checked for every model: the losses (global on every replica), the
//! batch statistics kept for the running averages, and the gradients (the
//! dense ones summed over the replicas, the sparse rows merged with
//! `SparseRows::set_sum`) against the single process's. Tolerances: the
//! losses and statistics to 1e-6 relative (their sums are f64); the
//! gradients per tensor to 1e-5 of the tensor's largest magnitude, plus
//! 1e-9 (f32 sums over a share, then over the replicas, in another order
//! than one process's; some tensors of a fresh model have gradients of
//! 1e-8, all cancellation).

use std::ops::Range;
use std::sync::{Arc, Barrier, Mutex};

use dien_model::fast::{EMB_TABLES, Model};
use dien_model::{Batch, ModelConfig, ModelError, ModelKind, NoSync, ParamStore, StatSync};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Replicas as threads: each writes its vector into its slot, waits for
/// all, reads every slot and adds them in replica order.
struct ThreadSync {
    rank: usize,
    slots: Arc<Mutex<Vec<Vec<f64>>>>,
    barrier: Arc<Barrier>,
    /// The length of every vector summed, in order.
    lens: Vec<usize>,
}

impl ThreadSync {
    fn group(n: usize) -> Vec<Self> {
        let slots = Arc::new(Mutex::new(vec![Vec::new(); n]));
        let barrier = Arc::new(Barrier::new(n));
        (0..n).map(|rank| Self { rank, slots: slots.clone(), barrier: barrier.clone(), lens: Vec::new() }).collect()
    }
}

impl StatSync for ThreadSync {
    fn replicas(&self) -> usize {
        self.slots.lock().unwrap().len()
    }

    fn sum(&mut self, values: &mut [f64]) -> Result<(), ModelError> {
        self.lens.push(values.len());
        self.slots.lock().unwrap()[self.rank] = values.to_vec();
        self.barrier.wait();
        {
            let slots = self.slots.lock().unwrap();
            for (j, v) in values.iter_mut().enumerate() {
                let mut s = slots[0][j];
                for other in &slots[1..] {
                    s += other[j];
                }
                *v = s;
            }
        }
        // Nobody overwrites a slot before every replica has read them all.
        self.barrier.wait();
        Ok(())
    }
}

fn tiny(model: ModelKind) -> ModelConfig {
    let mut c = ModelConfig::new(model, 9, 17, 5);
    c.d = 4;
    c.hidden = 8;
    c.max_len = 6;
    c
}

fn random_batch(cfg: &ModelConfig, b: usize, t: usize, seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let lens: Vec<usize> = (0..b).map(|i| if i % 5 == 0 { 0 } else { rng.random_range(1..=t) }).collect();
    let hist = |rng: &mut ChaCha8Rng, n: usize, l: usize| (0..l).map(|_| rng.random_range(0..n as u32)).collect();
    let hm: Vec<Vec<u32>> = lens.iter().map(|&l| hist(&mut rng, cfg.n_mid, l)).collect();
    let hc: Vec<Vec<u32>> = lens.iter().map(|&l| hist(&mut rng, cfg.n_cat, l)).collect();
    let nm: Vec<Vec<u32>> = lens.iter().map(|&l| hist(&mut rng, cfg.n_mid, l)).collect();
    let nc: Vec<Vec<u32>> = lens.iter().map(|&l| hist(&mut rng, cfg.n_cat, l)).collect();
    let uid = (0..b).map(|_| rng.random_range(0..cfg.n_uid as u32)).collect();
    let mid = (0..b).map(|_| rng.random_range(0..cfg.n_mid as u32)).collect();
    let cat = (0..b).map(|_| rng.random_range(0..cfg.n_cat as u32)).collect();
    let label = (0..b).map(|i| (i % 3 == 0) as u8 as f32).collect();
    Batch::from_samples(uid, mid, cat, &hm, &hc, Some(&nm), Some(&nc), label).unwrap()
}

/// Samples `r` of `batch`, padded to the same `T`.
fn share(batch: &Batch, r: Range<usize>) -> Batch {
    let t = batch.steps;
    let rows = |v: &[u32]| v[r.start * t..r.end * t].to_vec();
    Batch {
        batch: r.len(),
        steps: t,
        uid: batch.uid[r.clone()].to_vec(),
        mid: batch.mid[r.clone()].to_vec(),
        cat: batch.cat[r.clone()].to_vec(),
        hist_mid: rows(&batch.hist_mid),
        hist_cat: rows(&batch.hist_cat),
        neg_mid: batch.neg_mid.as_deref().map(rows),
        neg_cat: batch.neg_cat.as_deref().map(rows),
        lengths: batch.lengths[r.clone()].to_vec(),
        label: batch.label[r].to_vec(),
    }
}

/// What one replica computed.
struct Outcome {
    loss: [f64; 3],
    stats: Vec<(String, Vec<f32>)>,
    dense: Vec<f32>,
    sparse: Vec<(Vec<u32>, Vec<f32>)>,
    recal: Vec<(String, Vec<f32>)>,
}

/// Runs a step (and a recalibration on the step's head inputs) of `params`
/// on `batch`, as `n` replicas each taking samples `[r·B/n, (r+1)·B/n)`.
fn run_replicas(cfg: &ModelConfig, params: &ParamStore<f32>, batch: &Batch, n: usize) -> Vec<Outcome> {
    let b = batch.batch;
    let syncs = ThreadSync::group(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = syncs
            .into_iter()
            .map(|mut sync| {
                s.spawn(move || {
                    let r = sync.rank;
                    let part = share(batch, r * b / n..(r + 1) * b / n);
                    let mut m = Model::new(cfg.clone(), params.clone()).unwrap();
                    let l = m.forward_backward_synced(&part, &mut sync).unwrap();
                    // The step exchanges what `step_exchanges` lists.
                    assert_eq!(sync.lens, dien_model::sync::step_exchanges(cfg), "replica {r}");
                    let g = m.gradients();
                    let mut dense = Vec::new();
                    g.write_dense(&mut dense);
                    let sparse = g.emb.iter().map(|t| (t.rows.clone(), t.values.clone())).collect();
                    let stats = m.last_stats();
                    // Recalibration on this share's head inputs (evaluation
                    // mode needs no exchange; empty shares skip the pass).
                    let x = if part.batch > 0 {
                        m.forward_synced(&part, dien_model::Mode::Eval, &mut sync).unwrap();
                        m.head_input().to_vec()
                    } else {
                        Vec::new()
                    };
                    m.recalibrate_synced(&x, &mut sync).unwrap();
                    let recal = m
                        .params()
                        .iter()
                        .filter(|(s, _)| s.name.contains("running"))
                        .map(|(s, v)| (s.name.clone(), v.to_vec()))
                        .collect();
                    Outcome { loss: [l.loss, l.loss_target, l.loss_aux], stats, dense, sparse, recal }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= tol * scale + 1e-9, "{what}[{i}]: {a} vs {b} (scale {scale})");
    }
}

#[test]
fn replicas_with_synchronised_statistics_compute_the_single_process_step() {
    for &kind in ModelKind::ALL {
        let cfg = tiny(kind);
        let params = ParamStore::init(&cfg, 11);
        // 13 samples: shares of unequal sizes; 4 samples over 5 replicas:
        // one share is empty.
        for (b, replicas) in [(13usize, [2usize, 3, 4]), (4, [5, 3, 1])] {
            let batch = random_batch(&cfg, b, cfg.max_len, 3 + b as u64);
            let mut one = Model::new(cfg.clone(), params.clone()).unwrap();
            let l = one.forward_backward(&batch).unwrap();
            let want_loss = [l.loss, l.loss_target, l.loss_aux];
            let want_stats = one.last_stats();
            let mut want_dense = Vec::new();
            one.gradients().write_dense(&mut want_dense);
            one.forward(&batch, dien_model::Mode::Eval).unwrap();
            let x = one.head_input().to_vec();
            one.recalibrate(&x).unwrap();
            for n in replicas {
                let what = format!("{kind:?}, B = {b}, {n} replicas");
                let out = run_replicas(&cfg, &params, &batch, n);
                for o in &out {
                    for (k, (a, w)) in o.loss.iter().zip(&want_loss).enumerate() {
                        assert!((a - w).abs() <= 1e-6 * w.abs().max(1e-3), "{what}: loss part {k}: {a} vs {w}");
                    }
                    for ((name, got), (_, want)) in o.stats.iter().zip(&want_stats) {
                        close(&format!("{what}: {name}"), got, want, 1e-6);
                    }
                    // Every replica holds the same statistics, bit for bit.
                    assert_eq!(o.stats, out[0].stats, "{what}: statistics differ between replicas");
                    assert_eq!(o.loss, out[0].loss, "{what}: losses differ between replicas");
                    for (name, got) in &o.recal {
                        close(&format!("{what}: recalibrated {name}"), got, one.params().get(name), 1e-6);
                    }
                    assert_eq!(o.recal, out[0].recal, "{what}: recalibration differs between replicas");
                }
                // Dense gradients: the sum over the replicas, in replica order.
                let mut sum = out[0].dense.clone();
                for o in &out[1..] {
                    for (s, v) in sum.iter_mut().zip(&o.dense) {
                        *s += v;
                    }
                }
                let mut got = one.gradients().clone();
                got.read_dense(&sum).unwrap();
                for (name, g) in got.dense_iter() {
                    close(&format!("{what}: grad {name}"), g, one.gradients().dense(name).unwrap(), 1e-5);
                }
                // Sparse rows: merged in replica order.
                for (t, table) in EMB_TABLES.iter().enumerate() {
                    let mut merged = one.gradients().emb[t].clone();
                    merged.set_sum(out.iter().map(|o| (o.sparse[t].0.as_slice(), o.sparse[t].1.as_slice()))).unwrap();
                    let want = &one.gradients().emb[t];
                    assert_eq!(merged.rows, want.rows, "{what}: {table} rows");
                    close(&format!("{what}: grad {table}"), &merged.values, &want.values, 1e-5);
                }
            }
        }
    }
}

#[test]
fn one_replica_computes_exactly_what_a_plain_step_computes() {
    let cfg = tiny(ModelKind::Dien);
    let params = ParamStore::init(&cfg, 5);
    let batch = random_batch(&cfg, 9, cfg.max_len, 8);
    let mut a = Model::new(cfg.clone(), params.clone()).unwrap();
    let mut b = Model::new(cfg, params).unwrap();
    let la = a.forward_backward(&batch).unwrap();
    let lb = b.forward_backward_synced(&batch, &mut NoSync).unwrap();
    assert_eq!(la, lb);
    let (mut ga, mut gb) = (Vec::new(), Vec::new());
    a.gradients().write_dense(&mut ga);
    b.gradients().write_dense(&mut gb);
    assert!(ga.iter().zip(&gb).all(|(x, y)| x.to_bits() == y.to_bits()));
    assert_eq!(a.last_stats(), b.last_stats());
}

#[test]
fn an_empty_share_is_refused_without_replicas_and_bad_parts_are_named() {
    let cfg = tiny(ModelKind::Base);
    let mut m = Model::init(cfg.clone(), 1).unwrap();
    let empty = share(&random_batch(&cfg, 3, 4, 1), 0..0);
    assert!(m.forward_backward_synced(&empty, &mut NoSync).is_err());
    assert!(m.recalibrate_synced(&[], &mut NoSync).is_err());
    let mut rows = m.gradients().emb[0].clone();
    let err = rows.set_sum([(&[1u32, 2][..], &[0.0f32; 3][..])]).unwrap_err().to_string();
    assert!(err.contains("part 0"), "{err}");
    assert!(m.gradients_mut().read_dense(&[0.0; 3]).is_err());
}
