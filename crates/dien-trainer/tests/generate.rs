//! The synthetic generator: determinism, the layout of docs/MODEL.md#data-layout, vocabularies,
//! and the statistical properties it exists for: in trend pairs the label
//! follows the trend of the candidate's category, hardly its count; in
//! presence pairs it follows whether a minor category occurs at all, in no
//! particular order.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use dien_trainer::TrainError;
use dien_trainer::generate::{GenerateConfig, UNKNOWN_KEYS, generate};
use dien_trainer::metrics::auc;

const FILES: [&str; 7] = [
    "local_train_splitByUser",
    "local_test_splitByUser",
    "uid_voc.pkl",
    "mid_voc.pkl",
    "cat_voc.pkl",
    "item-info",
    "reviews-info",
];

/// A fresh, empty directory under Cargo's per-test temporary folder.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("generate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn small(seed: u64) -> GenerateConfig {
    GenerateConfig {
        users: 400,
        items: 300,
        categories: 12,
        min_len: 3,
        max_len: 25,
        seed,
        ..GenerateConfig::default()
    }
}

/// One parsed sample line.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    label: u8,
    uid: String,
    mid: String,
    cat: String,
    hist_mid: Vec<String>,
    hist_cat: Vec<String>,
}

fn parse_file(path: &Path) -> Vec<Sample> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'), "{} does not end with a newline", path.display());
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 6, "{}:{}: {} fields", path.display(), n + 1, f.len());
            let split = |s: &str| -> Vec<String> { s.split('\u{2}').map(str::to_owned).collect() };
            Sample {
                label: f[0].parse().unwrap(),
                uid: f[1].to_owned(),
                mid: f[2].to_owned(),
                cat: f[3].to_owned(),
                hist_mid: split(f[4]),
                hist_cat: split(f[5]),
            }
        })
        .collect()
}

fn read_pickle(path: &Path) -> HashMap<String, u32> {
    let bytes = std::fs::read(path).unwrap();
    serde_pickle::from_slice(&bytes, serde_pickle::DeOptions::new()).unwrap()
}

#[test]
fn same_seed_same_bytes_other_seed_other_data() {
    let (a, b, c) = (scratch_dir("det-a"), scratch_dir("det-b"), scratch_dir("det-c"));
    let sa = generate(&a, &small(7)).unwrap();
    let sb = generate(&b, &small(7)).unwrap();
    generate(&c, &small(8)).unwrap();
    assert_eq!(sa, sb);
    for f in FILES {
        let (x, y) = (std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap());
        assert!(!x.is_empty(), "{f} is empty");
        assert!(x == y, "{f} differs between two runs with the same seed");
    }
    for f in ["local_train_splitByUser", "local_test_splitByUser", "reviews-info"] {
        assert_ne!(std::fs::read(a.join(f)).unwrap(), std::fs::read(c.join(f)).unwrap(), "{f}: seed ignored");
    }
    for d in [a, b, c] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn layout_pairs_split_and_item_info() {
    let dir = scratch_dir("layout");
    let cfg = small(3);
    let summary = generate(&dir, &cfg).unwrap();
    let train = parse_file(&dir.join("local_train_splitByUser"));
    let test = parse_file(&dir.join("local_test_splitByUser"));
    assert_eq!((train.len(), test.len()), (summary.train_samples, summary.test_samples));
    assert_eq!(summary.test_users, 40, "10% of 400 users");
    assert_eq!(test.len(), 2 * 40);
    assert_eq!(train.len() + test.len(), 2 * cfg.users);
    assert_eq!(summary.trend_pairs + summary.random_pairs + summary.presence_pairs, cfg.users);

    let item_info = std::fs::read_to_string(dir.join("item-info")).unwrap();
    let item_cat: HashMap<&str, &str> = item_info
        .lines()
        .map(|l| {
            let (m, c) = l.split_once('\t').unwrap();
            (m, c)
        })
        .collect();
    assert_eq!(item_cat.len(), cfg.items, "item-info has duplicate or missing items");
    let cats: HashSet<&str> = item_cat.values().copied().collect();
    assert_eq!(cats.len(), cfg.categories, "some category has no item");

    for (name, samples) in [("train", &train), ("test", &test)] {
        // One (negative, positive) pair per user, same user and history.
        assert_eq!(samples.len() % 2, 0);
        let positives = samples.iter().filter(|s| s.label == 1).count();
        assert_eq!(2 * positives, samples.len(), "{name}: labels not balanced");
        for pair in samples.chunks(2) {
            let (neg, pos) = (&pair[0], &pair[1]);
            assert_eq!((neg.label, pos.label), (0, 1), "{name}: pair order");
            assert_eq!((&neg.uid, &neg.hist_mid, &neg.hist_cat), (&pos.uid, &pos.hist_mid, &pos.hist_cat));
            assert_ne!(neg.mid, pos.mid, "{name}: negative equals positive for {}", neg.uid);
        }
        for s in samples.iter() {
            let len = s.hist_mid.len();
            assert!((cfg.min_len..=cfg.max_len).contains(&len), "{name}: history length {len}");
            assert_eq!(s.hist_cat.len(), len);
            assert_eq!(
                item_cat.get(s.mid.as_str()),
                Some(&s.cat.as_str()),
                "{name}: target {} not in item-info",
                s.mid
            );
            for (m, c) in s.hist_mid.iter().zip(&s.hist_cat) {
                assert_eq!(item_cat.get(m.as_str()), Some(&c.as_str()), "{name}: history item {m} not in item-info");
            }
        }
    }
    let train_users: HashSet<&str> = train.iter().map(|s| s.uid.as_str()).collect();
    assert!(test.iter().all(|s| !train_users.contains(s.uid.as_str())), "a user is in both files");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn histories_are_oldest_first_as_in_reviews_info() {
    let dir = scratch_dir("order");
    generate(&dir, &small(4)).unwrap();
    // reviews-info lists every user's events with timestamps; sorting them by
    // time must give the history followed by the positive.
    let reviews = std::fs::read_to_string(dir.join("reviews-info")).unwrap();
    let mut events: HashMap<&str, Vec<(u64, &str)>> = HashMap::new();
    for l in reviews.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        assert_eq!(f.len(), 4, "reviews-info line {l:?}");
        f[2].parse::<f64>().unwrap();
        events.entry(f[0]).or_default().push((f[3].parse().unwrap(), f[1]));
    }
    let mut checked = 0;
    for file in ["local_train_splitByUser", "local_test_splitByUser"] {
        for s in parse_file(&dir.join(file)).iter().filter(|s| s.label == 1) {
            let mut ev = events[s.uid.as_str()].clone();
            ev.sort_unstable();
            let items: Vec<&str> = ev.iter().map(|e| e.1).collect();
            let (last, hist) = items.split_last().unwrap();
            assert_eq!(hist, &s.hist_mid.iter().map(String::as_str).collect::<Vec<_>>()[..], "user {}", s.uid);
            assert_eq!(*last, s.mid, "user {}: positive is not the next event", s.uid);
            checked += 1;
        }
    }
    assert_eq!(checked, 400);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn vocabularies_are_dense_with_unknown_at_zero_and_frequency_ordered() {
    let dir = scratch_dir("voc");
    let summary = generate(&dir, &small(5)).unwrap();
    let train = parse_file(&dir.join("local_train_splitByUser"));

    // Counts over every field of every training line.
    let mut counts: [HashMap<String, u64>; 3] = Default::default();
    for s in &train {
        *counts[0].entry(s.uid.clone()).or_default() += 1;
        *counts[1].entry(s.mid.clone()).or_default() += 1;
        *counts[2].entry(s.cat.clone()).or_default() += 1;
        for (m, c) in s.hist_mid.iter().zip(&s.hist_cat) {
            *counts[1].entry(m.clone()).or_default() += 1;
            *counts[2].entry(c.clone()).or_default() += 1;
        }
    }
    let sizes = [summary.uid_vocab, summary.mid_vocab, summary.cat_vocab];
    for (k, file) in ["uid_voc.pkl", "mid_voc.pkl", "cat_voc.pkl"].into_iter().enumerate() {
        let voc = read_pickle(&dir.join(file));
        assert_eq!(voc.len(), sizes[k], "{file}");
        assert_eq!(voc.get(UNKNOWN_KEYS[k]), Some(&0), "{file}: unknown key not at 0");
        // Dense: the indices are exactly 0..n.
        let mut idx: Vec<u32> = voc.values().copied().collect();
        idx.sort_unstable();
        assert!(idx.iter().enumerate().all(|(i, &v)| v as usize == i), "{file}: indices not dense");
        // Exactly the training ids, most frequent first.
        assert_eq!(voc.len(), counts[k].len() + 1, "{file}: not the training file's ids");
        let mut by_index: Vec<(&str, u32)> = voc.iter().map(|(s, &i)| (s.as_str(), i)).collect();
        by_index.sort_unstable_by_key(|e| e.1);
        let freq: Vec<u64> = by_index[1..].iter().map(|(s, _)| counts[k][*s]).collect();
        assert!(freq.windows(2).all(|w| w[0] >= w[1]), "{file}: not ordered by frequency");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn pickles_load_in_python() {
    let dir = scratch_dir("python");
    generate(&dir, &small(6)).unwrap();
    let script = "import pickle, sys\n\
                  for f in sys.argv[1:]:\n\
                  \x20   d = pickle.load(open(f, 'rb'))\n\
                  \x20   assert isinstance(d, dict) and all(isinstance(k, str) and isinstance(v, int) for k, v in d.items())\n\
                  \x20   assert sorted(d.values()) == list(range(len(d)))\n\
                  \x20   assert list(d.values()) == list(range(len(d))), 'insertion order is index order'\n\
                  \x20   print(len(d), min(d, key=d.get))\n";
    let files = ["uid_voc.pkl", "mid_voc.pkl", "cat_voc.pkl"].map(|f| dir.join(f));
    match Command::new("python3").arg("-c").arg(script).args(&files).output() {
        Err(e) => println!("skipped: python3 is not available ({e})"),
        Ok(out) => {
            assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8(out.stdout).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 3);
            for (k, f) in files.iter().enumerate() {
                let n = read_pickle(f).len();
                assert_eq!(lines[k], format!("{n} {}", UNKNOWN_KEYS[k]), "python and serde-pickle disagree on {f:?}");
            }
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn invalid_configs_are_rejected_with_the_field_named() {
    let dir = scratch_dir("invalid");
    let cases: [(&str, GenerateConfig); 8] = [
        ("max_len", GenerateConfig { min_len: 10, max_len: 5, ..small(1) }),
        ("test_fraction", GenerateConfig { test_fraction: 1.0, ..small(1) }),
        ("interests_min", GenerateConfig { interests_min: 1, ..small(1) }),
        ("categories", GenerateConfig { categories: 3, interests_max: 4, ..small(1) }),
        ("explore", GenerateConfig { explore: 1.5, ..small(1) }),
        ("trend", GenerateConfig { trend: f64::NAN, ..small(1) }),
        ("presence", GenerateConfig { presence: 0.7, random_negative: 0.5, ..small(1) }),
        ("presence_count", GenerateConfig { presence_count: 0, ..small(1) }),
    ];
    for (field, cfg) in cases {
        match generate(&dir, &cfg) {
            Err(TrainError::Config(msg)) => assert!(msg.contains(field), "{field}: message {msg:?}"),
            other => panic!("{field}: expected a config error, got {other:?}"),
        }
    }
    assert!(!dir.exists(), "an invalid config must not create the directory");
}

/// Position of behaviour `t` of `len` in [−1, 1], oldest −1.
fn position(t: usize, len: usize) -> f64 {
    2.0 * (t as f64 + 0.5) / len as f64 - 1.0
}

/// Per sample: (label, count of the candidate's category in the history,
/// trend = Σ over those occurrences of their positions).
fn predictors(samples: &[Sample]) -> (Vec<u8>, Vec<f64>, Vec<f64>) {
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for s in samples {
        let (mut count, mut trend) = (0.0, 0.0);
        for (t, c) in s.hist_cat.iter().enumerate() {
            if *c == s.cat {
                count += 1.0;
                trend += position(t, s.hist_cat.len());
            }
        }
        out.0.push(s.label);
        out.1.push(count);
        out.2.push(trend);
    }
    out
}

/// Generates `cfg` and returns every sample (train and test) and the summary.
fn all_samples(cfg: &GenerateConfig, name: &str) -> (Vec<Sample>, dien_trainer::generate::GenerateSummary) {
    let dir = scratch_dir(name);
    let summary = generate(&dir, cfg).unwrap();
    let mut samples = parse_file(&dir.join("local_train_splitByUser"));
    samples.extend(parse_file(&dir.join("local_test_splitByUser")));
    std::fs::remove_dir_all(dir).unwrap();
    (samples, summary)
}

/// (count AUC, trend AUC) over all samples.
fn predictor_aucs(samples: &[Sample]) -> (f64, f64) {
    let (labels, count, trend) = predictors(samples);
    (auc(&count, &labels).unwrap(), auc(&trend, &labels).unwrap())
}

fn trend_only(users: usize, seed: u64) -> GenerateConfig {
    GenerateConfig { users, seed, random_negative: 0.0, presence: 0.0, ..GenerateConfig::default() }
}

#[test]
fn trend_pairs_follow_the_trend_not_the_count() {
    // Only trend pairs: both categories of a pair are equally frequent by
    // time-reversal symmetry, so counts carry (almost) nothing.
    let (samples, summary) = all_samples(&trend_only(3000, 11), "stat-trend");
    assert_eq!(summary.trend_pairs, 3000);
    let (count_auc, trend_auc) = predictor_aucs(&samples);
    println!("trend pairs only: count AUC {count_auc:.3}, trend AUC {trend_auc:.3}");
    assert!((count_auc - 0.5).abs() < 0.04, "count AUC {count_auc}");
    assert!(trend_auc > 0.75, "trend AUC {trend_auc}");

    // Random negatives are recognisable from counts, and the trend still
    // beats the count.
    let cfg = GenerateConfig { random_negative: 0.35, ..trend_only(3000, 11) };
    let (samples, _) = all_samples(&cfg, "stat-random");
    let (count_auc, trend_auc) = predictor_aucs(&samples);
    println!("with random pairs: count AUC {count_auc:.3}, trend AUC {trend_auc:.3}");
    assert!(count_auc > 0.55, "count AUC {count_auc}");
    assert!(trend_auc > count_auc + 0.15, "trend AUC {trend_auc} vs count AUC {count_auc}");
}

#[test]
fn presence_pairs_plant_a_minor_category_in_no_particular_order() {
    let cfg =
        GenerateConfig { users: 3000, seed: 12, presence: 1.0, random_negative: 0.0, ..GenerateConfig::default() };
    let (samples, summary) = all_samples(&cfg, "stat-presence");
    // With 40 categories every user has two new ones: no fallback.
    assert_eq!(summary.presence_pairs, 3000);
    let (mut positions, mut share, mut top_share) = (Vec::new(), 0.0, 0.0);
    for pair in samples.chunks(2) {
        let (neg, pos) = (&pair[0], &pair[1]);
        let hist = &pos.hist_cat;
        assert_ne!(neg.cat, pos.cat);
        // The positive's category is planted exactly `presence_count` times;
        // the negative's never occurs.
        let planted: Vec<usize> = (0..hist.len()).filter(|&t| hist[t] == pos.cat).collect();
        assert_eq!(planted.len(), cfg.presence_count.min(hist.len()), "user {}", pos.uid);
        assert!(!hist.contains(&neg.cat), "user {}: negative category in the history", pos.uid);
        positions.extend(planted.iter().map(|&t| position(t, hist.len())));
        share += planted.len() as f64 / hist.len() as f64;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for c in hist {
            *counts.entry(c.as_str()).or_default() += 1;
        }
        top_share += *counts.values().max().unwrap() as f64 / hist.len() as f64;
    }
    let n = (samples.len() / 2) as f64;
    let (share, top_share) = (share / n, top_share / n);
    // Uniform positions: mean 0, variance 1/3 on [−1, 1].
    let mean = positions.iter().sum::<f64>() / positions.len() as f64;
    let var = positions.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / positions.len() as f64;
    println!("planted share {share:.3}, top category share {top_share:.3}, position mean {mean:.3} var {var:.3}");
    assert!(mean.abs() < 0.03 && (var - 1.0 / 3.0).abs() < 0.02, "positions: mean {mean}, var {var}");
    // A minor category beside heavier interests (what sum pooling blurs).
    assert!(share < 0.15 && top_share > 2.5 * share, "planted share {share}, top share {top_share}");

    // Order carries nothing: the trend predictor is at chance within pairs
    // (positions are symmetric around 0), while presence alone separates.
    let (count_auc, trend_auc) = predictor_aucs(&samples);
    println!("presence pairs only: count AUC {count_auc:.3}, trend AUC {trend_auc:.3}");
    assert_eq!(count_auc, 1.0);
    assert!((trend_auc - 0.5).abs() < 0.04, "trend AUC {trend_auc}");
}

#[test]
fn default_mix_has_each_kind_in_its_share() {
    let cfg = GenerateConfig { users: 4000, seed: 13, ..GenerateConfig::default() };
    let (samples, s) = all_samples(&cfg, "stat-mix");
    let share = |n: usize| n as f64 / cfg.users as f64;
    let trend_share = 1.0 - cfg.presence - cfg.random_negative;
    println!("pairs: {} trend, {} random, {} presence", s.trend_pairs, s.random_pairs, s.presence_pairs);
    // Binomial standard deviation ≤ 0.008 at 4000 users.
    assert!((share(s.presence_pairs) - cfg.presence).abs() < 0.03);
    assert!((share(s.random_pairs) - cfg.random_negative).abs() < 0.03);
    assert!((share(s.trend_pairs) - trend_share).abs() < 0.03);
    // Both signals show: the trend is the stronger simple predictor, and the
    // count (presence and random pairs) is well above chance.
    let (count_auc, trend_auc) = predictor_aucs(&samples);
    println!("default mix: count AUC {count_auc:.3}, trend AUC {trend_auc:.3}");
    assert!(count_auc > 0.65, "count AUC {count_auc}");
    assert!(trend_auc > count_auc + 0.05, "trend AUC {trend_auc} vs count AUC {count_auc}");
}

#[test]
fn trainer_data_layer_reads_the_generated_set() {
    use dien_trainer::data::line::parse_sample;
    use dien_trainer::data::{DataSet, VocabSource};
    let dir = scratch_dir("reader");
    let summary = generate(&dir, &small(9)).unwrap();
    let (ds, report) = DataSet::open(&dir, None, false).unwrap();
    assert!(report.no_sampler.is_none(), "{:?}", report.no_sampler);
    assert_eq!(report.bad_lines.count, 0);
    let sources = report.vocab_sources.expect("vocabularies loaded from the directory");
    for (src, file) in sources.iter().zip(["uid_voc.pkl", "mid_voc.pkl", "cat_voc.pkl"]) {
        assert_eq!(src, &VocabSource::File(dir.join(file)), "{file} not read from the pickle");
    }
    let sizes = ds.vocabs.table_sizes();
    assert_eq!((sizes.uid, sizes.mid, sizes.cat), (summary.uid_vocab, summary.mid_vocab, summary.cat_vocab));
    for (file, known) in [(DataSet::train_file(&dir), true), (DataSet::test_file(&dir), false)] {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let s = parse_sample(line.as_bytes(), &ds.vocabs, &sizes)
                .unwrap_or_else(|e| panic!("{}:{}: {e:?}", file.display(), n + 1));
            if known {
                // Every training id is in its vocabulary, so none maps to 0.
                let head = s.head;
                assert!(head.uid > 0 && head.mid > 0 && head.cat > 0, "{}:{}", file.display(), n + 1);
                assert!(s.hist_mid.iter().chain(&s.hist_cat).all(|&i| i > 0), "{}:{}", file.display(), n + 1);
            } else {
                // Test users are never in the training vocabulary.
                assert_eq!(s.head.uid, 0, "{}:{}", file.display(), n + 1);
            }
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}
