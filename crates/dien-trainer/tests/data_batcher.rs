//! Batching: grouping, stable length sort, cutting, truncation, negatives,
//! determinism, the background stream, resuming, and the real data.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dien_trainer::data::{
    BatchStream, Batcher, BatcherConfig, DataPosition, DataSet, LoadedBatch, TEST_FILE, TRAIN_FILE,
};

fn tmp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("data_batcher_{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One line of the synthetic file, as written.
struct Line {
    uid: String,
    mid: String,
    hist: Vec<String>,
}

const N_ITEMS: usize = 30;

fn cat_of_item(j: usize) -> String {
    format!("c{}", j % 5)
}

/// Writes a data directory of `n` lines whose history lengths follow a
/// pattern with many ties (0..=6); every line has its own user `u{i}`.
fn write_synth(dir: &Path, n: usize) -> Vec<Line> {
    let mut text = String::new();
    let mut lines = Vec::new();
    for i in 0..n {
        let len = (i * 7 + i / 3) % 7;
        let hist: Vec<String> = (0..len).map(|t| format!("m{}", (i * 3 + t * 5) % N_ITEMS)).collect();
        let cats: Vec<String> = (0..len).map(|t| cat_of_item((i * 3 + t * 5) % N_ITEMS)).collect();
        let mid_j = (i * 11) % N_ITEMS;
        let l = Line { uid: format!("u{i}"), mid: format!("m{mid_j}"), hist };
        text += &format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            i % 2,
            l.uid,
            l.mid,
            cat_of_item(mid_j),
            l.hist.join("\u{2}"),
            cats.join("\u{2}")
        );
        lines.push(l);
    }
    std::fs::write(dir.join(TRAIN_FILE), text).unwrap();
    let info: String = (0..N_ITEMS).map(|j| format!("m{j}\t{}\n", cat_of_item(j))).collect();
    std::fs::write(dir.join("item-info"), info).unwrap();
    let mut reviews = String::new();
    for j in 0..N_ITEMS {
        for k in 0..(j % 4 + 1) {
            reviews += &format!("r{k}\tm{j}\t5.0\t{k}\n");
        }
    }
    std::fs::write(dir.join("reviews-info"), reviews).unwrap();
    lines
}

fn open_data(dir: &Path) -> Arc<DataSet> {
    let (ds, rep) = DataSet::open(dir, None, false).unwrap();
    assert!(rep.no_sampler.is_none());
    Arc::new(ds)
}

fn small_cfg(seed: u64) -> BatcherConfig {
    BatcherConfig { batch_size: 4, group_batches: 2, max_len: 3, seed, keep_raw_uid: true, ..Default::default() }
}

fn collect(it: impl Iterator<Item = Result<LoadedBatch, dien_trainer::TrainError>>) -> Vec<LoadedBatch> {
    it.map(|r| r.unwrap()).collect()
}

#[test]
fn groups_are_sorted_cut_and_truncated() {
    let d = tmp_dir("sort");
    let lines = write_synth(&d, 19);
    let data = open_data(&d);
    let cfg = small_cfg(3);
    let batches = collect(Batcher::open(&d.join(TRAIN_FILE), data.clone(), cfg.clone(), 0).unwrap());
    // Groups of 8 lines: 1–8, 9–16, 17–19 → 2 + 2 + 1 batches, the last of 3.
    let sizes: Vec<usize> = batches.iter().map(|b| b.batch.batch).collect();
    assert_eq!(sizes, [4, 4, 4, 4, 3]);
    let nexts: Vec<DataPosition> = batches.iter().map(|b| b.next).collect();
    let pos = |line, batch| DataPosition { line, batch };
    assert_eq!(nexts, [pos(0, 1), pos(8, 0), pos(8, 1), pos(16, 0), pos(19, 0)]);

    let v = &data.vocabs;
    let sampler = data.sampler.as_ref().unwrap();
    let mut order = Vec::new();
    for lb in &batches {
        let b = &lb.batch;
        assert_eq!(b.steps, *b.lengths.iter().max().unwrap(), "T = longest kept history");
        b.validate(v.uid.size, v.mid.size, v.cat.size).unwrap();
        let (nm, nc) = (b.neg_mid.as_ref().unwrap(), b.neg_cat.as_ref().unwrap());
        for s in 0..b.batch {
            let lno = lb.lines[s] as usize;
            order.push(lno);
            let src = &lines[lno - 1];
            assert_eq!(lb.raw_uid[s], src.uid);
            assert_eq!(b.uid[s], v.uid.get(&src.uid));
            assert_eq!(b.mid[s], v.mid.get(&src.mid));
            // The last max_len behaviours, oldest first.
            let kept = &src.hist[src.hist.len().saturating_sub(cfg.max_len)..];
            assert_eq!(b.lengths[s], kept.len());
            for t in 0..b.steps {
                let i = s * b.steps + t;
                if t < kept.len() {
                    assert_eq!(b.hist_mid[i], v.mid.get(&kept[t]));
                    assert_ne!(nm[i], b.hist_mid[i], "negative equals positive");
                    assert_eq!(nc[i], sampler.categories().get(nm[i]));
                    assert_ne!(nm[i], 0, "every corpus item is in the vocabulary");
                } else {
                    assert_eq!((b.hist_mid[i], b.hist_cat[i], nm[i], nc[i]), (0, 0, 0, 0), "padding");
                }
            }
        }
    }
    // Expected order: per group of 8 lines, stable sort by untruncated length, longest first.
    let mut expected = Vec::new();
    for g in (1..=19).collect::<Vec<usize>>().chunks(8) {
        let mut g = g.to_vec();
        g.sort_by_key(|&l| std::cmp::Reverse(lines[l - 1].hist.len()));
        expected.extend(g);
    }
    assert_eq!(order, expected);
    // The sort must have used untruncated lengths: lengths 6, 5, 4 all truncate to 3.
    assert!(lines.iter().any(|l| l.hist.len() > 3) && lines.iter().any(|l| l.hist.is_empty()));
}

#[test]
fn unsorted_mode_keeps_file_order_without_negatives() {
    let d = tmp_dir("unsorted");
    write_synth(&d, 11);
    let cfg = BatcherConfig { sort_by_length: false, negatives: false, ..small_cfg(0) };
    let batches = collect(Batcher::open(&d.join(TRAIN_FILE), open_data(&d), cfg, 0).unwrap());
    let order: Vec<u64> = batches.iter().flat_map(|b| b.lines.clone()).collect();
    assert_eq!(order, (1..=11).collect::<Vec<u64>>());
    assert!(batches.iter().all(|b| !b.batch.has_negatives()));
}

#[test]
fn same_seed_same_batches_different_seed_or_epoch_different_negatives() {
    let d = tmp_dir("seed");
    write_synth(&d, 40);
    let data = open_data(&d);
    let path = d.join(TRAIN_FILE);
    let run = |seed: u64, epoch: u64| collect(Batcher::open(&path, data.clone(), small_cfg(seed), epoch).unwrap());
    let a = run(7, 0);
    assert_eq!(a, run(7, 0));
    for other in [run(8, 0), run(7, 1)] {
        assert_eq!(a.len(), other.len());
        let mut differ = 0;
        for (x, y) in a.iter().zip(&other) {
            // Everything but the negatives is the same.
            let (mut x2, mut y2) = (x.batch.clone(), y.batch.clone());
            differ += x2
                .neg_mid
                .iter()
                .zip(&y2.neg_mid)
                .map(|(p, q)| p.iter().zip(q).filter(|(a, b)| a != b).count())
                .sum::<usize>();
            x2.neg_mid = None;
            x2.neg_cat = None;
            y2.neg_mid = None;
            y2.neg_cat = None;
            assert_eq!(x2, y2);
        }
        assert!(differ > 20, "only {differ} negatives differ");
    }
}

#[test]
fn background_stream_equals_foreground() {
    let d = tmp_dir("stream");
    write_synth(&d, 45);
    let data = open_data(&d);
    let path = d.join(TRAIN_FILE);
    let fg = collect(Batcher::open(&path, data.clone(), small_cfg(1), 2).unwrap());
    for ahead in [1, 3] {
        let mut stream = Batcher::open(&path, data.clone(), small_cfg(1), 2).unwrap().spawn(ahead);
        let bg = collect(stream.by_ref());
        assert_eq!(bg, fg, "ahead = {ahead}");
        assert_eq!(stream.finish().unwrap().count, 0);
    }
    // Dropping a stream part-way stops its thread (the test would hang otherwise).
    let mut stream = BatchStream::spawn(Batcher::open(&path, data, small_cfg(1), 2).unwrap(), 1);
    assert_eq!(stream.next().unwrap().unwrap(), fg[0]);
    drop(stream);
}

#[test]
fn stream_reports_errors_and_counts_skipped_lines() {
    let d = tmp_dir("stream_err");
    write_synth(&d, 20);
    let data = open_data(&d);
    let path = d.join(TRAIN_FILE);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.insert_str(text.match_indices('\n').nth(9).unwrap().0 + 1, "1\tu1\tm1\n"); // line 11
    std::fs::write(&path, text).unwrap();
    let items: Vec<_> = Batcher::open(&path, data.clone(), small_cfg(1), 0).unwrap().spawn(2).collect();
    // Group 1 (lines 1–8) gives two batches, then the error, then the end.
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok() && items[1].is_ok());
    let e = items[2].as_ref().unwrap_err().to_string();
    assert!(e.contains(&format!("{}:11: field `line`", path.display())), "{e}");
    let cfg = BatcherConfig { skip_bad_lines: true, ..small_cfg(1) };
    let mut stream = Batcher::open(&path, data, cfg, 0).unwrap().spawn(2);
    let n: usize = collect(stream.by_ref()).iter().map(|b| b.batch.batch).sum();
    assert_eq!(n, 20);
    let bad = stream.finish().unwrap();
    assert_eq!(bad.count, 1);
    assert!(bad.first[0].contains(":11:"), "{}", bad.first[0]);
}

#[test]
fn resume_from_any_position_yields_the_same_remaining_batches() {
    let d = tmp_dir("resume");
    write_synth(&d, 37);
    let data = open_data(&d);
    let path = d.join(TRAIN_FILE);
    let cfg = small_cfg(9);
    let full = collect(Batcher::open(&path, data.clone(), cfg.clone(), 4).unwrap());
    assert_eq!(full.len(), 10); // groups of 8: 4 full groups (2 batches each) + 5 lines (2 batches)
    for k in 0..full.len() {
        let pos = full[k].next;
        let rest = collect(Batcher::open_at(&path, data.clone(), cfg.clone(), 4, pos).unwrap());
        assert_eq!(rest, full[k + 1..], "resumed after batch {k} at {pos:?}");
        // The position is plain data a checkpoint can hold.
        let json = serde_json::to_string(&pos).unwrap();
        assert_eq!(serde_json::from_str::<DataPosition>(&json).unwrap(), pos);
    }
    // A foreground batcher reports the same positions as it goes.
    let mut b = Batcher::open(&path, data.clone(), cfg.clone(), 4).unwrap();
    assert_eq!(b.data_position(), DataPosition::default());
    b.next().unwrap().unwrap();
    assert_eq!(b.data_position(), full[0].next);
    assert_eq!(b.lines_consumed(), 8);
    // Positions that no run can produce are refused.
    for (bad, what) in [
        (DataPosition { line: 3, batch: 0 }, "group boundary"),
        (DataPosition { line: 99, batch: 0 }, "beyond the end"),
        (DataPosition { line: 8, batch: 5 }, "beyond the 2 batches"),
    ] {
        let e = Batcher::open_at(&path, data.clone(), cfg.clone(), 4, bad).err().unwrap().to_string();
        assert!(e.contains(what), "{bad:?}: {e}");
    }
}

/// The real Amazon Beauty data in the reference layout, when present.
#[test]
fn reads_real_amazon_beauty_head() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real/amazon_s3rec/dien_format_Beauty");
    if !dir.join(TRAIN_FILE).is_file() {
        println!("SKIPPED: real data not found at {}", dir.display());
        return;
    }
    let (ds, rep) = DataSet::open(&dir, None, false).unwrap();
    assert!(rep.no_sampler.is_none());
    assert_eq!(rep.bad_lines.count, 0);
    // Sizes stated in the data's README: uid 20,087, mid 12,102, cat 196.
    let ds = Arc::new(ds);
    let v = &ds.vocabs;
    assert_eq!((v.uid.size, v.mid.size, v.cat.size), (20_087, 12_102, 196));
    assert_eq!(v.mid.get("default_mid"), 0);
    // A few hundred lines: groups of 4 × 32 = 128 lines; read three groups.
    let cfg = BatcherConfig { batch_size: 32, group_batches: 4, seed: 2018, ..Default::default() };
    let batches: Vec<LoadedBatch> =
        Batcher::open(&dir.join(TRAIN_FILE), ds.clone(), cfg, 0).unwrap().take(12).map(|r| r.unwrap()).collect();
    assert_eq!(batches.len(), 12);
    assert_eq!(batches[11].next, DataPosition { line: 384, batch: 0 });
    let sampler = ds.sampler.as_ref().unwrap();
    let (mut pos, mut n, mut unknown_hist) = (0.0, 0usize, 0usize);
    for lb in &batches {
        let b = &lb.batch;
        b.validate(v.uid.size, v.mid.size, v.cat.size).unwrap();
        // Histories in this set are 4..203 long (README); sorted longest first in a group.
        assert!(b.lengths.iter().all(|&l| (4..=100).contains(&l)), "{:?}", b.lengths);
        let (nm, nc) = (b.neg_mid.as_ref().unwrap(), b.neg_cat.as_ref().unwrap());
        for s in 0..b.batch {
            for t in 0..b.lengths[s] {
                let i = s * b.steps + t;
                assert_ne!(nm[i], b.hist_mid[i]);
                assert_eq!(nc[i], sampler.categories().get(nm[i]));
                unknown_hist += usize::from(b.hist_mid[i] == 0);
            }
        }
        pos += b.label.iter().sum::<f32>();
        n += b.batch;
    }
    assert_eq!(n, 384);
    // Pairs of (negative, positive) lines per user: exactly balanced.
    assert_eq!(pos as usize, n / 2);
    assert_eq!(unknown_hist, 0, "training histories are in the training vocabulary");
    // The test file parses with the same vocabularies.
    let cfg = BatcherConfig { negatives: false, sort_by_length: false, keep_raw_uid: true, ..Default::default() };
    let first = Batcher::open(&dir.join(TEST_FILE), ds.clone(), cfg, 0).unwrap().next().unwrap().unwrap();
    assert_eq!(first.lines[..3], [1, 2, 3]);
    assert_eq!(first.raw_uid.len(), first.batch.batch);
}

/// Built vocabularies on the real data against an independent count: ours
/// break ties by first appearance, the data set's JSON (written by its own
/// script) by key; both must follow the same counts.
#[test]
fn built_vocabs_match_the_real_data_set_counts() {
    use std::collections::HashMap;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/real/amazon_s3rec/dien_format_Beauty");
    if !dir.join(TRAIN_FILE).is_file() {
        println!("SKIPPED: real data not found at {}", dir.display());
        return;
    }
    let text = std::fs::read_to_string(dir.join(TRAIN_FILE)).unwrap();
    // (count, first appearance) per id, counted here with plain string splits.
    let mut counts: [HashMap<&str, (u64, usize)>; 3] = Default::default();
    let mut seen = 0usize;
    fn bump<'a>(map: &mut HashMap<&'a str, (u64, usize)>, id: &'a str, seen: &mut usize) {
        map.entry(id).or_insert((0, *seen)).0 += 1;
        *seen += 1;
    }
    let mut add = |k: usize, id| bump(&mut counts[k], id, &mut seen);
    for l in text.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        add(0, f[1]);
        add(1, f[2]);
        add(2, f[3]);
        if !f[4].is_empty() {
            f[4].split('\u{2}').for_each(|m| add(1, m));
            f[5].split('\u{2}').for_each(|c| add(2, c));
        }
    }
    let (built, _) = dien_trainer::data::build_vocabs(&dir.join(TRAIN_FILE), false).unwrap();
    let (ds, _) = DataSet::open(&dir, None, false).unwrap();
    let names = ["uid", "mid", "cat"];
    for (k, (ours, theirs)) in
        [(&built.uid, &ds.vocabs.uid), (&built.mid, &ds.vocabs.mid), (&built.cat, &ds.vocabs.cat)]
            .into_iter()
            .enumerate()
    {
        let mut by_first: Vec<(&str, (u64, usize))> = counts[k].iter().map(|(&id, &c)| (id, c)).collect();
        by_first.sort_by_key(|&(_, (c, first))| (std::cmp::Reverse(c), first));
        let mut by_key = by_first.clone();
        by_key.sort_by_key(|&(id, (c, _))| (std::cmp::Reverse(c), id));
        for (i, (id, _)) in by_first.iter().enumerate() {
            assert_eq!(ours.get(id), i as u32 + 1, "{}: `{id}`", names[k]);
        }
        // The data set's uid vocabulary has no unknown entry (index 0 is a user).
        let off = u32::from(k != 0);
        for (i, (id, _)) in by_key.iter().enumerate() {
            assert_eq!(theirs.get(id), i as u32 + off, "{}: `{id}` in the data set's JSON", names[k]);
        }
        assert_eq!(ours.size, by_first.len() + 1);
    }
}
