//! Progress for commands that take more than a second (`lab up`, `lab apply`, `lab
//! probe`, ...): a spinner with the elapsed time on standard error, and nothing at all
//! when standard error is not a terminal (scripts, CI, pipes).

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A running spinner, cleared when dropped.
pub struct Spinner(Option<ProgressBar>);

/// Starts a spinner saying `message` (when standard error is a terminal).
pub fn spinner(message: impl Into<String>) -> Spinner {
    if !std::io::stderr().is_terminal() {
        return Spinner(None);
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message.into());
    bar.enable_steady_tick(Duration::from_millis(120));
    Spinner(Some(bar))
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}
