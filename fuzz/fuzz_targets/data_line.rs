//! Data lines (`label \t uid \t mid \t cat \t mid_hist \t cat_hist`) read by
//! `LineReader`, split with and without the label column, mapped through
//! fixed vocabularies: never a panic; a mapped line appends its whole
//! history, a refused one nothing; a split line written back by the
//! project's writer splits to the same fields.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use dien_model::vocab::Vocabs;
use dien_trainer::data::line::{
    LineReader, TableSizes, map_fields, parse_sample, split_fields, split_fields_with, strip_line_end,
};
use dien_trainer::data::writer::push_sample_line;
use libfuzzer_sys::fuzz_target;

fn vocabs() -> &'static (Vocabs, TableSizes) {
    static V: OnceLock<(Vocabs, TableSizes)> = OnceLock::new();
    V.get_or_init(|| {
        let map = |ids: &[(&str, u32)]| ids.iter().map(|&(k, v)| (k.to_string(), v)).collect::<HashMap<_, _>>();
        let v = Vocabs::new(
            map(&[("u1", 0), ("u2", 1)]),
            map(&[("default_mid", 0), ("m1", 1), ("m2", 2), ("m9", 9)]),
            map(&[("default_cat", 0), ("c1", 1), ("c2", 2)]),
        );
        // The item table is smaller than the vocabulary: `m9` is out of range.
        let tables = TableSizes { uid: 2, mid: 5, cat: 3 };
        (v, tables)
    })
}

fuzz_target!(|data: &[u8]| {
    let (vocabs, tables) = vocabs();
    let mut reader = LineReader::from_reader("<fuzz>", data);
    let (mut hist_mid, mut hist_cat) = (Vec::new(), Vec::new());
    while let Ok(Some(line)) = reader.next_line() {
        assert!(!line.contains(&b'\n'));
        for label_optional in [false, true] {
            let Ok(f) = split_fields_with(line, label_optional) else { continue };
            assert!(f.label == 0.0 || f.label == 1.0);
            assert_eq!(f.mid_tokens().count(), f.hist_len());
            assert_eq!(f.cat_tokens().count(), f.hist_len());
            let (m0, c0) = (hist_mid.len(), hist_cat.len());
            match map_fields(&f, vocabs, tables, &mut hist_mid, &mut hist_cat) {
                Ok(head) => {
                    assert_eq!(hist_mid.len() - m0, f.hist_len());
                    assert_eq!(hist_cat.len() - c0, f.hist_len());
                    assert!((head.uid as usize) < tables.uid && (head.mid as usize) < tables.mid);
                    assert!(hist_mid.iter().all(|&m| (m as usize) < tables.mid));
                }
                Err(_) => assert_eq!((hist_mid.len(), hist_cat.len()), (m0, c0)),
            }
            // Written back (a trailing carriage return would be read as part
            // of the line ending), the line splits to the same fields.
            if !f.cat_hist.ends_with('\r') {
                let mut text = String::new();
                push_sample_line(&mut text, f.label as u8, f.uid, f.mid, f.cat, f.mid_tokens(), f.cat_tokens());
                let back = split_fields(strip_line_end(text.as_bytes())).expect("a written line splits");
                assert_eq!(back, f);
            }
        }
        let _ = parse_sample(line, vocabs, tables);
        if hist_mid.len() > 1 << 16 {
            hist_mid.clear();
            hist_cat.clear();
        }
    }
});
