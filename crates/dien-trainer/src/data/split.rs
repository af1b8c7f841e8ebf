//! The validation split: a fraction of the training file's *users* held out
//! of training, so that a model can be chosen (and training stopped) without
//! looking at the test file.
//!
//! A user is held out when a seeded hash of its raw uid string falls below
//! the fraction ([`UserSplit::is_held_out`]). The decision depends on the
//! seed and the uid alone, never on where the line sits or what was read
//! before, so it is the same line by line while the file streams past, in
//! every rank of a data-parallel run, and after a resume; all the lines of
//! a user fall on the same side. The hash is written out here (not taken
//! from the standard library, whose hasher may change between Rust
//! releases) so that a checkpoint resumed by another build keeps its split.

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;

use crate::data::batcher::splitmix64;
use crate::data::line::{LineReader, split_fields};
use crate::error::TrainError;

/// The fraction of training users held out for validation when none is
/// given.
pub const DEFAULT_VALID_FRAC: f64 = 0.1;

/// Mixed into the seed so that the split draws from a stream of its own,
/// unrelated to the initialisation or the negatives of the same seed.
const SPLIT_SALT: u64 = 0x5eed_0f7a_11da_7e00;

/// Which users of the training file are held out: a fraction in `[0, 1)`
/// and the seed of the hash choosing them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UserSplit {
    frac: f64,
    seed: u64,
}

impl UserSplit {
    /// A split holding out about `frac` of the users; refused unless
    /// `0 ≤ frac < 1` (0 holds out no one).
    pub fn new(frac: f64, seed: u64) -> Result<Self, TrainError> {
        if !(0.0..1.0).contains(&frac) {
            return Err(TrainError::Config(format!(
                "--valid-frac {frac}: the fraction of training users held out for validation must be at least 0 and \
                 below 1 (0 holds out no user)"
            )));
        }
        Ok(Self { frac, seed })
    }

    /// The fraction of users held out.
    pub fn frac(&self) -> f64 {
        self.frac
    }

    /// The seed of the hash.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether the split holds anyone out (`frac > 0`).
    pub fn is_active(&self) -> bool {
        self.frac > 0.0
    }

    /// Whether the user with raw uid `uid` is held out for validation.
    pub fn is_held_out(&self, uid: &str) -> bool {
        // The top 53 bits of the hash as a uniform number in [0, 1).
        let u = (user_hash(self.seed, uid.as_bytes()) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        u < self.frac
    }

    /// The side of the split user `uid` belongs to.
    pub fn side(&self, uid: &str) -> Side {
        if self.is_held_out(uid) { Side::Valid } else { Side::Train }
    }
}

/// The seeded 64-bit hash of a uid: SplitMix64 steps over its bytes in
/// little-endian words, then its length.
pub fn user_hash(seed: u64, uid: &[u8]) -> u64 {
    let mut h = splitmix64(seed ^ SPLIT_SALT);
    for chunk in uid.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = splitmix64(h ^ u64::from_le_bytes(w));
    }
    splitmix64(h ^ uid.len() as u64)
}

/// One side of a [`UserSplit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The users trained on.
    Train,
    /// The users held out for validation.
    Valid,
}

/// The lines of one side of a split: what a batcher keeps when reading the
/// training file for training (and recalibration) or for validation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UserFilter {
    /// The split.
    pub split: UserSplit,
    /// The side kept.
    pub side: Side,
}

impl UserFilter {
    /// Whether a line of user `uid` is kept.
    pub fn keeps(&self, uid: &str) -> bool {
        self.split.side(uid) == self.side
    }
}

/// The sizes of both sides of a split of a training file, as reported by a
/// run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SplitCounts {
    /// The fraction of users asked for.
    pub valid_frac: f64,
    /// Sample lines trained on.
    pub train_lines: u64,
    /// Distinct users trained on.
    pub train_users: u64,
    /// Sample lines held out for validation.
    pub valid_lines: u64,
    /// Distinct users held out for validation.
    pub valid_users: u64,
}

impl std::fmt::Display for SplitCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "training on {} lines of {} users; validation: {} lines of {} users (--valid-frac {})",
            self.train_lines, self.train_users, self.valid_lines, self.valid_users, self.valid_frac
        )
    }
}

impl SplitCounts {
    /// Refuses a split of `train_file` that leaves nothing to train on, or
    /// (with a fraction above 0) nothing to validate on.
    pub fn check(&self, train_file: &Path) -> Result<(), TrainError> {
        let users = self.train_users + self.valid_users;
        if self.train_lines == 0 && self.valid_lines > 0 {
            return Err(TrainError::Config(format!(
                "--valid-frac {} held out every one of the {users} users of {}: nothing is left to train on; lower it",
                self.valid_frac,
                train_file.display()
            )));
        }
        if self.valid_frac > 0.0 && self.valid_lines == 0 && self.train_lines > 0 {
            return Err(TrainError::Config(format!(
                "--valid-frac {} held out none of the {users} users of {}: there is no validation set; raise it, or \
                 give --valid-frac 0 --select test to choose the best model by test AUC",
                self.valid_frac,
                train_file.display()
            )));
        }
        Ok(())
    }
}

/// Counts the sample lines and distinct users on each side of `split` in
/// the data file `path`, reading it once. Blank lines hold no sample and
/// are not counted; a malformed line is an error, or (`skip_bad_lines`)
/// left out as the batcher leaves it out. Memory grows with the number of
/// distinct users (their uid strings), not with the file.
pub fn count_split(path: &Path, split: &UserSplit, skip_bad_lines: bool) -> Result<SplitCounts, TrainError> {
    let mut r = LineReader::open(path)?;
    let mut users: [HashSet<String>; 2] = [HashSet::new(), HashSet::new()];
    let mut lines = [0u64; 2];
    loop {
        let lno = r.lines_consumed() + 1;
        let Some(line) = r.next_line()? else { break };
        if line.is_empty() {
            continue;
        }
        let uid = match split_fields(line) {
            Ok(f) => f.uid,
            Err(_) if skip_bad_lines => continue,
            Err(fault) => return Err(fault.at(path, lno)),
        };
        let i = usize::from(split.side(uid) == Side::Valid);
        lines[i] += 1;
        if !users[i].contains(uid) {
            users[i].insert(uid.to_string());
        }
    }
    Ok(SplitCounts {
        valid_frac: split.frac,
        train_lines: lines[0],
        train_users: users[0].len() as u64,
        valid_lines: lines[1],
        valid_users: users[1].len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_outside_the_unit_interval_are_refused() {
        for bad in [-0.1, 1.0, 1.5, f64::NAN, f64::INFINITY] {
            let e = UserSplit::new(bad, 1).unwrap_err().to_string();
            assert!(e.contains("--valid-frac") && e.contains("below 1"), "{e}");
        }
        assert!(!UserSplit::new(0.0, 1).unwrap().is_held_out("anyone"));
    }

    #[test]
    fn the_hash_reads_every_byte_and_the_length() {
        let h = |s: &[u8]| user_hash(7, s);
        assert_ne!(h(b"abcdefgh1"), h(b"abcdefgh2"));
        assert_ne!(h(b"a"), h(b"a\0"));
        assert_ne!(user_hash(7, b"u1"), user_hash(8, b"u1"));
    }
}
