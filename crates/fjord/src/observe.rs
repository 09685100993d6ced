//! What `fjord` sets up to be watched: its log output (human text on a
//! terminal, or one JSON object per line) and, for `serve`, the metrics
//! listener (`fjord_broker::metrics`).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;

use fjord_broker::metrics::Health;

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log shippers.
    Json,
}

fn filter(default_level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("FJORD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level))
}

/// Installs the process' log subscriber (level from `FJORD_LOG`, else `default_level`:
/// info for `serve`, warn for the tools).
pub fn init_logging(format: LogFormat, default_level: &str) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(default_level))
        .with_writer(std::io::stderr);
    match format {
        // Colours only on a terminal: a log redirected to a file or a pipe
        // stays plain text that grep and log shippers can read.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// Binds the metrics listener (`/metrics`, `/health`, `/ready`) and serves
/// it until `stop` turns true.
pub async fn start_metrics(
    listen: SocketAddr,
    health: Arc<Health>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {listen}: {e}"))?;
    tracing::info!(%listen, "metrics listener: /metrics, /health, /ready");
    Ok(tokio::spawn(fjord_broker::metrics::http::serve(
        listener, health, stop,
    )))
}
