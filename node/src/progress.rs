//! Progress of a long command: a bar on a terminal, otherwise a log event
//! every few seconds (a log file, a CI console or a JSON log shipper gets no
//! control codes, and JSON logs stay JSON).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

const LINE_EVERY: Duration = Duration::from_secs(5);
/// How often a bar redraws by itself, so that its clock moves while a step
/// advances nothing for a long time.
const BAR_TICK: Duration = Duration::from_millis(250);

pub struct Progress {
    counts: Arc<Counts>,
    bar: Option<ProgressBar>,
    /// Without a terminal: the thread that logs a line every [`LINE_EVERY`],
    /// whether or not the work advanced, and the sender that stops it.
    lines: Option<(Sender<()>, JoinHandle<()>)>,
}

struct Counts {
    what: String,
    total: Option<u64>,
    done: AtomicU64,
}

impl Counts {
    fn log(&self) {
        let done = self.done.load(Ordering::Relaxed);
        tracing::info!(done, total = self.total, what = %self.what, "progress");
    }
}

impl Progress {
    /// Progress over `total` items (unknown: `None`) named `what` ("events", "rows").
    pub fn new(what: &str, total: Option<u64>) -> Progress {
        let counts = Arc::new(Counts {
            what: what.to_string(),
            total,
            done: AtomicU64::new(0),
        });
        if !std::io::stderr().is_terminal() {
            return Progress {
                lines: Some(log_lines(counts.clone())),
                counts,
                bar: None,
            };
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::new_spinner(),
        };
        let template = format!(
            "{{spinner}} {{elapsed_precise}} [{{wide_bar}}] {{human_pos}}/{{human_len}} {what} ({{per_sec}}, eta {{eta}})"
        );
        bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
        bar.enable_steady_tick(BAR_TICK);
        Progress {
            counts,
            bar: Some(bar),
            lines: None,
        }
    }

    pub fn advance(&mut self, n: u64) {
        self.counts.done.fetch_add(n, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Clears the bar, or logs the last line.
    pub fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.stop_lines() {
            self.counts.log();
        }
    }

    /// Stops the line thread; whether there was one.
    fn stop_lines(&mut self) -> bool {
        let Some((stop, thread)) = self.lines.take() else {
            return false;
        };
        let _ = stop.send(());
        let _ = thread.join();
        true
    }
}

impl Drop for Progress {
    /// A command that fails stops its line thread too (without a last line).
    fn drop(&mut self) {
        self.stop_lines();
    }
}

/// Logs `counts` every [`LINE_EVERY`] until told to stop (or its sender is dropped).
fn log_lines(counts: Arc<Counts>) -> (Sender<()>, JoinHandle<()>) {
    let (stop, stopped) = channel();
    let thread = std::thread::spawn(move || {
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(LINE_EVERY) {
            counts.log();
        }
    });
    (stop, thread)
}
