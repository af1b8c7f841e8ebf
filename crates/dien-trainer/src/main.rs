//! `dien`: generate data, train, evaluate, score, check gradients,
//! benchmark the DIEN engine and sweep over models, settings and seeds
//! from the command line. Argument parsing is in
//! [`cli`] (with `train --config` in [`config_file`]), each command in its module of [`commands`]; the work itself is
//! done by the `dien_trainer` library.

mod cli;
mod commands;
mod config_file;

use clap::Parser;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args = if commands::sweep::is_sweep(&args) {
        commands::sweep::train_flags_last(args)
    } else {
        match config_file::expand(args) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        }
    };
    if let Err(e) = commands::run(&cli::Cli::parse_from(args).cmd) {
        // Sources already quoted by their wrapper's message are not repeated.
        let mut msg = e.to_string();
        for cause in e.chain().skip(1) {
            let c = cause.to_string();
            if !msg.contains(&c) {
                msg = format!("{msg}: {c}");
            }
        }
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}
