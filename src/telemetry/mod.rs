//! Logs (tracing) and metrics (Prometheus exposition) setup.

pub mod metrics;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber: RUST_LOG if set, else `level` from the configuration.
/// Logs go to standard error; standard output is kept for command results.
pub fn init_logging(level: &str, format: LogFormat) {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty());
    let directives = directives.unwrap_or_else(|| level.to_string());
    let mut filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    // The scheduler crate narrates its own life at info level; keep it to warnings
    // unless the operator asked for it by name.
    if !directives.contains("tokio_cron_scheduler") {
        filter = filter.add_directive(
            "tokio_cron_scheduler=warn"
                .parse()
                .expect("static directive"),
        );
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        // journald stamps every line itself; a second timestamp is noise.
        LogFormat::Text => builder.without_time().try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
