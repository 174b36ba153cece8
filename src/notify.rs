//! The systemd notification protocol (sd_notify): READY, STATUS, WATCHDOG, STOPPING.
//! Every call is a no-op when the process was not started by systemd ($NOTIFY_SOCKET unset).

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

fn send(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::debug!("sd_notify failed: {error}");
    }
}

pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("running")]);
}

pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    let mut microseconds = 0;
    sd_notify::watchdog_enabled(false, &mut microseconds)
        .then(|| Duration::from_micros(microseconds))
        .filter(|interval| !interval.is_zero())
}

/// Pings the watchdog at half its interval until `shutdown`. The pings come from the
/// async runtime itself, so a wedged runtime gets the service restarted.
pub async fn watchdog_loop(interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval / 2);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => send(&[NotifyState::Watchdog]),
        }
    }
}
