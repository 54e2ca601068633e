//! The subcommands of `lb-daemon`, one module each.

pub mod check;
pub mod decap;
pub mod run;
pub mod status;
