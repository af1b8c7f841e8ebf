//! Vocabulary JSON: the checkpoint sidecar (`Vocabs::from_json_bytes`) and
//! the per-table dicts of a data directory (`*_voc.json`): never a panic;
//! what parses round-trips (written, then read back equal).
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use dien_model::vocab::Vocabs;
use dien_trainer::data::vocab::parse_json_dict_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = Vocabs::from_json_bytes(data, Path::new("<fuzz>")) {
        let text = v.to_json_string();
        let back = Vocabs::from_json_str(&text).expect("a written sidecar reads back");
        assert_eq!(back, v);
        let again = Vocabs::from_json_bytes(&back.to_json_bytes(), Path::new("<written>")).expect("reads back");
        assert_eq!(again.to_json_string(), text, "the sidecar bytes are not deterministic");
    }
    if let Ok(v) = parse_json_dict_bytes(data, Path::new("<fuzz>")) {
        assert!(v.size >= 1 && v.map.values().all(|&i| (i as usize) < v.size));
        let dict: BTreeMap<&str, u32> = v.map.iter().map(|(k, &i)| (k.as_str(), i)).collect();
        let bytes = serde_json::to_vec(&dict).expect("a dict of str → int is JSON");
        let back = parse_json_dict_bytes(&bytes, Path::new("<written>")).expect("a written dict reads back");
        assert!(back == v, "JSON dict round trip differs");
    }
});
