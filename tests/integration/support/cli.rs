//! Running the `archiver` binary as a user would: with the stack's settings, optional
//! stdin, and a deadline after which the process is killed so that no test hangs.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::media_server::MediaServer;
use super::stack::Stack;

/// How long `run` lets a command take before killing it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// A `Command` for the archiver built for this test run, with the stack's settings and
/// none of the caller's other `ARCHIVER_*` variables (so a developer's shell cannot
/// change what a test sees).
pub fn archiver() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_archiver"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ARCHIVER_") {
            command.env_remove(name);
        }
    }
    command.envs(Stack::load().env_for_archiver());
    command
}

/// Settings a test adds to an archiver command.
pub trait ArchiverEnv {
    /// Trusts `server`'s CA and allows its host (a loopback host is refused otherwise).
    fn media_server(&mut self, server: &MediaServer) -> &mut Self;
    /// `ARCHIVER_SOURCE_CA_FILE`.
    fn source_ca(&mut self, ca_file: &Path) -> &mut Self;
    /// `ARCHIVER_ALLOWED_HOSTS`.
    fn allowed_hosts(&mut self, hosts: &str) -> &mut Self;
}

impl ArchiverEnv for Command {
    fn media_server(&mut self, server: &MediaServer) -> &mut Self {
        self.source_ca(server.ca_file()).allowed_hosts(&server.authority())
    }

    fn source_ca(&mut self, ca_file: &Path) -> &mut Self {
        self.env("ARCHIVER_SOURCE_CA_FILE", ca_file)
    }

    fn allowed_hosts(&mut self, hosts: &str) -> &mut Self {
        self.env("ARCHIVER_ALLOWED_HOSTS", hosts)
    }
}

/// Runs `command` to completion with `stdin` (none: stdin is empty), killing it after
/// `DEFAULT_TIMEOUT`.
pub fn run(command: Command, stdin: Option<&[u8]>) -> Output {
    run_with_timeout(command, stdin, DEFAULT_TIMEOUT)
}

/// Runs `command` to completion with `stdin`; kills it and panics (showing what it
/// printed) if it takes longer than `timeout`.
pub fn run_with_timeout(command: Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let mut running = Running::spawn(command, stdin);
    match running.wait_timeout(timeout) {
        Some(output) => output,
        None => {
            let output = running.kill();
            panic!(
                "{} did not finish within {timeout:?}; killed it\nstdout:\n{}\nstderr:\n{}",
                running.describe,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        }
    }
}

/// The JSON a command printed on stdout (panics, showing the output, if it is not JSON).
pub fn stdout_json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not JSON ({error})\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// A background process (e.g. `archiver worker`) whose output is collected; killed when
/// dropped if it is still running.
pub struct Running {
    child: Child,
    describe: String,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Running {
    /// Starts `command` with `stdin` written then closed (none: stdin is empty).
    pub fn spawn(mut command: Command, stdin: Option<&[u8]>) -> Running {
        let describe = format!("{command:?}");
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {describe}: {error}"));
        let mut input = child.stdin.take().expect("piped stdin");
        let data = stdin.unwrap_or_default().to_vec();
        // A writer thread: a child that does not read stdin must not block the test.
        std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        Running {
            child,
            describe,
            stdout,
            stderr,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (what Kubernetes sends before stopping a pod).
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends SIGINT (Ctrl-C).
    pub fn interrupt(&self) {
        self.signal("INT");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.child.id());
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit, up to `timeout`; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Output> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for child") {
                return Some(self.collect(status));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process and returns what it printed.
    pub fn kill(&mut self) -> Output {
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for killed child");
        self.collect(status)
    }

    fn collect(&mut self, status: ExitStatus) -> Output {
        let join = |handle: Option<std::thread::JoinHandle<Vec<u8>>>| {
            handle.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
        };
        Output {
            status,
            stdout: join(self.stdout.take()),
            stderr: join(self.stderr.take()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut data = Vec::new();
        let _ = pipe.read_to_end(&mut data);
        data
    })
}
