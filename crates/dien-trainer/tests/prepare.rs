//! `dien prepare`: the reference procedure on a hand-written event log
//! (tests/fixtures/prepare_events.csv: 30 events of 6 users, one of them
//! with a single event, a tie of timestamps, a `buy` event and a quoted
//! field), the external sort, bad lines, refused outputs, the Amazon and
//! MovieLens readers, and, when the real logs are present
//! (`../shared/data/real` beside the workspace, or `DIEN_REAL_DATA`), Taobao
//! and MovieLens prepared and trained on.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use dien_model::ModelKind;
use dien_trainer::prepare::{BehaviorFilter, EventFormat, PrepareConfig, PrepareSummary, prepare};
use dien_trainer::train::{TrainConfig, train};

const OUTPUTS: [&str; 7] = [
    "local_train_splitByUser",
    "local_test_splitByUser",
    "uid_voc.json",
    "mid_voc.json",
    "cat_voc.json",
    "item-info",
    "reviews-info",
];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prepare_events.csv")
}

/// A fresh, empty directory under Cargo's per-test temporary folder.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("prepare-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fixture prepared as CSV with half the users in the test file (seed
/// chosen so that both files have users).
fn config(events: &Path, out: &Path) -> PrepareConfig {
    let mut c = PrepareConfig::new(events, EventFormat::Csv, out);
    c.test_frac = 0.5;
    c.seed = 3;
    c
}

/// One event of the fixture, parsed independently of the library.
#[derive(Clone, Debug)]
struct LogEvent {
    user: String,
    item: String,
    cat: String,
    time: f64,
    behavior: String,
}

fn fixture_events() -> Vec<LogEvent> {
    let text = std::fs::read_to_string(fixture()).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.splitn(6, ',').collect();
            LogEvent {
                user: f[0].into(),
                item: f[1].into(),
                cat: f[2].into(),
                time: f[3].parse().unwrap(),
                behavior: f[4].into(),
            }
        })
        .collect()
}

/// Each user's events sorted by time, ties in input order (a stable sort).
fn by_user(events: &[LogEvent]) -> HashMap<String, Vec<LogEvent>> {
    let mut m: HashMap<String, Vec<LogEvent>> = HashMap::new();
    for e in events {
        m.entry(e.user.clone()).or_default().push(e.clone());
    }
    for evs in m.values_mut() {
        evs.sort_by(|a, b| a.time.total_cmp(&b.time));
    }
    m
}

#[derive(Clone, Debug, PartialEq)]
struct Sample {
    label: String,
    uid: String,
    mid: String,
    cat: String,
    hist_mid: Vec<String>,
    hist_cat: Vec<String>,
}

fn samples(path: &Path) -> Vec<Sample> {
    let text = std::fs::read_to_string(path).unwrap();
    let hist = |s: &str| if s.is_empty() { vec![] } else { s.split('\u{2}').map(String::from).collect() };
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 6, "{l:?}");
            Sample {
                label: f[0].into(),
                uid: f[1].into(),
                mid: f[2].into(),
                cat: f[3].into(),
                hist_mid: hist(f[4]),
                hist_cat: hist(f[5]),
            }
        })
        .collect()
}

fn tab_lines(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| l.split('\t').map(String::from).collect()).collect()
}

fn json_voc(path: &Path) -> HashMap<String, u32> {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The vocabulary the reference script builds from counts: `default` (if
/// any) at 0, then by decreasing count, ties by id.
fn reference_voc(counts: &HashMap<String, u64>, default: Option<&str>) -> HashMap<String, u32> {
    let mut ids: Vec<(&String, &u64)> = counts.iter().collect();
    ids.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let mut voc: HashMap<String, u32> = HashMap::new();
    for key in default.map(String::from).into_iter().chain(ids.into_iter().map(|(k, _)| k.clone())) {
        let n = voc.len() as u32;
        voc.entry(key).or_insert(n);
    }
    voc
}

#[test]
fn fixture_follows_the_reference_procedure() {
    let out = scratch("fixture");
    let s = prepare(&config(&fixture(), &out)).unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let mut want: Vec<&str> = OUTPUTS.to_vec();
    want.sort();
    assert_eq!(names, want, "exactly the layout's files, no temporary left");

    let events = fixture_events();
    let users = by_user(&events);
    assert_eq!((s.input_lines, s.events, s.users, s.runs), (31, 30, 6, 0));
    assert_eq!(s.dropped_users.one_event, 1, "u3 has a single event");
    assert_eq!(s.train_users + s.test_users, 5);
    assert!(s.train_users > 0 && s.test_users > 0, "{s:?}");
    assert_eq!((s.train_samples, s.test_samples), (2 * s.train_users, 2 * s.test_users));
    assert_eq!((s.items, s.event_items, s.categories), (10, 10, 5));

    // item-info: every item with the category of its first event, in order of first appearance.
    let mut first: Vec<(String, String)> = vec![];
    for e in &events {
        if !first.iter().any(|(i, _)| *i == e.item) {
            first.push((e.item.clone(), e.cat.clone()));
        }
    }
    let item_info: Vec<(String, String)> =
        tab_lines(&out.join("item-info")).into_iter().map(|f| (f[0].clone(), f[1].clone())).collect();
    assert_eq!(item_info, first);
    let cat_of: HashMap<String, String> = item_info.into_iter().collect();

    // reviews-info: one line per event.
    let mut reviews: Vec<(String, String, String)> =
        tab_lines(&out.join("reviews-info")).into_iter().map(|f| (f[0].clone(), f[1].clone(), f[3].clone())).collect();
    let mut want: Vec<(String, String, String)> =
        events.iter().map(|e| (e.user.clone(), e.item.clone(), e.time.to_string())).collect();
    reviews.sort();
    want.sort();
    assert_eq!(reviews, want);

    let train = samples(&out.join("local_train_splitByUser"));
    let test = samples(&out.join("local_test_splitByUser"));
    let mut seen = HashSet::new();
    for (file, lines) in [("train", &train), ("test", &test)] {
        assert_eq!(lines.len() % 2, 0);
        for pair in lines.chunks(2) {
            let (neg, pos) = (&pair[0], &pair[1]);
            assert_eq!((neg.label.as_str(), pos.label.as_str()), ("0", "1"), "negative line first ({file})");
            assert_eq!(neg.uid, pos.uid);
            assert!(seen.insert(pos.uid.clone()), "user {} twice: train and test overlap", pos.uid);
            let evs = &users[&pos.uid];
            let (last, earlier) = evs.split_last().unwrap();
            assert_eq!((&pos.mid, &pos.cat), (&last.item, &last.cat), "the positive is the last event");
            let hist: Vec<String> = earlier.iter().map(|e| e.item.clone()).collect();
            let hist_cat: Vec<String> = earlier.iter().map(|e| cat_of[&e.item].clone()).collect();
            assert_eq!(pos.hist_mid, hist, "history = earlier events, oldest first");
            assert_eq!(pos.hist_cat, hist_cat);
            assert_eq!((&neg.hist_mid, &neg.hist_cat), (&pos.hist_mid, &pos.hist_cat));
            assert_ne!(neg.mid, pos.mid, "the negative differs from the positive");
            assert_eq!(neg.cat, cat_of[&neg.mid], "the negative carries its own category");
        }
    }
    let with_history: HashSet<String> = users.iter().filter(|(_, e)| e.len() >= 2).map(|(u, _)| u.clone()).collect();
    assert_eq!(seen, with_history);
    // Spelled out: the tie at time 105 keeps input order (i2 before i6).
    let u2 = train.iter().chain(&test).find(|s| s.uid == "u2" && s.label == "1").unwrap();
    assert_eq!(u2.hist_mid, ["i1", "i2", "i6", "i7", "i3"]);
    assert_eq!((u2.mid.as_str(), u2.cat.as_str()), ("i9", "c5"));

    // Vocabularies: counted on the training file as the reference script counts.
    let (mut uid, mut mid, mut cat) = (HashMap::new(), HashMap::new(), HashMap::new());
    for l in &train {
        *uid.entry(l.uid.clone()).or_insert(0u64) += 1;
        for m in std::iter::once(&l.mid).chain(&l.hist_mid) {
            *mid.entry(m.clone()).or_insert(0u64) += 1;
        }
        for c in std::iter::once(&l.cat).chain(&l.hist_cat) {
            *cat.entry(c.clone()).or_insert(0u64) += 1;
        }
    }
    let uid_voc = json_voc(&out.join("uid_voc.json"));
    assert_eq!(uid_voc, reference_voc(&uid, None), "uid_voc: no unknown entry, as the reference's");
    let mid_voc = json_voc(&out.join("mid_voc.json"));
    assert_eq!(mid_voc, reference_voc(&mid, Some("default_mid")));
    assert_eq!(mid_voc["default_mid"], 0);
    let cat_voc = json_voc(&out.join("cat_voc.json"));
    assert_eq!(cat_voc, reference_voc(&cat, Some("default_cat")));
    assert_eq!(cat_voc["default_cat"], 0);
    assert_eq!(
        (s.uid_vocab, s.mid_vocab, s.cat_vocab),
        (uid_voc.len() as u64, mid_voc.len() as u64, cat_voc.len() as u64)
    );
    // The most frequent item of the training file is at index 1.
    let top = mid.iter().max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0))).unwrap().0;
    assert_eq!(mid_voc[top], 1);

    // The trainer's data layer reads the result, vocabularies from the JSON files.
    let (data, report) = dien_trainer::data::DataSet::open(&out, None, false).unwrap();
    assert!(report.no_sampler.is_none());
    assert_eq!(data.vocabs.mid.size, mid_voc.len());
}

#[test]
fn external_merge_equals_the_in_memory_sort() {
    let (mem, ext) = (scratch("mem"), scratch("ext"));
    let s_mem = prepare(&config(&fixture(), &mem)).unwrap();
    let mut c = config(&fixture(), &ext);
    c.chunk_events = 3;
    let s_ext = prepare(&c).unwrap();
    assert_eq!(s_ext.runs, 10, "30 events in runs of 3");
    assert_eq!(PrepareSummary { runs: 0, ..s_ext }, s_mem);
    for f in OUTPUTS {
        assert_eq!(std::fs::read(mem.join(f)).unwrap(), std::fs::read(ext.join(f)).unwrap(), "{f}");
    }
    assert_eq!(std::fs::read_dir(&ext).unwrap().count(), OUTPUTS.len(), "runs and temporaries are removed");
}

#[test]
fn max_len_behavior_filter_and_min_count() {
    let full = samples(&{
        let out = scratch("full");
        prepare(&config(&fixture(), &out)).unwrap();
        out.join("local_train_splitByUser")
    });
    let out = scratch("maxlen");
    let mut c = config(&fixture(), &out);
    c.max_len = Some(2);
    let s = prepare(&c).unwrap();
    let cut = samples(&out.join("local_train_splitByUser"));
    assert_eq!(full.len(), cut.len());
    for (a, b) in full.iter().zip(&cut) {
        let keep = a.hist_mid.len().min(2);
        assert_eq!(b.hist_mid, a.hist_mid[a.hist_mid.len() - keep..], "the last max_len events are kept");
        assert_eq!(b.mid, a.mid);
    }
    assert_eq!(s.truncated_histories, 5, "every user with a sample has more than 2 earlier events");

    // --behavior pv drops u1's `buy` event; the format default (csv) keeps all.
    let out = scratch("behavior");
    let mut c = config(&fixture(), &out);
    c.behaviors = BehaviorFilter::Only(vec!["pv".into()]);
    let s = prepare(&c).unwrap();
    let other = fixture_events().iter().filter(|e| e.behavior != "pv").count() as u64;
    assert_eq!((s.events, s.dropped_lines.behavior), (30 - other, other));
    assert_eq!(other, 1);
    assert!(!std::fs::read_to_string(out.join("reviews-info")).unwrap().contains("u1\ti2\t"));

    // --min-count 2: i4, i8 and i10 have one event each and disappear everywhere.
    let out = scratch("mincount");
    let mut c = config(&fixture(), &out);
    c.min_count = Some(2);
    let s = prepare(&c).unwrap();
    assert_eq!((s.dropped_items, s.dropped_lines.min_count, s.events, s.items), (3, 3, 27, 7));
    assert_eq!((s.users, s.dropped_users.no_event_left, s.dropped_users.one_event), (5, 1, 0));
    for f in OUTPUTS {
        let text = std::fs::read_to_string(out.join(f)).unwrap();
        for item in ["i4", "i8", "i10"] {
            assert!(!text.split(['\t', '\n', '\u{2}', '"']).any(|t| t == item), "{item} in {f}");
        }
    }
}

#[test]
fn bad_lines_name_file_line_and_field_or_are_skipped() {
    let dir = scratch("bad");
    let events = dir.join("events.csv");
    let text = std::fs::read_to_string(fixture()).unwrap().replace("u3,i4,c2,50,", "u3,i4,c2,fifty,");
    std::fs::write(&events, format!("{text}u9,i1\n")).unwrap();
    let err = prepare(&config(&events, &dir.join("out"))).unwrap_err().to_string();
    assert!(err.contains(&format!("{}:5:", events.display())), "{err}");
    assert!(err.contains("timestamp") && err.contains("fifty"), "{err}");
    assert!(!dir.join("out").join("local_train_splitByUser").exists(), "nothing is written on error");
    assert_eq!(std::fs::read_dir(dir.join("out")).unwrap().count(), 0, "the temporary folder is removed");

    let mut c = config(&events, &dir.join("out"));
    c.skip_bad_lines = true;
    let s = prepare(&c).unwrap();
    assert_eq!((s.dropped_lines.malformed, s.bad_lines.count, s.events, s.users), (2, 2, 29, 5));
    assert!(s.bad_lines.first[1].contains(":32:") && s.bad_lines.first[1].contains("`line`"), "{:?}", s.bad_lines);
}

#[test]
fn an_output_directory_holding_an_input_is_refused() {
    let dir = scratch("refuse");
    let events = dir.join("in").join("events.csv");
    std::fs::create_dir_all(events.parent().unwrap()).unwrap();
    std::fs::copy(fixture(), &events).unwrap();
    for out in [events.clone(), dir.join("in"), dir.clone()] {
        let err = prepare(&config(&events, &out)).unwrap_err().to_string();
        assert!(err.contains("input") && err.contains(&events.display().to_string()), "{err}");
    }
    assert_eq!(std::fs::read_dir(dir.join("in")).unwrap().count(), 1, "nothing was written beside the input");
    assert_eq!(std::fs::read(&events).unwrap(), std::fs::read(fixture()).unwrap());

    // A vocabulary pickle the trainer would prefer to the JSON written here.
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::write(dir.join("out/mid_voc.pkl"), b"x").unwrap();
    let err = prepare(&config(&events, &dir.join("out"))).unwrap_err().to_string();
    assert!(err.contains("mid_voc.pkl"), "{err}");
}

#[test]
fn amazon_reviews_with_python_literal_metadata() {
    let dir = scratch("amazon");
    let reviews = dir.join("reviews.json");
    std::fs::write(
        &reviews,
        r#"{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 100}
{"reviewerID": "A1", "asin": "B2", "overall": 4.0, "unixReviewTime": 200}
{"reviewerID": "A2", "asin": "B2", "overall": 3.0, "unixReviewTime": 150}
{"reviewerID": "A2", "asin": "B3", "overall": 1.0, "unixReviewTime": 50}
{"reviewerID": "A2", "asin": "B1", "overall": 2.0, "unixReviewTime": 300}
"#,
    )
    .unwrap();
    let meta = dir.join("meta.json");
    std::fs::write(
        &meta,
        r#"{'asin': 'B1', 'categories': [['Books', 'Fiction'], ['Other']]}
{'asin': 'B2', 'title': "It's", 'categories': [['Books', 'History']]}
{"asin": "B3", "category": ["Books", "Poetry"]}
{'asin': 'B4', 'categories': [[]]}
"#,
    )
    .unwrap();
    let out = dir.join("out");
    let mut c = PrepareConfig::new(&reviews, EventFormat::AmazonJson, &out);
    c.test_frac = 0.0;
    let err = prepare(&c).unwrap_err().to_string();
    assert!(err.contains("--items"), "{err}");
    c.items = Some(meta);
    let s = prepare(&c).unwrap();
    assert_eq!((s.users, s.train_users, s.items, s.categories), (2, 2, 4, 3));
    let info = std::fs::read_to_string(out.join("item-info")).unwrap();
    assert_eq!(info, "B1\tFiction\nB2\tHistory\nB3\tPoetry\nB4\tdefault_cat\n");
    let train = samples(&out.join("local_train_splitByUser"));
    let pos: Vec<(&str, &str, Vec<String>)> =
        train.iter().filter(|s| s.label == "1").map(|s| (s.uid.as_str(), s.mid.as_str(), s.hist_mid.clone())).collect();
    assert_eq!(pos, [("A1", "B2", vec!["B1".to_string()]), ("A2", "B1", vec!["B3".into(), "B2".into()])]);
    let reviews_info = std::fs::read_to_string(out.join("reviews-info")).unwrap();
    assert!(reviews_info.starts_with("A1\tB1\t5.0\t100\n"), "{reviews_info}");
}

#[test]
fn movielens_categories_are_first_genres() {
    let dir = scratch("movielens");
    let ratings = dir.join("ratings.csv");
    std::fs::write(&ratings, "userId,movieId,rating,timestamp\n1,10,4.0,5\n1,20,3.5,3\n1,30,5.0,9\n2,10,1.0,1\n")
        .unwrap();
    let movies = dir.join("movies.csv");
    std::fs::write(
        &movies,
        "movieId,title,genres\n10,\"Toy Story, The (1995)\",Animation|Comedy\n20,Heat (1995),Action\n\
         30,Nothing (2000),(no genres listed)\n40,Unrated (2001),Drama\n",
    )
    .unwrap();
    let out = dir.join("out");
    let mut c = PrepareConfig::new(&ratings, EventFormat::Movielens, &out);
    c.items = Some(movies);
    c.test_frac = 0.0;
    let s = prepare(&c).unwrap();
    assert_eq!((s.users, s.train_users, s.dropped_users.one_event, s.items), (2, 1, 1, 4));
    let info = std::fs::read_to_string(out.join("item-info")).unwrap();
    assert_eq!(info, "10\tAnimation\n20\tAction\n30\tdefault_cat\n40\tDrama\n");
    let train = std::fs::read_to_string(out.join("local_train_splitByUser")).unwrap();
    assert!(train.ends_with("1\t1\t30\tdefault_cat\t20\u{2}10\tAction\u{2}Animation\n"), "{train:?}");
}

#[test]
fn command_line_prepare() {
    let dir = scratch("cli");
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_dien")).args(args).output().unwrap();
    let events = fixture();
    let out = dir.join("out");
    let o = run(&["prepare", "--events", events.to_str().unwrap(), "--format", "csv", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    let j: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!((j["users"].as_u64(), j["events"].as_u64()), (Some(6), Some(30)));
    assert_eq!(j["dropped_users"]["one_event"], 1);

    let o = run(&["prepare", "--events", "/nonexistent/e.csv", "--format", "csv", "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/e.csv"));

    let o = run(&["prepare", "--help"]);
    let help = String::from_utf8(o.stdout).unwrap();
    for name in
        EventFormat::ALL.map(EventFormat::name).iter().chain(&["--min-count", "--chunk-events", "--skip-bad-lines"])
    {
        assert!(help.contains(name), "`dien prepare --help` lacks {name}:\n{help}");
    }
}

// ---- the real logs --------------------------------------------------------

/// The real-data folder, or `None` (with the reason printed) when absent.
fn real_data() -> Option<PathBuf> {
    let dir = std::env::var_os("DIEN_REAL_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/real")));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: no real data at {} (set DIEN_REAL_DATA to its folder)", dir.display());
        None
    }
}

/// Users with at least two events among `(user, kept)` rows.
fn users_with_two_events(rows: impl Iterator<Item = String>) -> (usize, usize) {
    let mut n: HashMap<String, usize> = HashMap::new();
    for u in rows {
        *n.entry(u).or_default() += 1;
    }
    (n.len(), n.values().filter(|&&k| k >= 2).count())
}

/// Positive lines (label, user, target, history) of a data directory.
fn positives(dir: &Path) -> BTreeSet<String> {
    ["local_train_splitByUser", "local_test_splitByUser"]
        .iter()
        .flat_map(|f| std::fs::read_to_string(dir.join(f)).unwrap().lines().map(String::from).collect::<Vec<_>>())
        .filter(|l| l.starts_with("1\t"))
        .collect()
}

/// Checks a prepared real log against the raw counts and the folder the
/// reference script derived, then trains a few steps on it.
fn check_real(name: &str, out: &Path, s: &PrepareSummary, raw: (usize, usize), reference: &Path) {
    eprintln!("{name}: {}", serde_json::to_string(s).unwrap());
    assert_eq!(s.users as usize, raw.0, "{name}: users");
    assert_eq!((s.train_users + s.test_users) as usize, raw.1, "{name}: one sample per user with ≥ 2 events");
    if reference.is_dir() {
        let ours = positives(out);
        let theirs = positives(reference);
        eprintln!(
            "{name}: {} users with a sample here ({} train, {} test), {} in {}",
            ours.len(),
            s.train_users,
            s.test_users,
            theirs.len(),
            reference.display()
        );
        assert_eq!(ours.len(), theirs.len(), "{name}: users with a sample");
        assert!(ours == theirs, "{name}: positive lines (target and history) differ from the reference folder");
    }
    let mut c = TrainConfig::new(out, out.join("ck/m.safetensors"), ModelKind::Dien);
    (c.model.d, c.model.hidden, c.model.max_len) = (4, 8, 50);
    c.batch_size = 64;
    c.threads = Some(2);
    c.max_steps = Some(5);
    c.recal_samples = 256;
    let t = train(&c, &mut |_| {}).unwrap();
    assert_eq!(t.steps, 5, "{name}");
    assert!(t.last.auc.is_some_and(f64::is_finite), "{name}: {:?}", t.last);
}

#[test]
fn real_taobao_prepares_and_trains() {
    let Some(real) = real_data() else { return };
    let raw = real.join("taobao_userbehavior_head/raw/UserBehavior_head.csv");
    let text = std::fs::read_to_string(&raw).unwrap();
    let pv =
        text.lines().filter(|l| l.split(',').nth(3) == Some("pv")).map(|l| l.split(',').next().unwrap().to_owned());
    let counts = users_with_two_events(pv);
    let out = scratch("taobao");
    let s = prepare(&PrepareConfig::new(&raw, EventFormat::Taobao, &out)).unwrap();
    assert_eq!(s.dropped_lines.behavior, text.lines().count() as u64 - s.events, "only pv events are kept");
    check_real("taobao", &out, &s, counts, &real.join("taobao_userbehavior_head/dien_format"));
}

#[test]
fn real_movielens_prepares_and_trains() {
    let Some(real) = real_data() else { return };
    let dir = real.join("movielens_latest_small/raw");
    let ratings = dir.join("ratings.csv");
    let text = std::fs::read_to_string(&ratings).unwrap();
    let counts = users_with_two_events(text.lines().skip(1).map(|l| l.split(',').next().unwrap().to_owned()));
    let out = scratch("movielens");
    let mut c = PrepareConfig::new(&ratings, EventFormat::Movielens, &out);
    c.items = Some(dir.join("movies.csv"));
    let s = prepare(&c).unwrap();
    check_real("movielens", &out, &s, counts, &real.join("movielens_latest_small/dien_format"));
}
