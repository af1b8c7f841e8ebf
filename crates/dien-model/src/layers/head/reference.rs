//! The prediction head in `f64`.
