//! The progress display of `archiver refetch`: on a terminal, one live bar per session
//! and media with bytes and rate (indicatif); otherwise plain lines, one per media as it
//! ends, so a log or a pipe stays readable. Everything goes to stderr.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use archive::ProgressObserver;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use media::MediaKind;

use super::SessionReport;

/// The display for one run of `archiver refetch`.
pub struct Progress {
    /// `None` when stderr is not a terminal: plain lines instead of bars.
    bars: Option<MultiProgress>,
}

impl Progress {
    pub fn new() -> Self {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5)));
        Progress { bars }
    }

    /// A line that says what is happening to a session before its media start.
    pub fn session_started(&self, session_id: &str, what: &str) {
        self.line(&format!("{session_id}: {what}"));
    }

    /// The observer that follows one session's media.
    pub fn observer(&self, session_id: &str) -> Arc<dyn ProgressObserver> {
        Arc::new(SessionObserver {
            session_id: session_id.to_string(),
            bars: self.bars.clone(),
            media: Mutex::new(HashMap::new()),
        })
    }

    pub fn session_finished(&self, report: &SessionReport) {
        let who = if report.session_id.is_empty() {
            "(unreadable event)"
        } else {
            &report.session_id
        };
        let mut line = format!("{who}: {}", report.outcome.as_str());
        if let Some(reason) = &report.reason {
            line.push_str(&format!(" ({reason})"));
        }
        self.line(&line);
    }

    /// Whether live bars are drawn (stderr is a terminal).
    pub fn is_live(&self) -> bool {
        self.bars.is_some()
    }

    /// Prints a line on stdout without tearing the live bars on a shared terminal.
    pub fn stdout_line(&self, text: &str) {
        match &self.bars {
            Some(bars) => bars.suspend(|| println!("{text}")),
            None => println!("{text}"),
        }
    }

    pub fn summary(&self, text: &str) {
        self.line(text);
    }

    fn line(&self, text: &str) {
        match &self.bars {
            // Printed above the live bars, so the two never tear each other.
            Some(bars) => {
                let _ = bars.println(text);
            }
            None => eprintln!("{text}"),
        }
    }
}

/// One media's live state: bytes so far and since when.
struct MediaState {
    bar: Option<ProgressBar>,
    bytes: u64,
    started: Instant,
}

struct SessionObserver {
    session_id: String,
    bars: Option<MultiProgress>,
    media: Mutex<HashMap<MediaKind, MediaState>>,
}

fn label(kind: MediaKind) -> &'static str {
    archive::manifest_name(kind)
}

impl ProgressObserver for SessionObserver {
    fn attempt_started(&self, kind: MediaKind) {
        let bar = self.bars.as_ref().map(|bars| {
            let style = ProgressStyle::with_template(
                "{prefix:.bold} {spinner} {bytes:>10} {bytes_per_sec:>12} {elapsed:>4} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
            let bar = bars.add(ProgressBar::new_spinner().with_style(style));
            bar.set_prefix(format!("{} {:<12}", short(&self.session_id), label(kind)));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let mut media = self.media.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(previous) = media.insert(
            kind,
            MediaState {
                bar,
                bytes: 0,
                started: Instant::now(),
            },
        ) {
            if let Some(bar) = previous.bar {
                bar.finish_with_message("retrying");
            }
        }
    }

    fn bytes(&self, kind: MediaKind, bytes: u64) {
        let mut media = self.media.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(state) = media.get_mut(&kind) {
            state.bytes += bytes;
            if let Some(bar) = &state.bar {
                bar.inc(bytes);
            }
        }
    }

    fn finished(&self, kind: MediaKind, status: archive::MediaStatus) {
        let mut media = self.media.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = media.remove(&kind);
        let (bytes, elapsed) = state
            .as_ref()
            .map_or((0, Duration::ZERO), |state| (state.bytes, state.started.elapsed()));
        let rate = if elapsed.as_secs_f64() > 0.0 {
            bytes as f64 / elapsed.as_secs_f64() / 1e6
        } else {
            0.0
        };
        let line = format!(
            "{}: {} {status} ({bytes} bytes in {:.2} s, {rate:.1} MB/s)",
            self.session_id,
            label(kind),
            elapsed.as_secs_f64()
        );
        // The live bar gives way to a permanent line, the same one a pipe or a log gets.
        match (state.and_then(|state| state.bar), &self.bars) {
            (Some(bar), Some(bars)) => {
                bar.finish_and_clear();
                bars.remove(&bar);
                let _ = bars.println(line);
            }
            _ => eprintln!("{line}"),
        }
    }
}

/// The first block of a UUID: enough to tell sessions apart on one screen.
fn short(session_id: &str) -> &str {
    session_id.split('-').next().unwrap_or(session_id)
}
