//! Properties of the parsers of untrusted input in this crate: data lines
//! (`LineReader`, `split_fields`, `split_fields_with`, `parse_sample`),
//! vocabulary pickles and JSON dicts (`parse_pickle_bytes`,
//! `parse_json_dict_bytes`) and the event logs of `dien prepare`
//! (`parse_event_log`, every format).
//!
//! For each: arbitrary bytes and valid inputs with one part changed never
//! panic, return within a time bound and hold at most a bounded number of
//! bytes at once (a counting allocator, tests/support/bounded.rs, tracks the peak of each
//! thread); inputs that claim huge sizes are refused before anything of that
//! size is allocated; valid inputs round-trip through the project's writers.
//! The same parsers are fuzzed by the targets in `fuzz/`.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dien_model::vocab::{IdMap, Vocabs};
use dien_trainer::data::line::{
    LineReader, MAX_LINE_BYTES, TableSizes, parse_sample, split_fields, split_fields_with, strip_line_end,
};
use dien_trainer::data::vocab::{load_pickle, parse_json_dict_bytes, parse_pickle_bytes};
use dien_trainer::data::writer::{push_sample_line, write_vocab_json, write_vocab_pickle};
use dien_trainer::prepare::{BehaviorFilter, EventFormat, parse_event_log};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

// The counting allocator and the bounds: tests/support/bounded.rs.

#[path = "../../../tests/support/bounded.rs"]
mod bounded;

use bounded::{bounded, config, parse_bounded};

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dien-parse-props-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Bytes drawn mostly from the ones a parser treats specially.
fn bytes_from(special: &'static [u8], max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(prop_oneof![3 => prop::sample::select(special), 1 => any::<u8>()], 0..max)
}

// --- Data lines. ---

fn vocabs() -> (Vocabs, TableSizes) {
    let map = |ids: &[(&str, u32)]| ids.iter().map(|&(k, v)| (k.to_string(), v)).collect::<HashMap<_, _>>();
    let v = Vocabs::new(
        map(&[("u1", 0), ("u2", 1)]),
        map(&[("default_mid", 0), ("m1", 1), ("m2", 2), ("m9", 9)]),
        map(&[("default_cat", 0), ("c1", 1)]),
    );
    (v, TableSizes { uid: 2, mid: 5, cat: 2 })
}

const ID: &str = "[a-z0-9_.-]{1,8}";

/// A sample: label, uid, mid, cat, history of (mid, cat).
type Sample = (u8, String, String, String, Vec<(String, String)>);

fn sample() -> impl Strategy<Value = Sample> {
    (0u8..2, ID, ID, ID, vec((ID, ID), 0..6))
}

fn line_of(s: &Sample) -> String {
    let mut line = String::new();
    push_sample_line(&mut line, s.0, &s.1, &s.2, &s.3, s.4.iter().map(|h| &h.0), s.4.iter().map(|h| &h.1));
    line
}

/// Every line of `bytes` through the readers of the batcher and of the
/// vocabulary builder.
fn read_all_lines(bytes: &[u8]) -> u64 {
    let (v, t) = vocabs();
    let mut r = LineReader::from_reader("<p>", bytes);
    let mut n = 0;
    while let Ok(Some(line)) = r.next_line() {
        n += 1;
        let _ = split_fields_with(line, true);
        let _ = parse_sample(line, &v, &t);
    }
    n
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn data_lines_of_arbitrary_bytes_never_panic(bytes in bytes_from(b"\t\t\t\x02\n\r01.u1m2c", 400)) {
        let lines = parse_bounded(bytes.len(), || read_all_lines(&bytes));
        // Every line counts, empty ones included; a last line may lack its `\n`.
        let breaks = bytes.iter().filter(|&&c| c == b'\n').count() as u64;
        prop_assert_eq!(lines, breaks + u64::from(bytes.last().is_some_and(|&c| c != b'\n')));
    }

    #[test]
    fn written_lines_parse_back(samples in vec(sample(), 1..5), crlf in any::<bool>(), bom in any::<bool>()) {
        let mut text = String::from(if bom { "\u{feff}" } else { "" });
        for s in &samples {
            let line = line_of(s);
            text.push_str(&if crlf { line.replace('\n', "\r\n") } else { line });
        }
        let (v, t) = vocabs();
        let mut r = LineReader::from_reader("<p>", text.as_bytes());
        for s in &samples {
            let line = r.next_line().unwrap().unwrap();
            let f = split_fields(line).unwrap();
            prop_assert_eq!(f.label, f32::from(s.0));
            prop_assert_eq!((f.uid, f.mid, f.cat), (s.1.as_str(), s.2.as_str(), s.3.as_str()));
            prop_assert_eq!(f.mid_tokens().collect::<Vec<_>>(), s.4.iter().map(|h| h.0.as_str()).collect::<Vec<_>>());
            prop_assert_eq!(f.cat_tokens().collect::<Vec<_>>(), s.4.iter().map(|h| h.1.as_str()).collect::<Vec<_>>());
            // Mapped through the vocabularies: unknown ids are 0, `m9` is out of range.
            match parse_sample(line, &v, &t) {
                Ok(m) => {
                    prop_assert_eq!(m.head.mid, v.mid(&s.2));
                    prop_assert_eq!(m.hist_mid, s.4.iter().map(|h| v.mid(&h.0)).collect::<Vec<_>>());
                }
                Err(e) => prop_assert!(s.2 == "m9" || s.4.iter().any(|h| h.0 == "m9"), "{e:?}"),
            }
        }
        prop_assert!(r.next_line().unwrap().is_none());
    }

    #[test]
    fn a_line_with_one_field_changed_never_panics(
        s in sample(),
        field in 0usize..6,
        junk in bytes_from(b"\t\x02\r 01.-\xff\xc3", 12),
    ) {
        let line = line_of(&s);
        let mut fields: Vec<&[u8]> = strip_line_end(line.as_bytes()).split(|&c| c == b'\t').collect();
        fields[field] = &junk;
        let changed = fields.join(&b'\t');
        let (v, t) = vocabs();
        let parsed = parse_bounded(changed.len(), || {
            let _ = parse_sample(&changed, &v, &t);
            let _ = split_fields_with(&changed, true);
            split_fields(&changed).map(|f| (f.uid.to_owned(), f.mid.to_owned(), f.cat.to_owned()))
        });
        // An id without a tab that is valid UTF-8 is taken as it is.
        if (1..4).contains(&field) && !junk.contains(&b'\t') && std::str::from_utf8(&junk).is_ok() {
            let (uid, mid, cat) = parsed.unwrap();
            let ids = [uid, mid, cat];
            prop_assert_eq!(ids[field - 1].as_bytes(), &junk[..]);
        }
    }
}

#[test]
fn a_line_longer_than_the_limit_is_refused_without_holding_it_twice() {
    let endless = std::io::repeat(b'x').take(MAX_LINE_BYTES as u64 + 100);
    let mut r = LineReader::from_reader("<endless>", endless);
    // The line buffer grows to the limit once (doubling: at most twice it).
    let err = bounded(Duration::from_secs(5), 2 * MAX_LINE_BYTES + (1 << 20), || r.next_line().map(|l| l.is_some()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("<endless>:1") && err.contains("longer than"), "{err}");
}

// --- Vocabulary pickles and JSON dicts. ---

fn vocab_entries() -> impl Strategy<Value = BTreeMap<String, u32>> {
    btree_map("\\PC{0,10}", any::<u32>(), 0..8)
}

/// The opcodes of the pickle machine, and the bytes of their arguments.
const PICKLE_BYTES: &[u8] =
    b"\x80\x02\x03\x04\x95}()du.sqphgjrIJKLMNSTUVXBC\x8a\x8b\x8c\x8d\x8e\x94\x88\x89\x85\x86\x87tcR]ael\x00\x01\xff\n'";

proptest! {
    #![proptest_config(config())]

    #[test]
    fn pickles_of_arbitrary_bytes_never_panic(bytes in bytes_from(PICKLE_BYTES, 300)) {
        parse_bounded(bytes.len(), || {
            let _ = parse_pickle_bytes(&bytes, Path::new("<p>"));
            let mut framed = b"\x80\x02}(".to_vec();
            framed.extend_from_slice(&bytes);
            let _ = parse_pickle_bytes(&framed, Path::new("<p>"));
        });
    }

    #[test]
    fn written_pickles_read_back(entries in vocab_entries(), proto2 in any::<bool>()) {
        // The project's writer (protocol 3), through a file.
        let dir = tmp_dir("pickle");
        let path = dir.join(format!("{}.pkl", entries.len()));
        let ranked: Vec<(String, u32)> = entries.iter().map(|(k, &v)| (k.clone(), v)).collect();
        write_vocab_pickle(&path, &ranked).unwrap();
        let v = load_pickle(&path).unwrap();
        let want: IdMap = entries.clone().into_iter().collect();
        prop_assert_eq!(&v.map, &want);
        prop_assert_eq!(v.size, entries.values().map(|&i| i as usize + 1).max().unwrap_or(1));
        // serde-pickle's protocols 2 and 3 (Python's own pickles of every
        // protocol and key type are the fixtures of tests/data_parse.rs).
        let opts = if proto2 { serde_pickle::SerOptions::new().proto_v2() } else { serde_pickle::SerOptions::new() };
        let bytes = serde_pickle::to_vec(&entries, opts).unwrap();
        prop_assert_eq!(&parse_pickle_bytes(&bytes, Path::new("<p>")).unwrap().map, &want);
    }

    #[test]
    fn a_pickle_with_one_byte_changed_never_panics(
        entries in vocab_entries(),
        at in any::<prop::sample::Index>(),
        byte in prop_oneof![prop::sample::select(PICKLE_BYTES), any::<u8>()],
    ) {
        let mut bytes = serde_pickle::to_vec(&entries, serde_pickle::SerOptions::new()).unwrap();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        parse_bounded(bytes.len(), || {
            let _ = parse_pickle_bytes(&bytes, Path::new("<p>"));
        });
    }

    #[test]
    fn json_dicts_of_arbitrary_text_never_panic(text in "\\PC{0,200}", bytes in bytes_from(b"{}[]\":,-01e.", 200)) {
        for b in [text.as_bytes(), &bytes[..]] {
            parse_bounded(b.len(), || {
                let _ = parse_json_dict_bytes(b, Path::new("<p>"));
            });
        }
    }

    #[test]
    fn written_json_dicts_read_back(entries in vocab_entries(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let dir = tmp_dir("json");
        let path = dir.join(format!("{}.json", entries.len()));
        let ranked: Vec<(String, u32)> = entries.iter().map(|(k, &v)| (k.clone(), v)).collect();
        write_vocab_json(&path, &ranked).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let v = parse_json_dict_bytes(&bytes, Path::new("<p>")).unwrap();
        prop_assert_eq!(v.map, entries.into_iter().collect::<IdMap>());
        let i = at.index(bytes.len());
        bytes[i] = byte;
        parse_bounded(bytes.len(), || {
            let _ = parse_json_dict_bytes(&bytes, Path::new("<p>"));
        });
    }
}

/// A protocol-2 pickle of `{key: 0}` followed by `body` and STOP.
fn pickle_with(body: &[u8]) -> Vec<u8> {
    let mut b = b"\x80\x02}(".to_vec();
    b.extend_from_slice(body);
    b.extend_from_slice(b"u.");
    b
}

#[test]
fn pickle_bombs_are_refused_quickly_and_small() {
    let refused = |name: &str, bytes: &[u8], needle: &str| {
        let err = parse_bounded(bytes.len(), || parse_pickle_bytes(bytes, Path::new("<p>")))
            .map(|v| format!("loaded {} entries", v.len()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{name}: {err}");
    };
    // Strings claiming 2^63, 2^32 - 1 and 2^31 - 1 bytes over a few.
    refused("BINUNICODE8", b"\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x80abc.", "announced");
    refused("BINBYTES", b"\x80\x03B\xff\xff\xff\xffabc.", "announced");
    refused("BINSTRING", b"\x80\x02T\xff\xff\xff\x7fabc.", "announced");
    refused("LONG4", b"\x80\x02\x8b\xff\xff\xff\x7f\x01.", "announced");
    // 100 000 nested lists (a stack overflow for a recursive reader), and
    // nested dicts.
    let mut deep = b"\x80\x02".to_vec();
    deep.extend(std::iter::repeat_n(b']', 100_000));
    deep.extend(std::iter::repeat_n(b'a', 99_999));
    deep.push(b'.');
    refused("nested lists", &deep, "dict");
    let mut dicts = b"\x80\x02".to_vec();
    for _ in 0..50_000 {
        dicts.extend_from_slice(b"}X\x01\x00\x00\x00k");
    }
    dicts.extend(std::iter::repeat_n(b's', 49_999));
    dicts.push(b'.');
    refused("nested dicts", &dicts, "dict");
    // One 1 MB key memoized, then 100 000 references to it as keys: 100 GB of
    // key copies if each were taken.
    let mut memo = b"X\x00\x00\x10\x00".to_vec();
    memo.extend(std::iter::repeat_n(b'k', 1 << 20));
    memo.extend_from_slice(b"q\x00K\x00");
    for i in 0..100_000u32 {
        memo.extend_from_slice(b"h\x00");
        memo.push(b'J');
        memo.extend_from_slice(&i.to_le_bytes());
    }
    refused("memo references", &pickle_with(&memo), "memo references");
    // Tuples of tuples ("billion laughs" through the memo).
    let mut laughs = b"\x80\x02X\x01\x00\x00\x00aq\x00".to_vec();
    for i in 0..30u8 {
        laughs.extend_from_slice(&[b'h', i, b'h', i, 0x86, b'q', i + 1]);
    }
    laughs.push(b'.');
    refused("nested tuples", &laughs, "tuple of scalars");
    // Classes and calls other than bytes are refused.
    refused("os.system", b"cos\nsystem\n(S'true'\ntR.", "unsupported global");
}

// --- The event logs of `dien prepare`. ---

fn format_of(i: usize) -> EventFormat {
    EventFormat::ALL[i % EventFormat::ALL.len()]
}

/// Reads `events` (and `items` for the formats that need them), returning
/// the number of events read.
fn read_log(format: EventFormat, events: &[u8], items: &[u8], skip: bool) -> Option<usize> {
    let items = format.needs_items().then_some(items);
    parse_event_log(format, events, items, &BehaviorFilter::All, skip).ok().map(|l| l.events.len())
}

const EVENT_BYTES: &[u8] = b",,,\t\t\n\n\r\"\"'{}[]:0123.-e\x02userditemcatgorytmsUI";

proptest! {
    #![proptest_config(config())]

    #[test]
    fn event_logs_of_arbitrary_bytes_never_panic(
        f in 0usize..5,
        skip in any::<bool>(),
        events in bytes_from(EVENT_BYTES, 300),
        items in bytes_from(EVENT_BYTES, 200),
    ) {
        let format = format_of(f);
        let mut with_header = match format {
            EventFormat::Movielens => b"userId,movieId,rating,timestamp\n".to_vec(),
            EventFormat::Tsv => b"user\titem\tcategory\ttimestamp\n".to_vec(),
            _ => b"user,item,category,timestamp\n".to_vec(),
        };
        with_header.extend_from_slice(&events);
        for log in [&events, &with_header] {
            parse_bounded(log.len() + items.len(), || read_log(format, log, &items, skip));
        }
    }

    #[test]
    fn written_csv_events_parse_back(events in vec((ID, ID, 0u32..100, any::<bool>()), 1..12)) {
        // The category is a function of the item, so none conflicts.
        let cat = |item: &str| format!("c{}", item.len());
        let mut text = String::from("user,item,category,timestamp,behavior\n");
        for (user, item, time, quoted) in &events {
            let item_field = if *quoted { format!("\"{item}\"") } else { item.clone() };
            text.push_str(&format!("{user},{item_field},{},{time},pv\n", cat(item)));
        }
        let log = parse_bounded(text.len(), || {
            parse_event_log(EventFormat::Csv, text.as_bytes(), None, &BehaviorFilter::All, false)
        }).unwrap();
        prop_assert_eq!(log.events.len(), events.len());
        prop_assert_eq!(log.category_conflicts, 0);
        for (e, (user, item, time, _)) in log.events.iter().zip(&events) {
            prop_assert_eq!((&e.user, &e.item, &e.category), (user, item, &cat(item)));
            prop_assert_eq!((e.time_text.clone(), e.time), (time.to_string(), f64::from(*time)));
        }
    }

    #[test]
    fn an_event_line_with_one_field_changed_never_panics(
        f in 0usize..5,
        field in 0usize..5,
        junk in bytes_from(b",\t\"'{}[]:\\x0.-e\x02\r", 16),
    ) {
        let format = format_of(f);
        let (header, line, items): (&str, &str, &str) = match format {
            EventFormat::Csv => ("user,item,category,behavior,timestamp\n", "u1,i1,c1,pv,17", ""),
            EventFormat::Tsv => ("user\titem\tcategory\tbehavior\ttimestamp\n", "u1\ti1\tc1\tpv\t17", ""),
            EventFormat::Taobao => ("", "1,2,3,pv,1511544070", ""),
            EventFormat::AmazonJson => (
                "",
                "{'reviewerID': 'A1', 'asin': 'B1', 'overall': 5.0, 'unixReviewTime': 7}",
                "{'asin': 'B1', 'categories': [['Books', 'Fiction']]}\n",
            ),
            EventFormat::Movielens => ("userId,movieId,rating,timestamp\n", "1,10,4.0,964982703", "movieId,title,genres\n10,x,Drama\n"),
        };
        let sep = if format == EventFormat::Tsv { b'\t' } else { b',' };
        let parts: Vec<&[u8]> = line.as_bytes().split(|&c| c == sep).collect();
        let mut changed = header.as_bytes().to_vec();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                changed.push(sep);
            }
            changed.extend_from_slice(if i == field % parts.len() { &junk } else { p });
        }
        changed.push(b'\n');
        // The same junk in the item file's line, too.
        let mut items = items.as_bytes().to_vec();
        items.extend_from_slice(&junk);
        parse_bounded(changed.len() + items.len(), || {
            for skip in [false, true] {
                let _ = read_log(format, &changed, &items, skip);
            }
        });
        // The unchanged line reads.
        let mut valid = header.as_bytes().to_vec();
        valid.extend_from_slice(line.as_bytes());
        let items_ok = match format {
            EventFormat::AmazonJson => "{'asin': 'B1', 'categories': [['Books', 'Fiction']]}\n",
            EventFormat::Movielens => "movieId,title,genres\n10,x,Drama\n",
            _ => "",
        };
        prop_assert_eq!(read_log(format, &valid, items_ok.as_bytes(), false), Some(1));
    }
}

#[test]
fn deeply_nested_event_objects_are_refused_quickly() {
    // Amazon lines are JSON, or else Python literals: both readers refuse
    // nesting deeper than their limit instead of recursing.
    for open in ["[", "{'a': "] {
        let line = format!("{}\n", open.repeat(100_000));
        let got = parse_bounded(line.len(), || {
            parse_event_log(EventFormat::AmazonJson, line.as_bytes(), Some(b""), &BehaviorFilter::All, false)
        });
        let err = got.unwrap_err().to_string();
        assert!(err.contains("<events>:1"), "{err}");
    }
}

#[test]
fn a_vocabulary_index_beyond_any_table_is_refused_before_allocating() {
    // A 20-byte `mid_voc.json` whose one index is 2^32 - 1 would size the
    // item tables of item-info and reviews-info (13 bytes a row: 56 GB).
    let dir = tmp_dir("huge-index");
    for (name, text) in [
        ("uid_voc.json", r#"{"u1": 0}"#),
        ("mid_voc.json", r#"{"m1": 4294967295}"#),
        ("cat_voc.json", r#"{"c1": 1}"#),
        ("item-info", "m1\tc1\n"),
        ("reviews-info", "u1\tm1\t5.0\t1\n"),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let err = bounded(Duration::from_secs(1), 1 << 20, || dien_trainer::data::DataSet::open(&dir, None, false))
        .map(|_| "opened")
        .unwrap_err()
        .to_string();
    assert!(err.contains("mid") && err.contains("4294967295") && err.contains("rows"), "{err}");
}
