//! Line parsing, vocabularies (pickle/JSON/built), item-info and reviews-info.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dien_model::vocab::IdMap;
use dien_trainer::TrainError;
use dien_trainer::data::line::{parse_sample, split_fields, strip_line_end};
use dien_trainer::data::{
    BadLines, Batcher, BatcherConfig, DataSet, ItemCategories, ItemCounts, TableSizes, Vocab, VocabSource, Vocabs,
    build_vocabs, load_or_build_vocabs, load_vocab,
};

fn tmp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("data_parse_{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Joins history ids with 0x02.
fn h(ids: &[&str]) -> String {
    ids.join("\u{2}")
}

fn line(label: &str, uid: &str, mid: &str, cat: &str, mh: &[&str], ch: &[&str]) -> String {
    format!("{label}\t{uid}\t{mid}\t{cat}\t{}\t{}", h(mh), h(ch))
}

/// Vocabularies mapping the given ids to 1.. in order (0 = unknown).
fn vocab_of(ids: &[&str]) -> Vocab {
    let mut m: IdMap = ids.iter().enumerate().map(|(i, s)| (s.to_string(), i as u32 + 1)).collect();
    m.insert("default".into(), 0);
    Vocab::from_map(m)
}

fn small_vocabs() -> Vocabs {
    Vocabs { uid: vocab_of(&["u1", "u2"]), mid: vocab_of(&["m1", "m2", "m3"]), cat: vocab_of(&["c1", "c2"]) }
}

fn no_neg_cfg() -> BatcherConfig {
    BatcherConfig { negatives: false, sort_by_length: false, batch_size: 4, ..BatcherConfig::default() }
}

fn read_all(path: &Path, vocabs: Vocabs, cfg: BatcherConfig) -> Result<(Vec<dien_model::Batch>, BadLines), TrainError> {
    let data = Arc::new(DataSet { vocabs, sampler: None });
    let mut b = Batcher::open(path, data, cfg, 0)?;
    let mut out = Vec::new();
    for lb in b.by_ref() {
        out.push(lb?.batch);
    }
    Ok((out, b.bad_lines().clone()))
}

#[test]
fn good_line_maps_fields_and_unknowns() {
    let v = small_vocabs();
    let l = line("1", "u2", "m3", "c9", &["m1", "zz", "m2"], &["c1", "c2", "c1"]);
    let s = parse_sample(l.as_bytes(), &v, &v.table_sizes()).unwrap();
    assert_eq!(s.head.label, 1.0);
    assert_eq!((s.head.uid, s.head.mid, s.head.cat), (2, 3, 0), "unknown cat c9 maps to 0");
    assert_eq!(s.hist_mid, vec![1, 0, 2], "unknown history item maps to 0");
    assert_eq!(s.hist_cat, vec![1, 2, 1]);
    // Label written as a float is accepted, as the reference parses it with float().
    let l0 = line("0.0", "u1", "m1", "c1", &[], &[]);
    let s0 = parse_sample(l0.as_bytes(), &v, &v.table_sizes()).unwrap();
    assert_eq!(s0.head.label, 0.0);
    assert!(s0.hist_mid.is_empty() && s0.hist_cat.is_empty(), "empty field = empty history");
}

#[test]
fn crlf_and_line_end_stripping() {
    assert_eq!(strip_line_end(b"a\tb\r\n"), b"a\tb");
    assert_eq!(strip_line_end(b"a\tb\n"), b"a\tb");
    assert_eq!(strip_line_end(b"a\tb"), b"a\tb");
    let d = tmp_dir("crlf");
    let lines = [
        line("1", "u1", "m1", "c1", &["m2", "m3"], &["c2", "c1"]),
        line("0", "u2", "m2", "c2", &[], &[]),
        line("1", "u1", "m3", "c1", &["m1"], &["c1"]),
    ];
    std::fs::write(d.join("lf"), lines.join("\n") + "\n").unwrap();
    std::fs::write(d.join("crlf"), lines.join("\r\n") + "\r\n").unwrap();
    // No final line ending at all.
    std::fs::write(d.join("noend"), lines.join("\r\n")).unwrap();
    let (a, _) = read_all(&d.join("lf"), small_vocabs(), no_neg_cfg()).unwrap();
    let (b, _) = read_all(&d.join("crlf"), small_vocabs(), no_neg_cfg()).unwrap();
    let (c, _) = read_all(&d.join("noend"), small_vocabs(), no_neg_cfg()).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a[0].batch, 3);
    assert_eq!(a[0].lengths, vec![2, 0, 1]);
    // The last category of line 1 must not carry a '\r'.
    assert_eq!(a[0].hist_cat[..2], [2, 1]);
}

#[test]
fn each_error_kind_names_file_line_and_field() {
    let v = small_vocabs();
    let good = line("1", "u1", "m1", "c1", &["m2"], &["c2"]);
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"1\tu1\tm1\tc1\tm2".to_vec(), "line", "expected 6"),
        (b"1\tu1\tm1\tc1\tm2\tc2\textra".to_vec(), "line", "found 7"),
        (line("2", "u1", "m1", "c1", &[], &[]).into_bytes(), "label", "not 0 or 1"),
        (line("yes", "u1", "m1", "c1", &[], &[]).into_bytes(), "label", "not 0 or 1"),
        (line("1", "u1", "m1", "c1", &["m1", "m2"], &["c1"]).into_bytes(), "cat_hist", "1 entries"),
        (line("1", "u1", "m1", "c1", &[], &["c1"]).into_bytes(), "cat_hist", "mid_hist has 0"),
        (b"1\tu1\tm\xff1\tc1\t\t".to_vec(), "mid", "UTF-8"),
        (b"1\tu1\tm1\tc1\tm1\x02\xc3\t\xe2\x82".to_vec(), "mid_hist", "UTF-8"),
    ];
    let d = tmp_dir("errors");
    for (k, (bad, field, what)) in cases.iter().enumerate() {
        // The direct parser names the field.
        let fault = split_fields(bad).unwrap_err();
        assert_eq!(fault.field, *field, "case {k}: {}", fault.msg);
        assert!(fault.msg.contains(what), "case {k}: {}", fault.msg);
        // Through the reader: file, line number (3: after two good lines) and field.
        let path = d.join(format!("case{k}"));
        let mut bytes = format!("{good}\n{good}\n").into_bytes();
        bytes.extend_from_slice(bad);
        bytes.extend_from_slice(format!("\n{good}\n").as_bytes());
        std::fs::write(&path, bytes).unwrap();
        let err = read_all(&path, v.clone(), no_neg_cfg()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, TrainError::Line { line: 3, .. }), "case {k}: {msg}");
        assert!(msg.contains(&format!("{}:3: field `{field}`", path.display())), "case {k}: {msg}");
    }
}

#[test]
fn out_of_range_index_is_an_error_naming_field() {
    let v = small_vocabs(); // mid indices up to 3
    let tables = TableSizes { uid: 3, mid: 3, cat: 3 }; // m3 → 3 does not fit
    let d = tmp_dir("range");
    let p = d.join("f");
    std::fs::write(
        &p,
        format!(
            "{}\n{}\n{}\n",
            line("1", "u1", "m1", "c1", &["m2"], &["c2"]),
            line("1", "u1", "m1", "c1", &["m1", "m3"], &["c1", "c1"]),
            line("1", "u1", "m3", "c1", &[], &[]),
        ),
    )
    .unwrap();
    let cfg = BatcherConfig { tables: Some(tables), ..no_neg_cfg() };
    let msg = read_all(&p, v.clone(), cfg.clone()).unwrap_err().to_string();
    assert!(msg.contains(":2: field `mid_hist`") && msg.contains("index 3") && msg.contains("3 rows"), "{msg}");
    let l3 = line("1", "u1", "m3", "c1", &[], &[]);
    let f = split_fields(l3.as_bytes()).unwrap();
    let mut hm = vec![7];
    let mut hc = vec![7];
    let fault = dien_trainer::data::line::map_fields(&f, &v, &tables, &mut hm, &mut hc).unwrap_err();
    assert_eq!(fault.field, "mid");
    assert_eq!((hm, hc), (vec![7], vec![7]), "nothing appended on error");
    // Skipping mode drops both bad lines and keeps the first.
    let cfg = BatcherConfig { skip_bad_lines: true, ..cfg };
    let (b, bad) = read_all(&p, v, cfg).unwrap();
    assert_eq!(b[0].batch, 1);
    assert_eq!(bad.count, 2);
}

#[test]
fn skip_bad_lines_counts_and_keeps_first_errors() {
    let d = tmp_dir("skip");
    let p = d.join("f");
    let good = line("1", "u1", "m1", "c1", &["m2"], &["c2"]);
    let mut text = String::new();
    let mut n_bad = 0;
    for i in 0..20 {
        if i % 3 == 1 {
            text += "1\tu1\tm1\n";
            n_bad += 1;
        } else {
            text += &good;
            text += "\n";
        }
        if i == 5 {
            text += "\n"; // a blank line holds no sample and is not an error
        }
    }
    let err = read_all(&p_with(&p, &text), small_vocabs(), no_neg_cfg()).unwrap_err();
    assert!(err.to_string().contains(":2: field `line`"), "{err}");
    let cfg = BatcherConfig { skip_bad_lines: true, ..no_neg_cfg() };
    let (batches, bad) = read_all(&p, small_vocabs(), cfg).unwrap();
    let samples: usize = batches.iter().map(|b| b.batch).sum();
    assert_eq!(samples, 20 - n_bad);
    assert_eq!(bad.count, n_bad as u64);
    assert_eq!(bad.first.len(), BadLines::KEEP);
    assert!(bad.first[0].contains(":2: field `line`"), "{}", bad.first[0]);
    // Line numbers count the blank line: the 4th bad line (i = 10) is file line 12.
    assert!(bad.first[3].contains(":12:"), "{}", bad.first[3]);
    let shown = bad.to_string();
    assert!(shown.starts_with(&format!("{n_bad} malformed line(s) skipped")), "{shown}");
}

fn p_with(p: &Path, text: &str) -> PathBuf {
    std::fs::write(p, text).unwrap();
    p.to_path_buf()
}

fn expected_fixture_map() -> IdMap {
    [("default_mid", 0), ("a", 1), ("b7", 2), ("été", 3), ("x", 5)].iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn pickles_of_every_protocol_and_key_type() {
    for name in ["voc_p0.pkl", "voc_p2.pkl", "voc_p4.pkl", "voc_p2_byteskeys.pkl", "voc_py2_p0.pkl", "voc_py2_p2.pkl"] {
        let v = load_vocab(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.map, expected_fixture_map(), "{name}");
        assert_eq!(v.size, 6, "{name}: size = max index + 1");
        assert_eq!(v.get("x"), 5);
        assert_eq!(v.get("no such id"), 0, "{name}: unknown → 0");
    }
    let e = load_vocab(&fixture("not_a_dict.pkl")).unwrap_err().to_string();
    assert!(e.contains("not_a_dict.pkl") && e.contains("dict"), "{e}");
    let e = load_vocab(&fixture("negative_index.pkl")).unwrap_err().to_string();
    assert!(e.contains("-1"), "{e}");
    let e = load_vocab(&fixture("make_pickles.py")).unwrap_err().to_string();
    assert!(e.contains("pickle"), "{e}");
}

#[test]
fn json_vocab_and_sidecar_round_trip() {
    let d = tmp_dir("json");
    let p = d.join("mid_voc.json");
    std::fs::write(&p, r#"{"default_mid": 0, "a": 1, "b7": 2, "été": 3, "x": 5}"#).unwrap();
    let v = load_vocab(&p).unwrap();
    assert_eq!(v.map, expected_fixture_map());
    assert_eq!(v.size, 6);
    std::fs::write(&p, r#"{"a": 1.5}"#).unwrap();
    assert!(load_vocab(&p).unwrap_err().to_string().contains("mid_voc.json"));
    std::fs::write(&p, r#"{"a": -3}"#).unwrap();
    assert!(load_vocab(&p).unwrap_err().to_string().contains("-3"));

    let vocabs = Vocabs { uid: vocab_of(&["u1", "u2"]), mid: v, cat: vocab_of(&["c\u{1}"]) };
    let (s1, s2) = (d.join("vocabs1.json"), d.join("vocabs2.json"));
    vocabs.save_json(&s1).unwrap();
    vocabs.save_json(&s2).unwrap();
    assert_eq!(std::fs::read(&s1).unwrap(), std::fs::read(&s2).unwrap(), "deterministic bytes");
    let back = Vocabs::from_json_file(&s1).unwrap();
    assert_eq!(back, vocabs);
    assert!(Vocabs::from_json_file(&p).is_err());
}

#[test]
fn built_vocabs_are_frequency_ordered_with_unknown_zero() {
    let d = tmp_dir("build");
    let train = d.join("local_train_splitByUser");
    // Counts: items  B: 4, A: 2, C: 2 (A appears first), D: 1
    //         cats   y: 5, x: 4
    //         users  u2: 2, u1: 1 (u1 first).
    std::fs::write(
        &train,
        format!(
            "{}\n{}\n{}\n",
            line("1", "u1", "A", "x", &["B", "C"], &["y", "x"]),
            line("0", "u2", "B", "y", &["B"], &["y"]),
            line("1", "u2", "D", "x", &["A", "C", "B"], &["x", "y", "y"]),
        ),
    )
    .unwrap();
    let (v, bad) = build_vocabs(&train, false).unwrap();
    assert_eq!(bad.count, 0);
    let order = |voc: &Vocab| {
        let mut kv: Vec<(u32, String)> = voc.map.iter().map(|(k, &i)| (i, k.clone())).collect();
        kv.sort();
        kv.into_iter().map(|(_, k)| k).collect::<Vec<_>>()
    };
    assert_eq!(order(&v.mid), ["default_mid", "B", "A", "C", "D"]);
    assert_eq!(order(&v.cat), ["default_cat", "y", "x"]);
    assert_eq!(order(&v.uid), ["default_uid", "u2", "u1"]);
    assert_eq!((v.uid.size, v.mid.size, v.cat.size), (3, 5, 3));

    // A directory with only mid_voc.json: mid from the file, the others built.
    std::fs::write(d.join("mid_voc.json"), r#"{"default_mid": 0, "D": 1}"#).unwrap();
    let (v2, src, _) = load_or_build_vocabs(&d, &train, false).unwrap();
    assert_eq!(src[0], VocabSource::Built);
    assert_eq!(src[1], VocabSource::File(d.join("mid_voc.json")));
    assert_eq!(src[2], VocabSource::Built);
    assert_eq!(v2.mid.size, 2);
    assert_eq!(v2.uid, v.uid);
    // A pickle wins over JSON.
    std::fs::copy(fixture("voc_p2.pkl"), d.join("mid_voc.pkl")).unwrap();
    let (v3, src, _) = load_or_build_vocabs(&d, &train, false).unwrap();
    assert_eq!(src[1], VocabSource::File(d.join("mid_voc.pkl")));
    assert_eq!(v3.mid.map, expected_fixture_map());
}

#[test]
fn item_info_and_reviews_info() {
    let d = tmp_dir("info");
    let vocabs = small_vocabs(); // m1..m3 → 1..3, c1, c2 → 1, 2
    let info = d.join("item-info");
    // m2 listed twice: first wins; m3's category unknown → 0; m9 unknown item: ignored.
    std::fs::write(&info, "m1\tc2\nm2\tc1\r\nm9\tc2\nm2\tc2\nm3\tc7\textra\n").unwrap();
    let (cats, bad) = ItemCategories::load(&info, &vocabs, false).unwrap();
    assert_eq!(bad.count, 0);
    assert_eq!(cats.cat_of, vec![0, 2, 1, 0]);
    assert_eq!(cats.get(99), 0);
    std::fs::write(&info, "m1\tc2\nm2\n").unwrap();
    let e = ItemCategories::load(&info, &vocabs, false).unwrap_err().to_string();
    assert!(e.contains("item-info:2: field `line`"), "{e}");
    let (cats, bad) = ItemCategories::load(&info, &vocabs, true).unwrap();
    assert_eq!((bad.count, cats.cat_of[1]), (1, 2));

    let reviews = d.join("reviews-info");
    std::fs::write(&reviews, "u1\tm1\t5.0\t100\nu2\tm1\t1.0\t101\nu1\tm3\t2.0\t7\nu9\tzz\t0\t0\nu2\tm1\t0\t0\n")
        .unwrap();
    let (counts, _) = ItemCounts::load_reviews(&reviews, &vocabs.mid, false).unwrap();
    assert_eq!(counts.counts, vec![1, 3, 0, 1], "unknown item zz counts for index 0");
    assert_eq!(counts.total(), 5);
    std::fs::write(&reviews, b"u1\tm1\t5\t1\nu1\tm\xff\t1\t1\n").unwrap();
    let e = ItemCounts::load_reviews(&reviews, &vocabs.mid, false).unwrap_err().to_string();
    assert!(e.contains("reviews-info:2: field `mid`"), "{e}");
}

#[test]
fn dataset_open_reports_sources_and_missing_sampler_files() {
    let d = tmp_dir("dataset");
    std::fs::write(d.join("local_train_splitByUser"), line("1", "u1", "m1", "c1", &["m2"], &["c2"]) + "\n").unwrap();
    let (ds, rep) = DataSet::open(&d, None, false).unwrap();
    assert!(ds.sampler.is_none());
    let why = rep.no_sampler.unwrap();
    assert!(why.contains("item-info") && why.contains("reviews-info"), "{why}");
    assert_eq!(rep.vocab_sources.unwrap(), [VocabSource::Built, VocabSource::Built, VocabSource::Built]);
    // Negatives requested without a sampler: a clear configuration error.
    let e = Batcher::open(&d.join("local_train_splitByUser"), Arc::new(ds), BatcherConfig::default(), 0)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("reviews-info"), "{e}");
    std::fs::write(d.join("item-info"), "m1\tc1\nm2\tc2\n").unwrap();
    std::fs::write(d.join("reviews-info"), "u1\tm1\t0\t0\nu1\tm2\t0\t1\n").unwrap();
    let (ds, rep) = DataSet::open(&d, None, false).unwrap();
    assert!(rep.no_sampler.is_none());
    let s = ds.sampler.unwrap();
    assert_eq!((s.total(), s.distinct_items()), (2, 2));
}

#[test]
fn the_label_column_is_optional_only_when_asked() {
    use dien_trainer::data::line::split_fields_with;
    let unlabelled = b"u1\tm3\tc2\tm1\x02m2\tc1\x02c1";
    assert!(split_fields(unlabelled).is_err());
    let f = split_fields_with(unlabelled, true).unwrap();
    assert_eq!((f.label, f.uid, f.mid, f.cat, f.hist_len()), (0.0, "u1", "m3", "c2", 2));
    let labelled = b"1\tu1\tm3\tc2\tm1\x02m2\tc1\x02c1";
    assert_eq!(split_fields_with(labelled, true).unwrap(), split_fields(labelled).unwrap());
    let e = split_fields_with(b"u1\tm3\tc2\tm1", true).unwrap_err();
    assert_eq!(e.field, "line");
    assert!(e.msg.contains("5 without the label"), "{}", e.msg);
}
