//! Vocabulary pickles (`*_voc.pkl`): never a panic; a vocabulary read
//! round-trips through a pickle of its dict.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use dien_trainer::data::vocab::parse_pickle_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = parse_pickle_bytes(data, Path::new("<fuzz>")) else { return };
    assert!(v.size >= 1 && v.map.values().all(|&i| (i as usize) < v.size));
    let dict: BTreeMap<&str, u32> = v.map.iter().map(|(k, &i)| (k.as_str(), i)).collect();
    let bytes = serde_pickle::to_vec(&dict, serde_pickle::SerOptions::new()).expect("a dict of str → int pickles");
    let back = parse_pickle_bytes(&bytes, Path::new("<written>")).expect("a written pickle reads back");
    assert!(back == v, "pickle round trip differs");
});
