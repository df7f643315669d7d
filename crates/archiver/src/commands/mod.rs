//! One module per subcommand; each returns an exit [`Outcome`](crate::exit::Outcome) or a
//! [`CommandError`](crate::exit::CommandError).

pub mod archive;
pub mod get;
pub mod refetch;
pub mod topology;
pub mod validate;
pub mod webhook;
pub mod worker;
