//! Process exit codes (CONTRACT.md section 5): 0 all done; 1 done, but something was
//! rejected or failed; 2 bad usage, bad configuration or unreadable input.

use std::process::ExitCode;

/// How a command that ran to its end went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for was done: exit 0.
    Done,
    /// Done, but something was rejected or failed; the output says what: exit 1.
    Partial,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Done => ExitCode::SUCCESS,
            Outcome::Partial => ExitCode::from(1),
        }
    }
}

/// A command that could not do its work. It knows its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Bad usage, bad configuration or unreadable input: exit 2. The message says what
    /// and how to fix it.
    #[error("{0}")]
    Usage(String),
    /// The command started but could not finish (the broker or the store is unreachable):
    /// exit 1.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl CommandError {
    pub fn usage(message: impl Into<String>) -> Self {
        CommandError::Usage(message.into())
    }

    /// Prints the one line on stderr that the contract asks for, and gives the exit code.
    pub fn report(self) -> ExitCode {
        let code = match &self {
            CommandError::Usage(_) => 2,
            CommandError::Failed(_) => 1,
        };
        // One line: newlines inside a chained error would break log scrapers.
        let message = self.to_string().replace('\n', " ");
        eprintln!("archiver: {message}");
        ExitCode::from(code)
    }
}

impl From<anyhow::Error> for CommandError {
    fn from(err: anyhow::Error) -> Self {
        CommandError::Failed(err)
    }
}
