//! Passes the target and host triples to the crate's tests, which compile
//! the C example with the `cc` crate (it needs both, and tests do not see
//! the variables cargo gives build scripts).

fn main() {
    for var in ["TARGET", "HOST"] {
        let v = std::env::var(var).unwrap_or_default();
        println!("cargo:rustc-env=DIEN_CAPI_{var}={v}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
