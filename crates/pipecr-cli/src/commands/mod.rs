//! One module per subcommand: each has its clap `Args` and a `run` that returns the exit
//! code, or an error for `main` to print.

pub mod check;
pub mod demo;
pub mod demo_pipes;
pub mod demo_stage;
pub mod demo_workdir;
pub mod dump;
pub mod generate;
pub mod peek;
pub mod restore;
pub mod show;
