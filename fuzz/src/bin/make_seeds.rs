//! Writes the seed corpora, `corpus/<target>/seed-*`, from small valid
//! inputs made with the project's own writers (checkpoints by
//! `checkpoint::to_bytes`, pickles by `write_vocab_pickle`, sidecars by
//! `Vocabs::to_json_bytes`, batches by `Batch::to_json_string`, data lines by
//! `push_sample_line`) plus a few hand-written inputs of other writers
//! (Python 2 pickles, CRLF and BOM files). Run from `fuzz/`:
//! `cargo run --bin make_seeds`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use dien_model::checkpoint::{tensors_to_bytes, to_bytes};
use dien_model::vocab::Vocabs;
use dien_model::{AuxForm, Batch, ModelConfig, ModelKind, ParamStore, Variant};
use dien_trainer::data::writer::{push_sample_line, write_vocab_json, write_vocab_pickle};

fn put(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn map(ids: &[(&str, u32)]) -> HashMap<String, u32> {
    ids.iter().map(|&(k, v)| (k.to_string(), v)).collect()
}

fn data_lines() {
    let mut text = String::new();
    push_sample_line(&mut text, 1, "u1", "m1", "c1", ["m2", "m1"], ["c1", "c1"]);
    push_sample_line(&mut text, 0, "u2", "m9", "c2", Vec::<&str>::new(), Vec::<&str>::new());
    push_sample_line(&mut text, 1, "unknown", "m2", "c2", ["x", "m1", "m2"], ["c2", "y", "c1"]);
    put("data_line", "lines", text.as_bytes());
    put("data_line", "crlf-bom", format!("\u{feff}{}", text.replace('\n', "\r\n")).as_bytes());
    put("data_line", "unlabelled", b"u1\tm1\tc1\tm2\x02m1\tc1\x02c2\nu2\tm2\tc1\t\t\n");
    put("data_line", "faults", b"2\tu1\tm1\tc1\t\t\n1\tu1\tm1\tc1\tm1\t\n1\tu1\n\n1.0\tu1\tm1\tc1\tm1\tc1");
}

fn pickles(tmp: &Path) {
    let voc: Vec<(String, u32)> =
        ["default_mid", "m1", "m2", "é", ""].iter().enumerate().map(|(i, k)| (k.to_string(), i as u32)).collect();
    let path = tmp.join("voc.pkl");
    write_vocab_pickle(&path, &voc).unwrap();
    put("vocab_pickle", "writer", &fs::read(&path).unwrap());
    write_vocab_pickle(&path, &[]).unwrap();
    put("vocab_pickle", "writer-empty", &fs::read(&path).unwrap());
    // Python 2 `cPickle.dump(d, f)` (protocol 0) and protocol 2, str keys.
    put("vocab_pickle", "py2-proto0", b"(dp0\nS'a1'\np1\nI0\nsS'b\\xc3\\xa9'\np2\nI1\nsVc\\u00e9\np3\nL7L\ns.");
    put(
        "vocab_pickle",
        "py2-proto2",
        b"\x80\x02}q\x00(U\x02a1q\x01K\x00U\x01bq\x02M\x00\x01U\x01cq\x03J\xff\xff\xff\x7fu.",
    );
    // Protocol 4 (Python 3 default), with a frame and bytes keys.
    let body = b"}\x94(\x8c\x02a1\x94K\x00C\x01b\x94K\x01\x8c\x01c\x94K\x02u.";
    let mut p4 = b"\x80\x04\x95".to_vec();
    p4.extend_from_slice(&(body.len() as u64).to_le_bytes());
    p4.extend_from_slice(body);
    put("vocab_pickle", "py3-proto4", &p4);
}

fn vocab_json(tmp: &Path) {
    let v = Vocabs::new(
        map(&[("u1", 0), ("u2", 1)]),
        map(&[("default_mid", 0), ("m1", 1), ("m\"2", 2)]),
        map(&[("default_cat", 0), ("c\u{e9}", 1)]),
    );
    put("vocab_json", "sidecar", &v.to_json_bytes());
    put("vocab_json", "sidecar-empty", &Vocabs::default().to_json_bytes());
    let path = tmp.join("voc.json");
    write_vocab_json(&path, &[("default_mid".into(), 0), ("m1".into(), 1), ("m\\u".into(), 2)]).unwrap();
    put("vocab_json", "dict", &fs::read(&path).unwrap());
    put("vocab_json", "extra-keys", br#"{"uid":{"a":0},"mid":{},"cat":{"x":3},"note":[1,2,{"k":null}]}"#);
}

fn checkpoints() {
    // The smallest model checkpoint is about 80 KB (the head's layers have
    // fixed widths), so one model seed is kept: `dien` with every part but
    // the auxiliary MLP, its checksum entry renamed (`checksuX`, an extra
    // key) so that mutations of the data reach the tensor checks instead of
    // stopping at the checksum. Run this target with -max_len=131072.
    let mut cfg = ModelConfig::new(ModelKind::Dien, 3, 4, 2);
    (cfg.variant, cfg.aux, cfg.d, cfg.hidden, cfg.max_len) = (Variant::Agru, AuxForm::Dot, 1, 2, 5);
    let mut bytes = to_bytes(&cfg, &ParamStore::init(&cfg, 7)).unwrap();
    let at = bytes.windows(10).position(|w| w == b"\"checksum\"").unwrap();
    bytes[at + 8] = b'X';
    put("checkpoint", "dien-unchecked", &bytes);
    let meta: BTreeMap<String, String> =
        [("step".to_string(), "3".to_string()), ("set.vocab".into(), "m.vocab.json fnv1a64:0123456789abcdef".into())]
            .into();
    let bytes = tensors_to_bytes(&[("m.a", &[2, 2], &[1.0, -0.0, 2.5, 1e-30]), ("v", &[0], &[])], &meta).unwrap();
    put("checkpoint", "tensors", &bytes);
    let bytes = tensors_to_bytes(&[("x", &[], &[f32::MIN_POSITIVE])], &BTreeMap::new()).unwrap();
    put("checkpoint", "scalar", &bytes);
}

fn batches() {
    let h = vec![vec![1, 2, 3], vec![], vec![4]];
    let c = vec![vec![1, 1, 2], vec![], vec![3]];
    let b = Batch::from_samples(vec![0, 1, 2], vec![1, 2, 3], vec![1, 1, 0], &h, &c, None, None, vec![1.0, 0.0, 1.0])
        .unwrap();
    put("batch_json", "plain", b.to_json_string().unwrap().as_bytes());
    let b = Batch::from_samples(vec![3], vec![15], vec![3], &h[..1], &c[..1], Some(&h[..1]), Some(&c[..1]), vec![0.0])
        .unwrap();
    put("batch_json", "negatives", b.to_json_string().unwrap().as_bytes());
    put(
        "batch_json",
        "extra-keys",
        br#"{"uid":[1],"mid":[2],"cat":[0],"hist_mid":[[5]],"hist_cat":[[1]],"label":[1.0],"neg_mid":null,"x":{}}"#,
    );
}

fn events() {
    // The first byte picks the format (ALL order: csv, tsv, taobao,
    // amazon-json, movielens) and options; see fuzz_targets/prepare_events.rs.
    let put_ev = |name: &str, head: u8, events: &str, items: Option<&str>| {
        let mut b = vec![head];
        b.extend_from_slice(events.as_bytes());
        if let Some(items) = items {
            b.push(0);
            b.extend_from_slice(items.as_bytes());
        }
        put("prepare_events", name, &b);
    };
    put_ev(
        "csv",
        0x10,
        "user,item,category,behavior,timestamp\nu1,i1,c1,pv,1\r\nu1,\"i,2\",c2,buy,2.5\n\nu2,i1,c1,pv,3\n",
        None,
    );
    put_ev("tsv", 0x01, "\u{feff}Timestamp\tUser\tItem\tCategory\trating\n5\tu1\ti1\tc1\t4.0\n6\tu1\ti2\tc1\t\n", None);
    put_ev("taobao", 0x02, "1,2,3,pv,1511544070\n1,3,3,buy,1511544071\n2,2,3,pv,1511544072\n", None);
    put_ev(
        "amazon",
        0x03,
        "{\"reviewerID\": \"A1\", \"asin\": \"B1\", \"overall\": 5.0, \"unixReviewTime\": 1400457600}\n\
         {'reviewerID': 'A1', 'asin': u'B2', 'unixReviewTime': 7}\n",
        Some(
            "{'asin': 'B1', 'categories': [['Books', 'Fiction']], 'price': 3.17, 'x': (1, -2e3, True, None)}\n\
             {\"asin\": \"B2\", \"category\": [\"Toys\"]}\n",
        ),
    );
    put_ev(
        "movielens",
        0x0c,
        "userId,movieId,rating,timestamp\n1,10,4.0,964982703\n1,20,3.5,964982224\nx\n",
        Some(
            "movieId,title,genres\n10,\"Toy Story, The (1995)\",Adventure|Animation\n20,Heat (1995),(no genres listed)\n",
        ),
    );
}

fn main() {
    let tmp: PathBuf = std::env::temp_dir().join(format!("dien-fuzz-seeds-{}", std::process::id()));
    fs::create_dir_all(&tmp).unwrap();
    data_lines();
    pickles(&tmp);
    vocab_json(&tmp);
    checkpoints();
    batches();
    events();
    fs::remove_dir_all(&tmp).unwrap();
}
