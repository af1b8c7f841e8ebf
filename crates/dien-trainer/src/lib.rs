//! Trainer crate: data, negative sampling, optimisers, metrics.
