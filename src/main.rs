//! The `estate-gateway` command line: `run`, `demo`, `check-config`, `doctor`, `schema`,
//! `simulate`, `report`.
//!
//! Exit codes: 0 success; 1 a runtime failure; 2 a configuration or usage error (every
//! configuration error is printed, each naming the file, the key and what would be valid).
//! `main` only maps `try_main`'s result to them: a `Usage` error is a 2, anything else a 1.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;
use clap::{Parser, Subcommand};
use estate_gateway::config::{self, Config, LogFormat};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "estate-gateway",
    version,
    about = "On-site gateway for residential estates: MQTT telemetry in, InfluxDB v2 out, facility state and graded figures."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway until SIGINT/SIGTERM, then flush what is queued.
    Run {
        /// The gateway's TOML file.
        #[arg(short, long, default_value = "configs/gateway.toml")]
        config: PathBuf,
        /// Also write every fact the engine takes (readings, statuses, acknowledgments,
        /// on-site reports, maintenance windows) to this tape, one JSON object a line
        /// (appended; `estate-gateway replay` reads it).
        #[arg(long)]
        record: Option<PathBuf>,
    },
    /// Feed a tape of facts (README "Replay") through the engine as fast as it goes and write
    /// the journal in --data-dir; then `report` on a config with that data_dir gives the
    /// figures. The audit tool: the same facts always give the same figures.
    Replay {
        /// The gateway's TOML file (inventory, profiles, targets; its data_dir is not used).
        #[arg(short, long, default_value = "configs/gateway.toml")]
        config: PathBuf,
        /// The tape: one JSON fact a line (`run --record` writes one), or a gateway's input log
        /// directory (`<data_dir>/log`).
        #[arg(long)]
        input: PathBuf,
        /// Where the journal is written (created if missing; an existing journal is
        /// continued, as after a restart).
        #[arg(long)]
        data_dir: PathBuf,
        /// Conclude every device up to this moment at the end (RFC 3339, or unix ms;
        /// default: the last fact's time).
        #[arg(long)]
        until: Option<String>,
    },
    /// The demo estate in one process: an embedded MQTT broker, the simulated 锦绣花园 (Modbus
    /// and MQTT devices, seeded faults, operators who acknowledge), the gateway and its
    /// dashboard, until SIGINT/SIGTERM.
    Demo {
        /// Where the API and the dashboard listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: std::net::SocketAddr,
        /// Where the embedded MQTT broker listens (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        mqtt: std::net::SocketAddr,
        /// Seed of the values, the fault schedule and the operators: the same seed, the same demo.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Simulated time runs this many times faster (e.g. 4320: a month in ten minutes).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// The journal here (default: a new temp dir, printed on start).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Also forward to this store (InfluxDB v2 write API; token from ESTATE_GW_STORE_TOKEN).
        #[arg(long)]
        store_url: Option<String>,
    },
    /// Validate a configuration: print every error (exit 2) or a summary (exit 0).
    CheckConfig {
        #[arg(short, long, default_value = "configs/gateway.toml")]
        config: PathBuf,
        /// Also list every device.
        #[arg(long)]
        verbose: bool,
    },
    /// Check what a configuration connects to — the broker (connect, subscribe), the store
    /// (write one `gateway_probe` point), each Modbus device (one read) — and print a table of
    /// what works and what to fix. Exit 0 when everything works, 1 otherwise.
    Doctor {
        #[arg(short, long, default_value = "configs/gateway.toml")]
        config: PathBuf,
    },
    /// Print the store schema (measurements, tags, fields).
    Schema {
        /// As JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Serve the Modbus devices of a configuration as simulated slaves (moving values,
    /// scripted faults) until SIGINT/SIGTERM: the peer for demos, tests and benchmarks.
    Simulate {
        #[arg(short, long, default_value = "configs/demo.toml")]
        config: PathBuf,
        /// Seed of the simulated values: the same seed gives the same values.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Faults scheduled by simulated time: a TOML file of `[[fault]]` entries
        /// (device, at, for, kind = value | no_response | exception | offline).
        #[arg(long)]
        script: Option<PathBuf>,
        /// How often values move (simulated time advances with real time).
        #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
        tick: std::time::Duration,
    },
    /// The fleet hub (README "Fleet"): subscribe to every estate's summaries, scorecards and
    /// alarms on the central broker, keep them in its SQLite file and serve /api/estates,
    /// /api/alarms and /api/league, until SIGINT/SIGTERM; `hub league` prints the league.
    Hub {
        /// The hub's TOML file.
        #[arg(short, long, default_value = "configs/hub.toml", global = true)]
        config: PathBuf,
        #[command(subcommand)]
        action: Option<HubAction>,
    },
    /// Print a site's graded figures and scorecard for a period, from the journal (works while
    /// the gateway runs); with --publish also write `assessment` points to the store.
    #[command(group(clap::ArgGroup::new("when").required(true).args(["period", "from"])))]
    Report {
        #[arg(short, long, default_value = "configs/gateway.toml")]
        config: PathBuf,
        /// The site (default: gateway.site).
        #[arg(long)]
        site: Option<String>,
        /// 2026-11 (a month), 2026Q4 (a quarter), 2026 (a calendar year) or heating-2026
        /// (the heating season that starts in 2026), in the site's time zone.
        #[arg(long)]
        period: Option<String>,
        /// Start: RFC 3339 with offset (2026-11-01T00:00:00+08:00) or a date (local midnight).
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// End (exclusive), like --from.
        #[arg(long, requires = "from")]
        to: Option<String>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// Also write the scorecard as `assessment` points to the configured [store].
        #[arg(long, conflicts_with = "device")]
        publish: bool,
        /// One device's figures instead of the site's: intactness, time in each state, faults,
        /// alarms, MTTR and its alarm list (--site picks among devices with the same id).
        #[arg(long)]
        device: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum HubAction {
    /// Print the league (红黑榜) of a period from the hub's file: rank, total, grade, each
    /// KPI, change against the previous period, red and black lists.
    League {
        /// 2026-11 (a month), 2026Q4 (a quarter), heating-2026 or 2026-heating, 2026 (a year).
        #[arg(long)]
        period: String,
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Table,
    Json,
    Csv,
}

fn main() -> ExitCode {
    match try_main(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => match err.downcast_ref::<Usage>() {
            Some(usage) => {
                eprint!("{usage}");
                ExitCode::from(2)
            }
            None => {
                eprintln!("error: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// A configuration or usage error (exit 2), holding exactly what is printed on stderr. Any
/// other error is a runtime failure (exit 1), printed as `error: ` and its chain.
#[derive(Debug)]
struct Usage(String);

impl Usage {
    /// `error: {msg}`: a bad argument, or one that does not fit the configuration.
    fn message(msg: impl fmt::Display) -> anyhow::Error {
        Usage(format!("error: {msg}\n")).into()
    }

    /// An error that explains itself (every configuration error, a fault script's errors).
    fn explained(text: impl fmt::Display) -> anyhow::Error {
        Usage(format!("{text}\n")).into()
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn try_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig { config, verbose } => {
            let cfg = load(&config)?;
            print!("{}", config::summary(&cfg, verbose));
            Ok(())
        }
        Command::Doctor { config } => {
            let cfg = load(&config)?;
            let now_ms = estate_gateway::clock::system_now_ms();
            let checks = runtime(true)?.block_on(estate_gateway::doctor::run(&cfg, now_ms));
            print!("{}", estate_gateway::doctor::render(&checks));
            use std::io::Write;
            let _ = std::io::stdout().flush();
            if estate_gateway::doctor::all_ok(&checks) {
                Ok(())
            } else {
                let failed = checks.iter().filter(|c| c.result.is_err()).count();
                Err(anyhow!(
                    "{failed} of {} checks failed; each `fix:` line above says what to do",
                    checks.len()
                ))
            }
        }
        Command::Schema { json } => {
            if json {
                let s = serde_json::to_string_pretty(&estate_gateway::schema::measurements())
                    .map_err(|e| anyhow!("{e}"))?;
                println!("{s}");
            } else {
                print!("{}", estate_gateway::schema::render_table());
            }
            Ok(())
        }
        Command::Simulate {
            config,
            seed,
            script,
            tick,
        } => simulate(&config, seed, script.as_deref(), tick),
        Command::Report {
            config,
            site,
            period,
            from,
            to,
            format,
            publish,
            device,
        } => report(ReportArgs {
            config,
            site,
            period,
            from,
            to,
            format,
            publish,
            device,
        }),
        Command::Demo {
            http,
            mqtt,
            seed,
            speed,
            data_dir,
            store_url,
        } => demo(estate_gateway::demo::DemoOptions {
            http,
            mqtt,
            seed,
            speed,
            data_dir,
            store_url,
        }),
        Command::Replay {
            config,
            input,
            data_dir,
            until,
        } => replay(&config, &input, &data_dir, until.as_deref()),
        Command::Hub { config, action } => hub(&config, action),
        Command::Run { config, record } => {
            let mut cfg = load(&config)?;
            cfg.record = record;
            init_logging(&cfg);
            raise_fd_limit();
            run(cfg, &config).inspect_err(|e| {
                tracing::error!(error = format!("{e:#}"), "estate-gateway failed.");
            })
        }
    }
}

/// Raises the soft file-descriptor limit to the hard one (often 1024 → 524288 under systemd):
/// every HTTP, MQTT, Modbus and store connection costs one, and a flood of idle HTTP clients
/// must not leave none for the rest (the HTTP server also caps its connections below it).
fn raise_fd_limit() {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) if now > before => {
            tracing::info!(from = before, to = now, "File-descriptor limit raised.");
        }
        Ok(now) if now < 4096 => tracing::warn!(
            limit = now,
            "The file-descriptor limit is low and the hard limit does not allow more; set LimitNOFILE=65536 in the systemd unit (README, Deployment)."
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "Cannot raise the file-descriptor limit."),
    }
}

/// Loads the configuration at `path`; every mistake in it is a usage error.
fn load(path: &Path) -> anyhow::Result<Config> {
    config::load(path).map_err(|errs| Usage(errs.to_string()).into())
}

/// The tokio runtime of a command: multi-threaded for the long-running ones, a current-thread
/// one for `report --publish`.
fn runtime(multi_thread: bool) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().map_err(|e| anyhow!("{e}"))
}

fn simulate(
    config: &Path,
    seed: u64,
    script: Option<&Path>,
    tick: std::time::Duration,
) -> anyhow::Result<()> {
    use estate_gateway::sim::{load_script, SimOptions, Simulator};
    let cfg = load(config)?;
    let script = script
        .map(load_script)
        .transpose()
        .map_err(Usage::explained)?
        .unwrap_or_default();
    init_logging(&cfg);
    runtime(true)?.block_on(async {
        let opts = SimOptions {
            seed,
            tick: Some(tick),
            script,
        };
        let sim = Simulator::start_with(&cfg, opts)
            .await
            .map_err(|e| match e {
                estate_gateway::sim::SimError::Script(_) => Usage::explained(e),
                e => anyhow!("{e}"),
            })?;
        print!("{}", sim.summary());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        wait_for_signal().await;
        tracing::info!("Signal received; the simulator stops.");
        sim.shutdown().await;
        Ok(())
    })
}

fn demo(opts: estate_gateway::demo::DemoOptions) -> anyhow::Result<()> {
    // rumqttd logs a closed client connection (our readiness probe, every client at shutdown)
    // as an error: silenced unless RUST_LOG asks for it.
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=off"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .log_internal_errors(false)
        .with_writer(std::io::stderr)
        .init();
    if !(opts.speed.is_finite() && opts.speed > 0.0) {
        return Err(Usage::message(
            "--speed must be a positive number, e.g. 1, 10 or 4320",
        ));
    }
    runtime(true)?.block_on(async {
        let shutdown = CancellationToken::new();
        let demo = estate_gateway::demo::Demo::start(opts, shutdown.clone())
            .await
            .inspect_err(|_| shutdown.cancel())?;
        print!("{}", demo.banner);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("Signal received; the demo stops.");
            signals.cancel();
        });
        demo.wait().await;
        Ok(())
    })
}

struct ReportArgs {
    config: PathBuf,
    site: Option<String>,
    period: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: ReportFormat,
    publish: bool,
    device: Option<String>,
}

/// `report`: exit 2 for a bad configuration or arguments, 1 when the journal cannot be read or
/// the store refuses the points.
fn report(a: ReportArgs) -> anyhow::Result<()> {
    use estate_gateway::report::{self, format::Report, Period};
    let cfg = load(&a.config)?;
    let site = match &a.device {
        Some(id) => report::device::resolve_site(
            cfg.inventory.devices(),
            &cfg.gateway.site,
            id,
            a.site.as_deref(),
        )
        .map_err(Usage::message)?,
        None => a.site.unwrap_or_else(|| cfg.gateway.site.clone()),
    };
    let sites = cfg.inventory.sites();
    if site.is_empty() {
        return Err(Usage::message(format!(
            "no --site given and gateway.site is not set in {}; pass --site (sites with devices: {})",
            a.config.display(),
            sites.join(", ")
        )));
    }
    if site != cfg.gateway.site && !sites.contains(&site.as_str()) {
        return Err(Usage::message(format!(
            "site `{site}` has no devices in {}; sites with devices: {}",
            a.config.display(),
            sites.join(", ")
        )));
    }
    let (season, _) = cfg.heating.for_site(&site);
    let period = match (&a.period, &a.from, &a.to) {
        (Some(p), _, _) => Period::parse(p, season),
        (None, Some(f), Some(t)) => Period::between(f, t, &season.tz),
        _ => return Err(Usage::message("give --period, or --from and --to")),
    }
    .map_err(Usage::message)?;
    let store = match (a.publish, &cfg.store, &cfg.mqtt) {
        (true, None, None) => {
            return Err(Usage::message(format!(
                "--publish: neither [store] nor [mqtt] in {}; add a [store] section (url, org, bucket and a token via token_file or token_env) or an [mqtt] section (the scorecard goes to mqtt.assessment_topic), or leave out --publish",
                a.config.display()
            )))
        }
        (true, s, _) => s.clone(),
        (false, _, _) => None,
    };
    // A --from/--to label holds `/`: not a topic segment; only named periods go to MQTT.
    let mqtt = if a.publish && a.period.is_some() {
        cfg.mqtt.clone()
    } else {
        None
    };
    // The CLI edge: a report's "now" is the machine's.
    let now = estate_gateway::clock::system_now_ms();
    if period.from_ms >= now {
        return Err(Usage::message(format!(
            "the period {} starts at {}, which is in the future; nothing to report yet",
            period.label,
            report::format::rfc3339(period.from_ms, &season.tz)
        )));
    }
    let path = cfg
        .gateway
        .data_dir
        .join(estate_gateway::journal::FILE_NAME);
    let settings = report::FigureSettings::for_site(&cfg.heating, cfg.assessment.offline, &site);
    if let Some(id) = &a.device {
        return report_device(a.format, &cfg, &path, &site, id, &period, now, &settings);
    }
    let (figures, card, sections) = report::score_with_sections(
        &path,
        &site,
        &period,
        now,
        &settings,
        &cfg.assessment.kpis,
        &cfg.assessment.grades,
    )?;
    let labels: BTreeMap<String, String> = cfg
        .profiles
        .iter()
        .map(|(k, p)| (k.clone(), p.label.clone()))
        .collect();
    let r = Report {
        figures: &figures,
        scorecard: &card,
        period: &period,
        tz: &season.tz,
        category_labels: &labels,
        sections: &sections.list(),
    };
    match a.format {
        ReportFormat::Table => print!("{}", r.table()),
        ReportFormat::Csv => print!("{}", r.csv()),
        ReportFormat::Json => {
            let s = serde_json::to_string_pretty(&r.json()).map_err(|e| anyhow!("{e}"))?;
            println!("{s}");
        }
    }
    if let Some(store) = store {
        let n =
            runtime(false)?.block_on(report::publish::publish(&store, &site, &period, &card))?;
        eprintln!(
            "published {n} assessment points for {site} {} to {}",
            period.label, store.url
        );
    }
    if let Some(m) = mqtt {
        let topic = m.assessment_topic.render(&site, &period.label);
        let body = report::publish::assessment_json(&site, &period, &card, now);
        let summary = estate_gateway::sink::mqtt::Summary {
            topic: topic.clone(),
            payload: body.to_string().into_bytes(),
        };
        runtime(false)?.block_on(estate_gateway::sink::mqtt::publish_once(
            &m,
            summary,
            std::time::Duration::from_secs(10),
        ))?;
        eprintln!(
            "published the scorecard of {site} {} to {} ({topic}, retained)",
            period.label, m.url
        );
    }
    Ok(())
}

/// `hub` (serve until SIGINT/SIGTERM) and `hub league`.
fn hub(config: &Path, action: Option<HubAction>) -> anyhow::Result<()> {
    use estate_gateway::hub::{league, Hub};
    let settings =
        config::load_hub(config).map_err(|errs| anyhow::Error::from(Usage(errs.to_string())))?;
    let clock: std::sync::Arc<dyn estate_gateway::clock::Clock> =
        std::sync::Arc::new(estate_gateway::clock::SystemClock);
    match action {
        Some(HubAction::League { period, format }) => {
            let Some(p) = league::normalize_period(&period) else {
                return Err(Usage::message(format!(
                    "`{period}` is not a period; valid: {}",
                    league::VALID_PERIODS
                )));
            };
            let l = Hub::open(settings, clock)?.league(&p)?;
            match format {
                ReportFormat::Table => print!("{}", league::table(&l)),
                ReportFormat::Csv => print!("{}", league::csv(&l)),
                ReportFormat::Json => {
                    let s = serde_json::to_string_pretty(&l).map_err(|e| anyhow!("{e}"))?;
                    println!("{s}");
                }
            }
            Ok(())
        }
        None => {
            init_logging_with(&settings.log_level, settings.log_format);
            raise_fd_limit();
            let hub = std::sync::Arc::new(Hub::open(settings, clock)?);
            runtime(true)?.block_on(async move {
                let shutdown = CancellationToken::new();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    wait_for_signal().await;
                    stop.cancel();
                });
                estate_gateway::hub::run(hub, shutdown).await
            })
        }
    }
}

/// `report --device`: one device's figures in the chosen format.
#[allow(clippy::too_many_arguments)] // the report's arguments, as `report` resolved them
fn report_device(
    format: ReportFormat,
    cfg: &Config,
    path: &Path,
    site: &str,
    id: &str,
    period: &estate_gateway::report::Period,
    now: i64,
    settings: &estate_gateway::report::FigureSettings,
) -> anyhow::Result<()> {
    use estate_gateway::report::device;
    let journal = estate_gateway::journal::Journal::open_read_only(path)?;
    let mut f = device::device_figures(
        &journal,
        site,
        id,
        period.from_ms,
        period.to_ms,
        now,
        settings,
    )
    .map_err(|e| anyhow!("reading the journal {}: {e:#}", path.display()))?;
    if let Some(d) = cfg.inventory.lookup(site, id) {
        f = f.with_device(cfg.inventory.get(d));
    }
    let tz = &settings.season.tz;
    match format {
        ReportFormat::Table => print!("{}", device::device_table(&f, period, tz)),
        ReportFormat::Csv => print!("{}", device::device_csv(&f, period, tz)),
        ReportFormat::Json => {
            let s = serde_json::to_string_pretty(&device::device_json(&f, tz))
                .map_err(|e| anyhow!("{e}"))?;
            println!("{s}");
        }
    }
    Ok(())
}

fn init_logging(cfg: &Config) {
    init_logging_with(&cfg.gateway.log_level, cfg.gateway.log_format);
}

fn init_logging_with(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        // A closed stderr (a log pipe gone) must not make tracing panic inside the gateway.
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn replay(config: &Path, input: &Path, data_dir: &Path, until: Option<&str>) -> anyhow::Result<()> {
    let cfg = load(config)?;
    let until_ms = match until {
        None => None,
        Some(s) => Some(match s.parse::<i64>() {
            Ok(ms) => ms,
            Err(_) => s
                .parse::<jiff::Timestamp>()
                .map_err(|e| {
                    Usage::message(format!(
                        "--until {s:?}: {e}; give RFC 3339 with an offset (2026-12-01T00:00:00+08:00) or unix ms"
                    ))
                })?
                .as_millisecond(),
        }),
    };
    let started = std::time::Instant::now();
    let (summary, errors) = if input.is_dir() {
        // A gateway's input log (`data_dir/log`): the tape it keeps by itself.
        estate_gateway::replay::replay(
            &cfg,
            estate_gateway::replay::log_tape(input),
            data_dir,
            until_ms,
        )?
    } else {
        let file = std::fs::File::open(input)
            .map_err(|e| anyhow!("cannot read the tape {}: {e}", input.display()))?;
        estate_gateway::replay::replay(&cfg, std::io::BufReader::new(file), data_dir, until_ms)?
    };
    let secs = started.elapsed().as_secs_f64();
    for e in errors.iter().take(20) {
        eprintln!("{}:{}: {}", input.display(), e.line, e.message);
    }
    if errors.len() > 20 {
        eprintln!("… and {} more refused lines", errors.len() - 20);
    }
    println!(
        "replayed {} facts ({} readings) in {:.2} s ({:.0} readings/s): {} transitions, {} alarms raised, {} out of order, {} late, {} refused; every device concluded up to {}",
        summary.facts,
        summary.readings,
        secs,
        summary.readings as f64 / secs.max(1e-9),
        summary.transitions,
        summary.alarms_raised,
        summary.out_of_order,
        summary.late,
        summary.refused,
        summary.until_ms
    );
    println!("journal: {}", data_dir.join("journal.sqlite").display());
    Ok(())
}

fn run(cfg: Config, path: &Path) -> anyhow::Result<()> {
    use estate_gateway::http::reload::ReloadRequest;
    runtime(true)?.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("Signal received.");
            signals.cancel();
        });
        // SIGHUP and `POST /api/reload` ask for a reload.
        let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<ReloadRequest>(4);
        {
            let tx = reload_tx.clone();
            tokio::spawn(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let Ok(mut hup) = signal(SignalKind::hangup()) else {
                    return;
                };
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP received: reloading the configuration.");
                    if tx.send(ReloadRequest { reply: None }).await.is_err() {
                        break;
                    }
                }
            });
        }
        // systemd (`Type=notify`, README "Deployment"): READY=1 once everything runs, the
        // watchdog while the core stage ticks, RELOADING=1 around a reload, STOPPING=1 when
        // the shutdown begins.
        let notifier = estate_gateway::notify::Notifier::from_env().map(Arc::new);
        if let Some(n) = &notifier {
            let (n, stopping) = (n.clone(), shutdown.clone());
            tokio::spawn(async move {
                stopping.cancelled().await;
                n.notify_or_warn(&[estate_gateway::notify::State::Stopping]);
            });
        }
        let mut cfg = cfg;
        loop {
            // One generation of the gateway; a reload stops it and starts the next.
            let generation = shutdown.child_token();
            let running = estate_gateway::run::start_with(
                &cfg,
                generation.clone(),
                Arc::new(estate_gateway::clock::SystemClock),
                Some(reload_tx.clone()),
            )
            .await?;
            let mut watchdog = None;
            if let Some(n) = &notifier {
                use estate_gateway::notify::State;
                n.notify_or_warn(&[
                    State::Ready,
                    State::Status(format!("running: {} devices", cfg.inventory.len())),
                ]);
                if let Some(every) = estate_gateway::notify::watchdog_interval() {
                    let (n, stats) = (n.clone(), running.stats.clone());
                    watchdog = Some(tokio::spawn(async move {
                        estate_gateway::notify::watchdog(&n, every, || {
                            stats.core.ticks.load(std::sync::atomic::Ordering::Relaxed)
                        })
                        .await;
                    }));
                }
            }
            // Wait for the end, or for a valid new configuration.
            let next = loop {
                let req = tokio::select! {
                    _ = shutdown.cancelled() => break None,
                    r = reload_rx.recv() => r,
                };
                let Some(req) = req else { break None };
                match config::load(path) {
                    Err(errs) => {
                        tracing::error!(file = %path.display(), errors = %errs,
                            "Reload refused: the new configuration is invalid; the running one stays.");
                        if let Some(r) = req.reply {
                            let _ = r.send(Err(errs.to_string()));
                        }
                    }
                    Ok(mut new) => {
                        new.record = cfg.record.clone();
                        let summary = format!(
                            "{} devices ({} before)",
                            new.inventory.len(),
                            cfg.inventory.len()
                        );
                        if let Some(r) = req.reply {
                            let _ = r.send(Ok(summary.clone()));
                        }
                        tracing::info!(file = %path.display(), devices = %summary,
                            "Reloading: stopping this configuration and starting the new one (states, alarms and pending delays go on from the journal; the broker keeps the session).");
                        break Some(new);
                    }
                }
            };
            if let (Some(n), Some(_)) = (&notifier, &next) {
                n.notify_or_warn(&[estate_gateway::notify::State::Reloading]);
            }
            generation.cancel();
            running.wait().await;
            if let Some(w) = watchdog {
                w.abort();
            }
            match next {
                Some(new) => {
                    cfg = new;
                    tracing::info!("Configuration reloaded.");
                }
                None => break,
            }
        }
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
