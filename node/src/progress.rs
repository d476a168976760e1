//! Progress of a long command: a bar on a terminal, otherwise a log event
//! every few seconds (a log file, a CI console or a JSON log shipper gets no
//! control codes, and JSON logs stay JSON).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

const LINE_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    what: String,
    total: Option<u64>,
    done: u64,
    bar: Option<ProgressBar>,
    last_line: Instant,
}

impl Progress {
    /// Progress over `total` items (unknown: `None`) named `what` ("events", "rows").
    pub fn new(what: &str, total: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(total) => ProgressBar::new(total),
                None => ProgressBar::new_spinner(),
            };
            let template = format!(
                "{{spinner}} {{elapsed_precise}} [{{wide_bar}}] {{human_pos}}/{{human_len}} {what} ({{per_sec}}, eta {{eta}})"
            );
            bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
            bar
        });
        Progress {
            what: what.to_string(),
            total,
            done: 0,
            bar,
            last_line: Instant::now(),
        }
    }

    pub fn advance(&mut self, n: u64) {
        self.done += n;
        match &self.bar {
            Some(bar) => bar.inc(n),
            None if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                self.log();
            }
            None => {}
        }
    }

    pub fn finish(&mut self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => self.log(),
        }
    }

    fn log(&self) {
        tracing::info!(done = self.done, total = self.total, what = %self.what, "progress");
    }
}
