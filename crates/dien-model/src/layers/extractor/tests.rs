//! Fast-vs-reference tests of this layer.
