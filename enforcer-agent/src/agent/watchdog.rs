//! When the agent checks that its programs are still attached (security item 13): at
//! once when something is removed from the link pin directory (inotify on bpffs,
//! which reports unlinks like any filesystem), and on a timer for what leaves no
//! trace there (a link detached through its descriptor, a program attached before
//! ours, an attach that failed and is due again).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// How often the attachments are checked when nothing announces a change.
pub const DEFAULT_VERIFY_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("watching the link pins in {path}: {op}: {source}")]
pub struct WatchdogError {
    op: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The inotify descriptor, for [`AsyncFd`].
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl AsFd for InotifyFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

pub struct Watchdog {
    interval: tokio::time::Interval,
    pins: Option<AsyncFd<InotifyFd>>,
}

impl Watchdog {
    /// Checks every `every`, and when an entry of `pin_dir` (the `links/` directory)
    /// is removed or replaced. Must be called from within a tokio runtime.
    pub fn new(every: Duration, pin_dir: Option<&Path>) -> Result<Self, WatchdogError> {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick of an interval is immediate: the first check is `every` away.
        interval.reset();
        let pins = match pin_dir {
            None => None,
            Some(dir) => {
                let err = |op| {
                    let path = dir.to_path_buf();
                    move |source: std::io::Error| WatchdogError { op, path, source }
                };
                let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
                    .map_err(|e| err("inotify_init")(e.into()))?;
                inotify
                    .add_watch(
                        dir,
                        AddWatchFlags::IN_DELETE
                            | AddWatchFlags::IN_MOVED_FROM
                            | AddWatchFlags::IN_DELETE_SELF
                            | AddWatchFlags::IN_MOVE_SELF
                            | AddWatchFlags::IN_ONLYDIR
                            | AddWatchFlags::IN_DONT_FOLLOW,
                    )
                    .map_err(|e| err("watch")(e.into()))?;
                // SAFETY: `AsyncFd` owns the descriptor for as long as it is registered.
                Some(
                    unsafe {
                        AsyncFd::register_with_interest(InotifyFd(inotify), Interest::READABLE)
                    }
                    .map_err(|e| err("register with tokio")(e.into()))?,
                )
            }
        };
        Ok(Self { interval, pins })
    }

    /// Completes when a check is due. Cancel-safe.
    pub async fn due(&mut self) {
        let Some(pins) = &self.pins else {
            self.interval.tick().await;
            return;
        };
        let broken = tokio::select! {
            _ = self.interval.tick() => false,
            ready = pins.readable() => match ready {
                Ok(mut guard) => {
                    // Drained: what matters is that something changed.
                    if let Ok(Err(error)) = guard.try_io(|fd| {
                        fd.get_ref().0.read_events().map_err(std::io::Error::from)
                    }) {
                        tracing::warn!(%error, "reading pin directory events");
                    }
                    tracing::debug!("a link pin changed: checking the attachments");
                    false
                }
                Err(_) => true,
            },
        };
        if broken {
            // The watch is broken: the timer alone remains.
            self.pins = None;
        }
    }
}
