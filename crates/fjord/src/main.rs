//! `fjord`: the broker and its tools in one binary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use fjord::bench::BenchCommand;
use fjord::observe::LogFormat;
use fjord_broker::{Broker, BrokerConfig};

#[derive(Parser)]
#[command(
    name = "fjord",
    version,
    about = "Fjord: a Kafka-compatible event-streaming broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log output on stderr: human text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "FJORD_LOG_FORMAT")]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (zero-config: 127.0.0.1:9092, data in ./fjord-data).
    ///
    /// Example: fjord serve --listen 127.0.0.1:9092 --data-dir /var/lib/fjord --set num.partitions=3
    Serve(ServeArgs),
    /// Prepare a data directory for a cluster node (like kafka-storage
    /// format): writes meta.properties with the cluster id and node id.
    ///
    /// Example: fjord format --cluster-id my-cluster --config node1.properties
    Format(FormatArgs),
    /// Load generator for any Kafka-compatible broker: produce, consume, e2e.
    ///
    /// Example: fjord bench produce --topic t --partitions 16 --record-size 1024 --duration 30s
    #[command(subcommand)]
    Bench(BenchCommand),
    /// topic, produce, consume, group, cluster, config (crates/fjord/src/cli).
    #[command(flatten)]
    Tools(fjord::cli::ToolCommand),
    /// Print a shell completion script.
    ///
    /// Example: fjord completions bash > /etc/bash_completion.d/fjord
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address announced to clients (defaults to the listen address).
    #[arg(long, value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// Directory holding all data.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// File of settings by Kafka broker config name: a Kafka
    /// `server.properties` (Java properties) or TOML (`.toml`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A setting by Kafka broker config name (repeatable), e.g. num.partitions=3.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Serve Prometheus metrics, /health and /ready over HTTP here (off by default).
    #[arg(long, value_name = "HOST:PORT", env = "FJORD_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(clap::Args)]
struct FormatArgs {
    /// The cluster id every node of the cluster is formatted with.
    #[arg(long, value_name = "ID")]
    cluster_id: String,
    /// Dynamic quorum (KIP-853): this controller is the only voter (as
    /// kafka-storage format --standalone); serve it with
    /// controller.quorum.bootstrap.servers.
    #[arg(long, conflicts_with_all = ["initial_controllers", "no_initial_controllers"])]
    standalone: bool,
    /// Dynamic quorum (KIP-853): the first voters,
    /// ID@HOST:PORT:DIRECTORY_ID,... (as kafka-storage format); this node's
    /// directory id is the one given for it.
    #[arg(long, value_name = "VOTERS", conflicts_with = "no_initial_controllers")]
    initial_controllers: Option<String>,
    /// Dynamic quorum (KIP-853): write no voter set (a controller to be
    /// added to a running quorum later).
    #[arg(long)]
    no_initial_controllers: bool,
    /// The metadata.version the cluster starts at, as kafka-storage format
    /// takes it: a release ("3.9") or a level ("3.9-IV0"); default 4.3, the
    /// highest. The other features get Kafka's defaults for that release.
    #[arg(long, short = 'r', value_name = "VERSION")]
    release_version: Option<String>,
    /// A feature level the cluster starts with, NAME=LEVEL (repeatable; as
    /// kafka-storage format --feature), e.g. eligible.leader.replicas.version=1.
    #[arg(long = "feature", short = 'f', value_name = "NAME=LEVEL")]
    features: Vec<String>,
    /// The settings the node will be served with (data dir, node.id, ...).
    #[command(flatten)]
    serve: ServeArgs,
}

/// `fjord format`: refuses a directory already formatted (as
/// kafka-storage format does without --ignore-formatted).
fn format(args: FormatArgs) -> anyhow::Result<()> {
    let config = build_config(&args.serve)?;
    let id = args.cluster_id.trim();
    anyhow::ensure!(
        !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "--cluster-id must be 1 to 64 letters, digits, '-' or '_'"
    );
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir)?;
    if let Some(existing) = fjord_broker::cluster_metadata::read_meta_properties(dir)? {
        anyhow::bail!(
            "{} is already formatted (cluster {existing})",
            dir.display()
        );
    }
    let voters = initial_voters(&args, &config)?;
    let (metadata_version, feature_records) = bootstrap_features(&args)?;
    let directory_id = voters
        .iter()
        .find(|v| v.id == config.node_id.0)
        .map_or_else(uuid::Uuid::new_v4, |v| v.directory_id);
    fjord_broker::cluster_metadata::write_meta_properties_with_directory_id(
        dir,
        id,
        config.node_id,
        directory_id,
    )?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    fjord_metadata::log::write_bootstrap_checkpoint(
        dir,
        &feature_records,
        metadata_version,
        now_ms,
    )?;
    println!(
        "Bootstrap metadata: metadata.version {}{}",
        fjord_broker::features::metadata_version_name(metadata_version).unwrap_or("?"),
        feature_records
            .iter()
            .filter_map(|r| match r {
                fjord_protocol::metadata_records::MetadataRecord::FeatureLevel(f)
                    if f.name != fjord_metadata::image::METADATA_VERSION_FEATURE =>
                {
                    Some(format!(", {}={}", f.name, f.feature_level))
                }
                _ => None,
            })
            .collect::<String>()
    );
    if !voters.is_empty() {
        fjord_metadata::log::write_bootstrap_voters(dir, &voters, now_ms)?;
        println!(
            "Wrote the voter set of a dynamic quorum: {}",
            voters
                .iter()
                .map(|v| format!(
                    "{}@{}:{}:{}",
                    v.id,
                    v.endpoints[0].host,
                    v.endpoints[0].port,
                    fjord_broker::cluster_metadata::kafka_uuid_string(v.directory_id)
                ))
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    println!(
        "Formatted {} for cluster {id}, node {}",
        dir.display(),
        config.node_id.0
    );
    Ok(())
}

/// The feature levels `fjord format` writes in `bootstrap.checkpoint`:
/// `--release-version` (default: the highest metadata.version) with Kafka's
/// default levels for it, overridden by each `--feature NAME=LEVEL`, checked
/// as a new cluster's are.
fn bootstrap_features(
    args: &FormatArgs,
) -> anyhow::Result<(i16, Vec<fjord_protocol::metadata_records::MetadataRecord>)> {
    use fjord_broker::cluster_metadata::{feature_records, BOOTSTRAP_METADATA_VERSION};
    use fjord_broker::features;
    let metadata_version = match &args.release_version {
        None => BOOTSTRAP_METADATA_VERSION,
        Some(v) => features::metadata_version_from_release(v).with_context(|| {
            format!(
                "unknown or unsupported --release-version {v}: Fjord supports {} to {}",
                features::metadata_version_name(
                    fjord_broker::cluster_metadata::METADATA_VERSION_MIN
                )
                .unwrap_or("?"),
                features::metadata_version_name(
                    fjord_broker::cluster_metadata::METADATA_VERSION_MAX
                )
                .unwrap_or("?")
            )
        })?,
    };
    let mut levels: std::collections::BTreeMap<String, i16> =
        features::default_levels(metadata_version)
            .into_iter()
            .map(|(n, l)| (n.to_string(), l))
            .collect();
    for f in &args.features {
        let (name, level) = f
            .split_once('=')
            .with_context(|| format!("--feature {f}: expected NAME=LEVEL"))?;
        let level: i16 = level
            .trim()
            .parse()
            .with_context(|| format!("--feature {f}: the level must be a number"))?;
        anyhow::ensure!(
            name.trim() != fjord_metadata::image::METADATA_VERSION_FEATURE,
            "--feature cannot set metadata.version: use --release-version"
        );
        anyhow::ensure!(
            name.trim() != features::KRAFT_VERSION_FEATURE,
            "--feature cannot set kraft.version: a quorum formatted with --standalone, \
             --initial-controllers or --no-initial-controllers runs at 1, one with \
             controller.quorum.voters at 0"
        );
        levels.insert(name.trim().to_string(), level);
    }
    levels.insert(
        fjord_metadata::image::METADATA_VERSION_FEATURE.to_string(),
        metadata_version,
    );
    features::check_bootstrap_levels(&levels).map_err(|e| anyhow::anyhow!("{e}"))?;
    let others: Vec<(&str, i16)> = levels.iter().map(|(n, l)| (n.as_str(), *l)).collect();
    Ok((metadata_version, feature_records(metadata_version, &others)))
}

/// The voter set `fjord format` writes in the bootstrap snapshot of a
/// dynamic quorum (KIP-853), with Kafka's `kafka-storage format` rules:
/// `--standalone`, `--initial-controllers` or `--no-initial-controllers`
/// only on a controller served with `controller.quorum.bootstrap.servers`
/// (not `controller.quorum.voters`), and one of them required there.
fn initial_voters(
    args: &FormatArgs,
    config: &BrokerConfig,
) -> anyhow::Result<Vec<fjord_metadata::control::VoterEntry>> {
    use fjord_metadata::control::{VoterEndpoint, VoterEntry};
    let dynamic =
        args.standalone || args.initial_controllers.is_some() || args.no_initial_controllers;
    let kraft = &config.kraft;
    let controller = kraft.process_roles.iter().any(|r| r == "controller");
    if !dynamic {
        anyhow::ensure!(
            !controller || !kraft.voters.is_empty() || kraft.bootstrap_servers.is_empty(),
            "controller.quorum.voters is not set on this controller: give --standalone, --initial-controllers or --no-initial-controllers"
        );
        return Ok(Vec::new());
    }
    anyhow::ensure!(
        controller,
        "--standalone, --initial-controllers and --no-initial-controllers are for controllers (process.roles has controller)"
    );
    anyhow::ensure!(
        kraft.voters.is_empty(),
        "--standalone, --initial-controllers and --no-initial-controllers are for a dynamic quorum: set controller.quorum.bootstrap.servers, not controller.quorum.voters"
    );
    let Some(listener) = config.controller_listener()? else {
        anyhow::bail!("no listener named in controller.listener.names");
    };
    let kraft_versions = (0, fjord_metadata::log::KRAFT_VERSION_DYNAMIC);
    let voter = |id: i32, directory_id, host: String, port| VoterEntry {
        id,
        directory_id,
        endpoints: vec![VoterEndpoint {
            name: listener.name.clone(),
            host,
            port,
        }],
        kraft_version_min: kraft_versions.0,
        kraft_version_max: kraft_versions.1,
    };
    if args.standalone {
        // Where the other nodes reach it: its advertised CONTROLLER
        // listener if one is set, else the one it binds.
        let (host, port) = config
            .named_advertised
            .iter()
            .find(|a| a.name == listener.name)
            .map_or((listener.bind_host.clone(), listener.bind_port), |a| {
                (a.host.clone(), a.port)
            });
        anyhow::ensure!(
            host.parse::<std::net::IpAddr>()
                .map_or(true, |ip| !ip.is_unspecified()),
            "--standalone: the {} listener binds {host}, which no other node can reach: set its address in advertised.listeners",
            listener.name
        );
        return Ok(vec![voter(
            config.node_id.0,
            uuid::Uuid::new_v4(),
            host,
            port,
        )]);
    }
    let Some(list) = &args.initial_controllers else {
        return Ok(Vec::new()); // --no-initial-controllers
    };
    let controllers = fjord_broker::kraft::parse_initial_controllers(list)?;
    anyhow::ensure!(
        controllers.iter().any(|c| c.id == config.node_id),
        "--initial-controllers does not name this node (node.id {})",
        config.node_id.0
    );
    Ok(controllers
        .into_iter()
        .map(|c| voter(c.id.0, c.directory_id, c.host, c.port))
        .collect())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The tools print results on stdout and one-line errors on stderr: only
    // warnings are logged unless FJORD_LOG says otherwise.
    let default_level = match cli.command {
        Command::Tools(_) | Command::Completions { .. } => {
            // Output piped into `head` ends quietly, as with other Unix
            // tools, rather than in a panic of println! (Rust ignores SIGPIPE).
            // SAFETY: restoring a signal's default disposition, before any
            // thread is started.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            }
            "warn"
        }
        _ => "info",
    };
    fjord::observe::init_logging(cli.log_format, default_level);
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Format(args) => format(args),
        Command::Bench(cmd) => bench(cmd),
        Command::Tools(cmd) => fjord::cli::run(cmd),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "fjord", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, and an exit code a script can rely on (cli::exit).
            eprintln!("fjord: {}", fjord::cli::one_line(&e));
            ExitCode::from(fjord::cli::exit_code(&e))
        }
    }
}

fn build_config(args: &ServeArgs) -> anyhow::Result<BrokerConfig> {
    let mut config = BrokerConfig::default();
    if let Some(path) = &args.config {
        config.load_file(path)?;
    }
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--set expects NAME=VALUE, got '{kv}'"))?;
        config.set(k.trim(), v)?;
    }
    if let Some(l) = &args.listen {
        config.set("listeners", l)?;
    }
    if let Some(a) = &args.advertised_listener {
        config.set("advertised.listeners", a)?;
    }
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    let advertised_given = args.advertised_listener.is_some()
        || args
            .set
            .iter()
            .any(|s| s.starts_with("advertised.listeners"));
    config.finish(advertised_given)?;
    Ok(config)
}

fn bench(cmd: BenchCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fjord-bench")
        .build()?;
    runtime.block_on(async move {
        let stop = Arc::new(AtomicBool::new(false));
        let on_signal = stop.clone();
        // Ctrl-C ends the run early; the summary covers what was done.
        tokio::spawn(async move {
            shutdown_signal().await;
            on_signal.store(true, Ordering::Relaxed);
        });
        let summary = cmd.run(stop).await?;
        cmd.print(&summary)
    })
}

/// How often recovery points are persisted: a crash rescans at most this much.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Each partition keeps its active segment open: raise the soft limit on open
/// files to the hard limit, as Kafka's packaging asks operators to.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("could not raise the open-files limit");
            }
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = build_config(&args)?;
    let (no_effect, not_kafka) = config.start_report();
    if let Some(names) = no_effect {
        tracing::info!("Kafka configs accepted, no effect in Fjord: {names}");
    }
    if let Some(names) = not_kafka {
        tracing::warn!("not Kafka 4.3.1 broker configs, ignored (as Kafka ignores them): {names}");
    }
    // Key stores, trust stores and JAAS lines are read and checked now,
    // so that a mistake stops the start with the setting's name.
    let mut listeners = Vec::new();
    // A controller-only node (process.roles=controller) serves the quorum
    // and the controller APIs on its CONTROLLER listener only, as Kafka's.
    let broker_role = !config.kraft.is_cluster() || config.kraft.has_role("broker");
    let client_listeners = if broker_role {
        config.client_listeners()?
    } else {
        Vec::new()
    };
    for l in client_listeners {
        let security = fjord_broker::security::ListenerSecurity::build(&config.security, &l)?;
        listeners.push((l, Arc::new(security)));
    }
    raise_open_files_limit();
    // A panic on a thread the node needs (a replica fetcher, the heartbeat,
    // the quorum, a flusher) halts rather than leaving a node that still
    // leads partitions but no longer replicates or heartbeats.
    fjord_broker::fatal::halt_on_node_thread_panic(Arc::new(fjord_broker::fatal::halt_process));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("fjord")
        .build()?;
    runtime.block_on(async move {
        let listen = config.listen;
        let data_dir = config.data_dir.clone();
        let retention_every = std::time::Duration::from_millis(config.retention_check_interval_ms);
        let started = std::time::Instant::now();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // Up before the broker opens, so /health answers during recovery.
        let health = fjord_broker::metrics::Health::new();
        let metrics = match args.metrics_listen {
            Some(at) => {
                Some(fjord::observe::start_metrics(at, health.clone(), stop_rx.clone()).await?)
            }
            None => None,
        };
        let broker = tokio::task::spawn_blocking(move || Broker::open_deferred(config)).await??;
        // Without a listener nobody can read the per-request counters: skip them.
        broker.metrics.set_enabled(metrics.is_some());
        health.set_broker(broker.clone());
        if broker.config.kraft.is_cluster() && broker_role {
            // As a Kafka broker: clients are let in once the active
            // controller has registered and unfenced this broker, so the
            // first Metadata they get lists it. Open before, its Metadata
            // would name no broker and no controller, and a client (an
            // admin client waiting for the controller) could wait for good.
            tokio::select! {
                _ = wait_unfenced(&broker) => {}
                _ = shutdown_signal() => {
                    tracing::info!("shutting down before this broker was unfenced");
                    tokio::task::spawn_blocking(move || broker.close()).await?;
                    return Ok(());
                }
            }
        }
        let mut bound = Vec::new();
        for (i, (l, security)) in listeners.into_iter().enumerate() {
            // The first client listener is the one `listen` names.
            let socket = if i == 0 {
                tokio::net::TcpListener::bind(listen).await
            } else {
                tokio::net::TcpListener::bind((l.bind_host.as_str(), l.bind_port)).await
            };
            let socket = socket.map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {}:{} ({}): {e}",
                    l.bind_host,
                    l.bind_port,
                    l.name
                )
            })?;
            tracing::info!(
                listener = %l.name,
                protocol = l.protocol.name(),
                addr = %socket.local_addr().map_or_else(|_| "?".to_string(), |a| a.to_string()),
                advertised = %format!("{}:{}", l.advertised_host, l.advertised_port),
                "listening"
            );
            bound.push((socket, security));
        }
        if broker_role {
            tracing::info!(
                %listen,
                data_dir = %data_dir.display(),
                topics = broker.topics().len(),
                startup_ms = started.elapsed().as_millis() as u64,
                "fjord is serving"
            );
        } else {
            tracing::info!(
                data_dir = %data_dir.display(),
                startup_ms = started.elapsed().as_millis() as u64,
                "fjord is serving as a controller (process.roles=controller)"
            );
        }
        // The group coordinator comes up in the background (a new node creates
        // `__consumer_offsets` now rather than on the first group request, so
        // that ListGroups right after start finds it ready); group requests
        // answer COORDINATOR_NOT_AVAILABLE or COORDINATOR_LOAD_IN_PROGRESS
        // until their shard is loaded.
        if broker_role {
            broker.groups.start_loading();
        }
        health.set_serving(true);
        // The transaction coordinator of a node that has served transactions
        // loads now too, so that prepared transactions get their markers and
        // open ones their timeout without waiting for a client.
        broker.txns.set_runtime(tokio::runtime::Handle::current());
        if broker_role && broker.topic(fjord_broker::txns::TXN_STATE_TOPIC).is_some() {
            broker.txns.start_loading();
        }
        let retention_broker = broker.clone();
        let mut retention_stop = stop_rx.clone();
        let retention = tokio::spawn(async move {
            let mut retention_tick = tokio::time::interval(retention_every);
            let mut checkpoint_tick = tokio::time::interval(CHECKPOINT_EVERY);
            retention_tick.tick().await;
            loop {
                let b = retention_broker.clone();
                tokio::select! {
                    _ = retention_tick.tick() => {
                        let _ = tokio::task::spawn_blocking(move || b.apply_retention()).await;
                    }
                    _ = checkpoint_tick.tick() => {
                        let _ = tokio::task::spawn_blocking(move || b.checkpoint()).await;
                    }
                    _ = retention_stop.changed() => break,
                }
            }
        });
        let servers: Vec<_> = bound
            .into_iter()
            .map(|(socket, security)| {
                tokio::spawn(fjord_broker::server::serve_listener(
                    broker.clone(),
                    socket,
                    security,
                    stop_rx.clone(),
                ))
            })
            .collect();
        shutdown_signal().await;
        tracing::info!("shutting down");
        health.set_serving(false);
        let _ = stop_tx.send(true);
        for server in servers {
            let _ = server.await;
        }
        if let Some(m) = metrics {
            let _ = m.await;
        }
        let _ = retention.await;
        tokio::task::spawn_blocking(move || broker.close()).await?;
        tracing::info!("stopped cleanly");
        Ok(())
    })
}

/// Until the metadata image holds this broker's registration (this
/// process's, not the one before a restart) unfenced.
async fn wait_unfenced(broker: &Broker) {
    let since = std::time::Instant::now();
    let mut said = false;
    loop {
        if broker.is_registered_unfenced() {
            return;
        }
        if !said && since.elapsed() >= std::time::Duration::from_secs(5) {
            tracing::info!("waiting for the active controller to register and unfence this broker");
            said = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
