//! `include/dien.h` is generated from `src/lib.rs` by cbindgen and checked
//! in; this test fails when it is out of date. Regenerate it with
//! `DIEN_BLESS_HEADER=1 cargo test -p dien-capi --test header`.

use std::path::PathBuf;

#[test]
fn the_checked_in_header_is_up_to_date() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses src/lib.rs");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir.join("include/dien.h");
    if std::env::var_os("DIEN_BLESS_HEADER").is_some() {
        std::fs::write(&path, &generated).expect("write include/dien.h");
    }
    let checked_in = std::fs::read(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "include/dien.h is out of date: run `DIEN_BLESS_HEADER=1 cargo test -p dien-capi --test header`"
    );
    let text = String::from_utf8(generated).unwrap();
    for f in ["dien_predictor_open", "dien_score", "dien_score_ids", "dien_last_error", "DIEN_ERR_INTERNAL"] {
        assert!(text.contains(f), "the header declares {f}");
    }
}
