//! The library half of the `fjord` command: tools that the binary runs and
//! tests drive directly.

pub mod bench;
pub mod cli;
pub mod groups;
pub mod observe;
