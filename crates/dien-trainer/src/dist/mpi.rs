//! The MPI transport (feature `mpi`): the system's MPI library (Open MPI)
//! through the `mpi` crate (rsmpi).
//!
//! [`Mpi::init`] initialises MPI and sets the error handler of
//! `MPI_COMM_WORLD` to `MPI_ERRORS_RETURN`, so that a failed call returns a
//! code instead of ending the process inside the library; every call of
//! [`MpiComm`] checks it and turns a failure into a [`CommError`] naming
//! the rank, the call and MPI's message. The caller then ends the job with
//! [`Mpi::abort`] (`MPI_Abort`) after printing it, so that no rank waits
//! forever for a rank that stopped.
//!
//! rsmpi's collective operations do not report MPI's return codes, so the
//! three this transport needs (`MPI_Allgather`, `MPI_Allgatherv`,
//! `MPI_Alltoallv`, on bytes) are called through `mpi::ffi`, each in one
//! `unsafe` block whose `SAFETY` comment gives the buffer sizes; everything
//! else (initialisation, rank, size, datatypes, abort) goes through
//! rsmpi's safe API.
//!
//! The training loop runs on a thread of its compute pool, not on the
//! thread that initialised MPI, so MPI is initialised with
//! `MPI_THREAD_SERIALIZED` (calls from any thread, one at a time: the
//! training thread makes them all).

use std::os::raw::{c_char, c_int};

use mpi::Threading;
use mpi::datatype::Equivalence;
use mpi::environment::Universe;
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::{Communicator, SimpleCommunicator};

use super::{Collective, CommError};

/// MPI for this process: initialised by [`Mpi::init`], finalised when
/// dropped.
pub struct Mpi {
    universe: Universe,
    rank: usize,
    size: usize,
}

impl Mpi {
    /// Initialises MPI (`MPI_THREAD_SERIALIZED`) and sets the error handler
    /// of `MPI_COMM_WORLD` to return errors. Under `mpirun` this process
    /// becomes one rank of the job; started alone, it is a job of one rank.
    pub fn init() -> Result<Self, String> {
        let (universe, provided) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| "MPI was already initialised in this process".to_string())?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        if provided < Threading::Serialized {
            return Err(format!(
                "the MPI library provides the thread level {provided:?}; training needs MPI_THREAD_SERIALIZED \
                 (its MPI calls come from one thread, not the main one)"
            ));
        }
        // SAFETY: MPI is initialised (above) and not finalised (`universe`
        // is alive); `world.as_raw()` is the valid handle of
        // MPI_COMM_WORLD and RSMPI_ERRORS_RETURN the predefined handler
        // MPI_ERRORS_RETURN, read from an immutable extern constant.
        let rc = unsafe { ffi::MPI_Comm_set_errhandler(world.as_raw(), ffi::RSMPI_ERRORS_RETURN) };
        check(rc, rank, "MPI_Comm_set_errhandler").map_err(|e| e.to_string())?;
        Ok(Self { universe, rank, size })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks of the job.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The transport of this rank for the training loop.
    pub fn comm(&self) -> MpiComm<'_> {
        MpiComm { _mpi: self, rank: self.rank, size: self.size, counts: Vec::new(), displs: Vec::new() }
    }

    /// Ends every rank of the job (`MPI_Abort` on `MPI_COMM_WORLD`) with
    /// exit status `code`. Print the reason first: MPI prints only that
    /// this rank aborted.
    pub fn abort(&self, code: i32) -> ! {
        self.universe.world().abort(code)
    }
}

/// The MPI library's name and version (its first words: `Open MPI
/// v4.1.4`).
pub fn library_version() -> String {
    let v = mpi::environment::library_version().unwrap_or_default();
    let v = v.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    let first = v.split([',', '\n', '\0']).next().unwrap_or_default().trim();
    if first.is_empty() { "unknown MPI library".into() } else { first.to_string() }
}

/// MPI's message for the error code `code`.
fn error_string(code: c_int) -> String {
    let mut buf = vec![0u8; 1024];
    let mut len: c_int = 0;
    // SAFETY: MPI_Error_string writes at most MPI_MAX_ERROR_STRING (256 in
    // Open MPI and MPICH; the buffer holds 1024) bytes and the length into
    // valid, writable memory; it may be called at any time.
    let rc = unsafe { ffi::MPI_Error_string(code, buf.as_mut_ptr() as *mut c_char, &mut len) };
    if rc != 0 {
        return format!("MPI error code {code}");
    }
    buf.truncate((len.max(0) as usize).min(buf.len()));
    format!("{} (MPI error code {code})", String::from_utf8_lossy(&buf))
}

/// `Ok` for MPI_SUCCESS (0), else the error of `op` on `rank`.
fn check(rc: c_int, rank: usize, op: &'static str) -> Result<(), CommError> {
    if rc == 0 { Ok(()) } else { Err(CommError { rank, op, msg: error_string(rc) }) }
}

/// A count or displacement as MPI's `int`.
fn count(n: usize, rank: usize, op: &'static str) -> Result<c_int, CommError> {
    c_int::try_from(n).map_err(|_| CommError {
        rank,
        op,
        msg: format!("{n} bytes exceed the {} bytes an MPI count can describe", c_int::MAX),
    })
}

/// One rank's transport over `MPI_COMM_WORLD` (bytes as `MPI_UINT8_T`).
pub struct MpiComm<'m> {
    _mpi: &'m Mpi,
    rank: usize,
    size: usize,
    counts: Vec<c_int>,
    displs: Vec<c_int>,
}

impl MpiComm<'_> {
    fn world() -> SimpleCommunicator {
        SimpleCommunicator::world()
    }
}

impl Collective for MpiComm<'_> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_gather(&mut self, mine: &[u8], out: &mut Vec<u8>, counts: &mut Vec<usize>) -> Result<(), CommError> {
        let (rank, n) = (self.rank, self.size);
        let world = Self::world();
        let byte = u8::equivalent_datatype();
        let int = c_int::equivalent_datatype();
        let my_count = count(mine.len(), rank, "MPI_Allgather")?;
        self.counts.clear();
        self.counts.resize(n, 0);
        // SAFETY: MPI is initialised and not finalised (`_mpi` borrows the
        // live `Mpi`); the send buffer is one c_int and the receive buffer
        // `n` c_ints, both valid for the datatype MPI_INT given; the
        // communicator handle is MPI_COMM_WORLD.
        let rc = unsafe {
            ffi::MPI_Allgather(
                (&my_count as *const c_int).cast(),
                1,
                int.as_raw(),
                self.counts.as_mut_ptr().cast(),
                1,
                int.as_raw(),
                world.as_raw(),
            )
        };
        check(rc, rank, "MPI_Allgather")?;
        self.displs.clear();
        let mut total = 0usize;
        for &c in &self.counts {
            self.displs.push(count(total, rank, "MPI_Allgatherv")?);
            total += c.max(0) as usize;
        }
        count(total, rank, "MPI_Allgatherv")?;
        out.clear();
        out.resize(total, 0);
        // SAFETY: as above; the send buffer holds `my_count` bytes; the
        // receive buffer holds `total` bytes, the sum of the counts every
        // rank announced, and `displs` places rank r's part at the sum of
        // the counts before it, so every part lies inside it.
        let rc = unsafe {
            ffi::MPI_Allgatherv(
                mine.as_ptr().cast(),
                my_count,
                byte.as_raw(),
                out.as_mut_ptr().cast(),
                self.counts.as_ptr(),
                self.displs.as_ptr(),
                byte.as_raw(),
                world.as_raw(),
            )
        };
        check(rc, rank, "MPI_Allgatherv")?;
        counts.clear();
        counts.extend(self.counts.iter().map(|&c| c.max(0) as usize));
        Ok(())
    }

    fn all_gather_equal(&mut self, mine: &[u8], out: &mut Vec<u8>) -> Result<(), CommError> {
        let (rank, n) = (self.rank, self.size);
        let op = "MPI_Allgather";
        let len = count(mine.len(), rank, op)?;
        count(mine.len() * n, rank, op)?;
        out.clear();
        out.resize(mine.len() * n, 0);
        let world = Self::world();
        let byte = u8::equivalent_datatype();
        // SAFETY: MPI is initialised and not finalised; the send buffer
        // holds `len` bytes and the receive buffer `n × len` bytes, room for
        // `len` bytes from each of the `n` ranks of MPI_COMM_WORLD (every
        // rank passes the same `len`: the callers exchange vectors of one
        // length known to all).
        let rc = unsafe {
            ffi::MPI_Allgather(
                mine.as_ptr().cast(),
                len,
                byte.as_raw(),
                out.as_mut_ptr().cast(),
                len,
                byte.as_raw(),
                world.as_raw(),
            )
        };
        check(rc, rank, op)
    }

    fn all_to_all(
        &mut self,
        send: &[u8],
        send_counts: &[usize],
        recv_counts: &[usize],
        out: &mut Vec<u8>,
    ) -> Result<(), CommError> {
        let (rank, n) = (self.rank, self.size);
        let op = "MPI_Alltoallv";
        if send_counts.len() != n || recv_counts.len() != n || send_counts.iter().sum::<usize>() != send.len() {
            return Err(CommError { rank, op, msg: "counts do not match the ranks or the buffer".into() });
        }
        let to_ints = |v: &[usize]| -> Result<(Vec<c_int>, Vec<c_int>), CommError> {
            let (mut c, mut d, mut at) = (Vec::with_capacity(n), Vec::with_capacity(n), 0usize);
            for &x in v {
                c.push(count(x, rank, op)?);
                d.push(count(at, rank, op)?);
                at += x;
            }
            count(at, rank, op)?;
            Ok((c, d))
        };
        let (sc, sd) = to_ints(send_counts)?;
        let (rc_, rd) = to_ints(recv_counts)?;
        out.clear();
        out.resize(recv_counts.iter().sum(), 0);
        let world = Self::world();
        let byte = u8::equivalent_datatype();
        // SAFETY: MPI is initialised and not finalised; the send buffer
        // holds the sum of `sc` bytes (checked above) with `sd` the running
        // sums, the receive buffer the sum of `rc_` bytes with `rd` the
        // running sums, so every part lies inside its buffer; all four
        // arrays have one entry per rank of MPI_COMM_WORLD.
        let rc = unsafe {
            ffi::MPI_Alltoallv(
                send.as_ptr().cast(),
                sc.as_ptr(),
                sd.as_ptr(),
                byte.as_raw(),
                out.as_mut_ptr().cast(),
                rc_.as_ptr(),
                rd.as_ptr(),
                byte.as_raw(),
                world.as_raw(),
            )
        };
        check(rc, rank, op)
    }

    fn describe(&self) -> String {
        format!("MPI ({})", library_version())
    }
}
