//! One module per subcommand; each returns an exit [`Outcome`](crate::exit::Outcome) or a
//! [`CommandError`](crate::exit::CommandError).

pub mod archive;
pub mod audit;
pub mod erase;
pub mod get;
pub mod list;
pub mod refetch;
pub mod topology;
pub mod validate;
pub mod webhook;
pub mod worker;
