//! JSON batch files (`Batch::from_json_str`, then `validate` and
//! `keep_recent`): never a panic; a batch that parses round-trips through
//! `Batch::to_json_string`.
#![no_main]

use dien_model::Batch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(b) = Batch::from_json_str(text) else { return };
    assert_eq!(b.steps, b.lengths.iter().copied().max().unwrap_or(0));
    let _ = b.validate(4, 16, 4);
    let json = b.to_json_string().expect("a parsed batch writes");
    let back = Batch::from_json_str(&json).expect("a written batch reads back");
    assert_eq!(back, b);
    let mut cut = b.clone();
    cut.keep_recent(3);
    // The most recent (last) three behaviours of every history are kept.
    assert!(cut.steps == b.steps.min(3));
    for s in 0..b.batch {
        let (l, k) = (b.lengths[s], b.lengths[s].min(3));
        assert_eq!(cut.lengths[s], k);
        let kept = &cut.hist_mid[s * cut.steps..s * cut.steps + k];
        assert_eq!(kept, &b.hist_mid[s * b.steps + l - k..s * b.steps + l]);
    }
    let _ = cut.validate(4, 16, 4);
});
