//! The readers of `dien prepare`: event logs in every format (CSV, TSV,
//! Taobao, Amazon JSON or Python literals, MovieLens) and the item files
//! (Amazon metadata, `movies.csv`). The first byte picks the format and the
//! options; the rest is the event log, then, after the first NUL byte, the
//! item file. Never a panic; every event read is one the data layout can
//! hold.
#![no_main]

use dien_trainer::prepare::{BehaviorFilter, EventFormat, parse_event_log};
use libfuzzer_sys::fuzz_target;

fn holdable(s: &str) -> bool {
    !s.chars().any(|c| matches!(c, '\t' | '\n' | '\r' | '\u{2}'))
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else { return };
    let format = EventFormat::ALL[usize::from(head & 7) % EventFormat::ALL.len()];
    let skip = head & 8 != 0;
    let behaviors = match head >> 4 & 3 {
        0 => BehaviorFilter::FormatDefault,
        1 => BehaviorFilter::All,
        2 => BehaviorFilter::Only(vec!["pv".into(), "buy".into()]),
        _ => BehaviorFilter::Only(vec!["".into()]),
    };
    let (events, items) = match rest.iter().position(|&b| b == 0) {
        Some(p) => (&rest[..p], Some(&rest[p + 1..])),
        None => (rest, None),
    };
    let items = if format.needs_items() { Some(items.unwrap_or_default()) } else { None };
    let Ok(log) = parse_event_log(format, events, items, &behaviors, skip) else { return };
    assert!(!log.events.is_empty());
    for e in &log.events {
        assert!(!e.user.is_empty() && !e.item.is_empty());
        assert!(holdable(&e.user) && holdable(&e.item) && holdable(&e.category) && holdable(&e.rating));
        assert!(holdable(&e.time_text) && e.time.is_finite());
        assert_eq!(e.time_text.trim().parse::<f64>().ok(), Some(e.time));
    }
});
