//! The `estate-gateway` command line: `run`, `demo`, `check-config`, `schema`, `simulate`,
//! `report`.
//!
//! Exit codes: 0 success; 1 a runtime failure; 2 a configuration or usage error (every
//! configuration error is printed, each naming the file, the key and what would be valid).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use estate_gateway::config::{self, Config, LogFormat};
use estate_gateway::core::rules::{Clear, ResponseClass, Trigger};
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
        /// Journal and spool here (default: a new temp dir, printed on start).
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
        #[arg(long)]
        publish: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Table,
    Json,
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config, verbose } => match config::load(&config) {
            Ok(cfg) => {
                print!("{}", summary(&cfg, verbose));
                ExitCode::SUCCESS
            }
            Err(errs) => {
                eprint!("{errs}");
                ExitCode::from(2)
            }
        },
        Command::Schema { json } => {
            if json {
                match serde_json::to_string_pretty(&estate_gateway::schema::measurements()) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", estate_gateway::schema::render_table());
            }
            ExitCode::SUCCESS
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
        } => report(ReportArgs {
            config,
            site,
            period,
            from,
            to,
            format,
            publish,
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
        Command::Run { config } => {
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(errs) => {
                    eprint!("{errs}");
                    return ExitCode::from(2);
                }
            };
            init_logging(&cfg);
            match run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "estate-gateway failed.");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn simulate(
    config: &std::path::Path,
    seed: u64,
    script: Option<&std::path::Path>,
    tick: std::time::Duration,
) -> ExitCode {
    use estate_gateway::sim::{load_script, SimOptions, Simulator};
    let cfg = match config::load(config) {
        Ok(c) => c,
        Err(errs) => {
            eprint!("{errs}");
            return ExitCode::from(2);
        }
    };
    let script = match script.map(load_script).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(errs) => {
            eprintln!("{errs}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let opts = SimOptions {
            seed,
            tick: Some(tick),
            script,
        };
        let sim = match Simulator::start_with(&cfg, opts).await {
            Ok(s) => s,
            Err(e @ estate_gateway::sim::SimError::Script(_)) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        print!("{}", sim.summary());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        wait_for_signal().await;
        tracing::info!("Signal received; the simulator stops.");
        sim.shutdown().await;
        ExitCode::SUCCESS
    })
}

fn demo(opts: estate_gateway::demo::DemoOptions) -> ExitCode {
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
        eprintln!("error: --speed must be a positive number, e.g. 1, 10 or 4320");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let shutdown = CancellationToken::new();
        let demo = match estate_gateway::demo::Demo::start(opts, shutdown.clone()).await {
            Ok(d) => d,
            Err(e) => {
                shutdown.cancel();
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        };
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
        ExitCode::SUCCESS
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
}

/// `report`: exit 2 for a bad configuration or arguments, 1 when the journal cannot be read or
/// the store refuses the points.
fn report(a: ReportArgs) -> ExitCode {
    use estate_gateway::report::{self, format::Report, Period};
    let usage = |msg: String| {
        eprintln!("error: {msg}");
        ExitCode::from(2)
    };
    let cfg = match config::load(&a.config) {
        Ok(c) => c,
        Err(errs) => {
            eprint!("{errs}");
            return ExitCode::from(2);
        }
    };
    let site = a.site.unwrap_or_else(|| cfg.gateway.site.clone());
    let mut sites: Vec<&str> = cfg
        .inventory
        .devices()
        .iter()
        .map(|d| d.site.as_str())
        .collect();
    sites.sort_unstable();
    sites.dedup();
    if site.is_empty() {
        return usage(format!(
            "no --site given and gateway.site is not set in {}; pass --site (sites with devices: {})",
            a.config.display(),
            sites.join(", ")
        ));
    }
    if site != cfg.gateway.site && !sites.contains(&site.as_str()) {
        return usage(format!(
            "site `{site}` has no devices in {}; sites with devices: {}",
            a.config.display(),
            sites.join(", ")
        ));
    }
    let (season, _) = cfg.heating.for_site(&site);
    let period = match (&a.period, &a.from, &a.to) {
        (Some(p), _, _) => Period::parse(p, season),
        (None, Some(f), Some(t)) => Period::between(f, t, &season.tz),
        _ => return usage("give --period, or --from and --to".into()),
    };
    let period = match period {
        Ok(p) => p,
        Err(e) => return usage(e.to_string()),
    };
    let store = match (a.publish, &cfg.store) {
        (true, None) => {
            return usage(format!(
                "--publish: no [store] in {}; add a [store] section (url, org, bucket and a token via token_file or token_env), or leave out --publish",
                a.config.display()
            ))
        }
        (true, Some(s)) => Some(s.clone()),
        (false, _) => None,
    };
    let now = estate_gateway::clock::system_now_ms();
    if period.from_ms >= now {
        return usage(format!(
            "the period {} starts at {}, which is in the future; nothing to report yet",
            period.label,
            report::format::rfc3339(period.from_ms, &season.tz)
        ));
    }
    let path = cfg
        .gateway
        .data_dir
        .join(estate_gateway::sink::journal::FILE_NAME);
    let settings = report::FigureSettings::for_site(&cfg.heating, cfg.assessment.offline, &site);
    let (figures, card) = match report::score(
        &path,
        &site,
        &period,
        now,
        &settings,
        &cfg.assessment.kpis,
        &cfg.assessment.grades,
    ) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
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
    };
    match a.format {
        ReportFormat::Table => print!("{}", r.table()),
        ReportFormat::Csv => print!("{}", r.csv()),
        ReportFormat::Json => match serde_json::to_string_pretty(&r.json()) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
    }
    if let Some(store) = store {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        match rt.block_on(report::publish::publish(&store, &site, &period, &card)) {
            Ok(n) => eprintln!(
                "published {n} assessment points for {site} {} to {}",
                period.label, store.url
            ),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.gateway.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        // A closed stderr (a log pipe gone) must not make tracing panic inside the gateway.
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    match cfg.gateway.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn run(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("Signal received.");
            signals.cancel();
        });
        estate_gateway::run::run(cfg, shutdown).await.map(|_| ())
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

/// The one-screen summary `check-config` prints.
fn summary(cfg: &Config, verbose: bool) -> String {
    let mut out = format!("{}: OK\n", cfg.file.display());
    let mut sites: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for d in cfg.inventory.devices() {
        *sites
            .entry(d.site.as_str())
            .or_default()
            .entry(d.category.as_str())
            .or_default() += 1;
    }
    out.push_str(&format!(
        "devices: {} from {}\n",
        cfg.inventory.len(),
        if cfg.inventory_sources.is_empty() {
            "nowhere (no [[devices]] and no devices_csv)".to_owned()
        } else {
            cfg.inventory_sources.join(", ")
        }
    ));
    for (site, cats) in &sites {
        let total: usize = cats.values().sum();
        out.push_str(&format!("  site {site}: {total}\n"));
        for (cat, n) in cats {
            let label = cfg
                .profiles
                .get(*cat)
                .map(|p| p.label.as_str())
                .unwrap_or("");
            out.push_str(&format!("    {cat:<16} {n:>6}  {label}\n"));
        }
    }
    out.push_str(&format!(
        "profiles: {}\n",
        cfg.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
    ));
    out.push_str("sources:\n");
    match &cfg.mqtt {
        Some(m) => out.push_str(&format!(
            "  mqtt {} as `{}`{}{}\n    telemetry {}\n    status    {}\n",
            m.url,
            m.client_id,
            if m.tls { ", TLS" } else { "" },
            match &m.username {
                Some(u) => format!(
                    ", user `{u}`, password {}",
                    if m.password.is_empty() {
                        "not set"
                    } else {
                        "set"
                    }
                ),
                None => String::new(),
            },
            m.telemetry_topic,
            m.status_topic
        )),
        None => out.push_str("  none ([mqtt] not configured)\n"),
    }
    if !cfg.modbus.endpoints.is_empty() {
        out.push_str("  modbus:\n");
        for (i, e) in cfg.modbus.endpoints.iter().enumerate() {
            let n = cfg
                .inventory
                .devices()
                .iter()
                .filter(|d| d.modbus.as_ref().is_some_and(|b| b.endpoint == i))
                .count();
            out.push_str(&format!(
                "    {} {} ({n} devices, timeout {})\n",
                e.name,
                e.kind,
                humantime::format_duration(e.timeout)
            ));
        }
    }
    match &cfg.store {
        Some(s) => out.push_str(&format!(
            "store: {} org `{}` bucket `{}`, token {}, batches of {} lines or {}, gzip {}\n",
            s.url,
            s.org,
            s.bucket,
            if s.token.is_empty() { "not set" } else { "set" },
            s.batch_lines,
            humantime::format_duration(s.batch_interval),
            if s.gzip { "on" } else { "off" }
        )),
        None => out.push_str("store: none ([store] not configured)\n"),
    }
    out.push_str(&format!("data_dir: {}\n", cfg.gateway.data_dir.display()));
    let rules: usize = cfg.profiles.values().map(|p| p.rules.alarms.len()).sum();
    let mut classes: Vec<&ResponseClass> = cfg.alarms.classes.values().collect();
    classes.sort_by(|a, b| a.name.cmp(&b.name));
    out.push_str(&format!(
        "alarms: {rules} rules in {} profiles; classes {}; webhook {}\n",
        cfg.profiles.len(),
        classes
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        match &cfg.alarms.webhook {
            Some(w) => format!("{} ({:?})", w.redacted_url(), w.format).to_lowercase(),
            None => "none".into(),
        }
    ));
    let season = &cfg.heating.season;
    out.push_str(&format!(
        "heating: season {} → {} ({}), min {} °C; planned maintenance: {} window{}\n",
        season.start,
        season.end,
        season.tz_name,
        cfg.heating.min_indoor_c,
        cfg.maintenance.len(),
        if cfg.maintenance.len() == 1 { "" } else { "s" }
    ));
    if verbose {
        out.push_str("devices:\n");
        for d in cfg.inventory.devices() {
            out.push_str(&format!(
                "  {}/{} {} [{}] {} every {}, offline after {}{}\n",
                d.site,
                d.id,
                d.name,
                d.category,
                d.building,
                humantime::format_duration(d.interval),
                humantime::format_duration(d.heartbeat_timeout),
                match &d.modbus {
                    Some(b) => format!(
                        ", modbus {} unit {} model {}",
                        cfg.modbus.endpoints[b.endpoint].name, b.unit, b.model.name
                    ),
                    None => String::new(),
                }
            ));
        }
        out.push_str(&rules_summary(cfg, &classes));
        if !cfg.models.is_empty() {
            out.push_str("poll plans:\n");
            for m in cfg.models.values() {
                out.push_str(&format!(
                    "  {} ({}): {} requests for {} registers\n",
                    m.name,
                    m.category,
                    m.plan.len(),
                    m.registers.len()
                ));
                for line in estate_gateway::source::modbus::plan::describe(&m.registers, &m.plan) {
                    out.push_str(&format!("    {line}\n"));
                }
            }
        }
    }
    out
}

/// `check-config --verbose`: each profile's state and alarm rules, the response classes with
/// their targets, and the planned maintenance windows.
fn rules_summary(cfg: &Config, classes: &[&ResponseClass]) -> String {
    let ms = |ms: i64| humantime::format_duration(std::time::Duration::from_millis(ms as u64));
    let mut out = String::from("rules:\n");
    for p in cfg.profiles.values() {
        let r = &p.rules;
        out.push_str(&format!("  {} {}\n", p.category, p.label));
        for (what, list) in [
            ("fault", &r.state.fault),
            ("maintenance", &r.state.maintenance),
        ] {
            if !list.is_empty() {
                let conds: Vec<String> = list.iter().map(|c| c.to_string()).collect();
                out.push_str(&format!("    {what} when any: {}\n", conds.join("; ")));
            }
        }
        for a in &r.alarms {
            let (when, clear) = match &a.trigger {
                Trigger::Offline => ("offline".to_owned(), String::new()),
                Trigger::Condition { when, clear } => (
                    when.to_string(),
                    match clear {
                        Clear::Immediate => String::new(),
                        Clear::Bound(b) => format!(", clears at {}", b),
                    },
                ),
            };
            out.push_str(&format!(
                "    alarm {:<16} {when}: {}, class {}, delay {}{clear}{}\n",
                a.name,
                a.severity.as_str(),
                a.class,
                ms(a.delay_ms),
                match &a.on_site {
                    Some(c) => format!(", on site when {c}"),
                    None => String::new(),
                }
            ));
        }
    }
    let overridden: Vec<String> = cfg
        .inventory
        .devices()
        .iter()
        .filter(|d| !std::sync::Arc::ptr_eq(&d.rules, &d.profile.rules))
        .map(|d| format!("{}/{}", d.site, d.id))
        .collect();
    if !overridden.is_empty() {
        out.push_str(&format!(
            "  devices with their own rule overrides: {}\n",
            overridden.join(", ")
        ));
    }
    out.push_str("classes:\n");
    for c in classes {
        out.push_str(&format!(
            "  {:<12} acknowledge within {}, {} ({})\n",
            c.name,
            ms(c.ack_target_ms),
            c.on_site_target_ms
                .map(|t| format!("on site within {}", ms(t)))
                .unwrap_or_else(|| "no on-site target".into()),
            c.source
        ));
    }
    out.push_str(&format!(
        "  cleared alarms kept for {}\n",
        humantime::format_duration(cfg.alarms.retain_cleared)
    ));
    if !cfg.maintenance.is_empty() {
        out.push_str("planned maintenance:\n");
        let tz = &cfg.heating.season.tz;
        let at = |ms: i64| {
            jiff::Timestamp::from_millisecond(ms)
                .map(|t| {
                    t.to_zoned(tz.clone())
                        .strftime("%Y-%m-%d %H:%M %:z")
                        .to_string()
                })
                .unwrap_or_else(|_| ms.to_string())
        };
        for m in &cfg.maintenance {
            let d = cfg.inventory.get(m.device);
            out.push_str(&format!(
                "  {}/{} {} {} → {}: {}\n",
                d.site,
                d.id,
                d.name,
                at(m.start_ms),
                at(m.end_ms),
                m.reason
            ));
        }
    }
    out
}
