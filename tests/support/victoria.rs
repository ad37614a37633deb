//! A real VictoriaMetrics (single-node) per test, standing in for the InfluxDB v2 store: it
//! accepts `POST /api/v2/write` line protocol (gzip too) and lets tests read back exactly what
//! was stored through `/api/v1/export`. Own loopback port and temp dir, killed on drop; can be
//! stopped and started again on the same port and data so a test can take the store down.
//!
//! How it stores line protocol (VictoriaMetrics 1.79): `m,tag=v f=1.5,g=2i 1700000000000`
//! becomes one series per field, named `m_f` / `m_g`, labelled with the (unescaped) tags;
//! string fields become 0, booleans 1/0; every precision is converted to milliseconds
//! (sub-millisecond digits are dropped); a line without a timestamp gets the arrival time.
//! Freshly written samples are not searchable until flushed: [`VictoriaMetrics::export`]
//! calls `/internal/force_flush` first.

use super::http::{encode_query_value, http_get};
use super::{
    find_binary, free_port, kill_child, read_lossy, tail, terminate_child, wait_until,
    READY_TIMEOUT, STOP_TIMEOUT,
};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// A running (or stopped, between `stop` and `start_again`) VictoriaMetrics.
pub(crate) struct VictoriaMetrics {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

/// One series from `/api/v1/export`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExportedSeries {
    /// All labels, including `__name__`.
    pub(crate) metric: BTreeMap<String, String>,
    /// Sample values, in timestamp order.
    pub(crate) values: Vec<f64>,
    /// Sample timestamps in milliseconds, ascending (duplicates are kept, not merged).
    pub(crate) timestamps: Vec<i64>,
}

impl ExportedSeries {
    /// The metric name (`__name__`), e.g. `telemetry_temp`.
    pub(crate) fn name(&self) -> &str {
        self.label("__name__").unwrap_or_default()
    }

    /// A label value.
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.metric.get(key).map(String::as_str)
    }

    /// `(timestamp_ms, value)` pairs.
    pub(crate) fn samples(&self) -> Vec<(i64, f64)> {
        self.timestamps
            .iter()
            .copied()
            .zip(self.values.iter().copied())
            .collect()
    }
}

/// Total number of samples over all `series`.
pub(crate) fn total_samples(series: &[ExportedSeries]) -> usize {
    series.iter().map(|s| s.timestamps.len()).sum()
}

impl VictoriaMetrics {
    /// Starts VictoriaMetrics on a free port in a fresh temp dir and waits until `/health` is 200.
    pub(crate) fn start() -> VictoriaMetrics {
        let dir = tempfile::Builder::new()
            .prefix("victoria-")
            .tempdir()
            .expect("create victoria-metrics temp dir");
        let mut vm = VictoriaMetrics {
            port: free_port(),
            dir,
            child: None,
        };
        let mut last_log = String::new();
        // A port found free can be taken before the server binds it; try a few ports.
        for _ in 0..3 {
            match vm.spawn_and_wait() {
                Ok(()) => return vm,
                Err(log) => {
                    last_log = log;
                    vm.port = free_port();
                }
            }
        }
        panic!("victoria-metrics did not start (3 attempts); last log:\n{last_log}");
    }

    fn data_path(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("victoria-metrics.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let bin = find_binary("victoria-metrics");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open victoria-metrics.log");
        let child = Command::new(&bin)
            .arg(format!("-storageDataPath={}", self.data_path().display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg("-retentionPeriod=100y")
            .arg("-search.latencyOffset=0s")
            // Stop promptly even while a client holds an idle keep-alive connection.
            .arg("-http.maxGracefulShutdownDuration=1s")
            // Several instances run in parallel; the default sizes caches from 60% of RAM.
            .arg("-memory.allowedBytes=256MiB")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
        self.child = Some(child);

        let mut exited = false;
        let health = format!("{}/health", self.url());
        let ready = wait_until(READY_TIMEOUT, Duration::from_millis(20), || {
            let child = self.child.as_mut().expect("child present");
            if !matches!(child.try_wait(), Ok(None)) {
                exited = true;
                return true;
            }
            http_get(&health).is_ok_and(|r| r.status == 200)
        });
        // Healthy but then exited would mean someone else answered on the port.
        let alive = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if ready && !exited && alive {
            return Ok(());
        }
        let why = if exited || !alive {
            "exited"
        } else {
            "was not ready within the timeout"
        };
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
        Err(format!(
            "victoria-metrics on port {} {why}.\n--- log ---\n{}",
            self.port,
            tail(&read_lossy(&self.log_path()), 40)
        ))
    }

    /// The HTTP port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` (the InfluxDB v2 write endpoint is `{url}/api/v2/write`).
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The temp dir (data and log).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process is running.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Makes everything ingested so far searchable (`GET /internal/force_flush`).
    pub(crate) fn flush(&self) {
        let url = format!("{}/internal/force_flush", self.url());
        let resp = http_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(resp.status, 200, "GET {url}: {}", resp.text());
    }

    /// Flushes, then returns every series matching `selector` (e.g. `telemetry_temp` or
    /// `{__name__=~"telemetry_.*",site="a"}`) with all its samples, from 1970 to far in the
    /// future (the export default would stop at "now"). Panics on an HTTP error (bad selector,
    /// store stopped).
    pub(crate) fn export(&self, selector: &str) -> Vec<ExportedSeries> {
        self.flush();
        let url = format!(
            "{}/api/v1/export?match[]={}&start=0&end=9999999999",
            self.url(),
            encode_query_value(selector)
        );
        let resp = http_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(resp.status, 200, "GET {url}: {}", resp.text());
        resp.text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(parse_export_line)
            .collect()
    }

    /// Polls [`export`](Self::export) until the series matching `selector` hold at least
    /// `min_samples` samples in total; returns what is there at `timeout` (the caller asserts).
    pub(crate) fn wait_for_samples(
        &self,
        selector: &str,
        min_samples: usize,
        timeout: Duration,
    ) -> Vec<ExportedSeries> {
        let mut series = Vec::new();
        wait_until(timeout, Duration::from_millis(100), || {
            series = self.export(selector);
            total_samples(&series) >= min_samples
        });
        series
    }

    /// Graceful stop: SIGTERM (flushes to disk), wait; SIGKILL after [`STOP_TIMEOUT`].
    /// No-op when already stopped.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let (_, killed) = terminate_child(&mut child, STOP_TIMEOUT);
            if killed {
                eprintln!(
                    "victoria-metrics on port {} ignored SIGTERM; killed",
                    self.port
                );
            }
        }
    }

    /// Crash: SIGKILL; samples not yet flushed to disk (about the last second) are lost.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }

    /// Starts a stopped instance again on the same port and data dir. No-op when running.
    pub(crate) fn start_again(&mut self) {
        if self.is_running() {
            return;
        }
        self.child = None;
        if let Err(log) = self.spawn_and_wait() {
            panic!("victoria-metrics restart failed: {log}");
        }
    }

    /// [`stop`](Self::stop) then [`start_again`](Self::start_again).
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// The process's log (stdout and stderr, all runs appended).
    pub(crate) fn log(&self) -> String {
        read_lossy(&self.log_path())
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let interesting: Vec<&str> = log
                .lines()
                .filter(|l| {
                    l.contains("\terror\t") || l.contains("\twarn\t") || l.contains("\tfatal\t")
                })
                .collect();
            eprintln!(
                "--- victoria-metrics (port {}) warnings/errors, last 30 ---\n{}",
                self.port,
                tail(&interesting.join("\n"), 30)
            );
        }
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }
}

fn parse_export_line(line: &str) -> ExportedSeries {
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad export line ({e}): {line}"));
    let metric = v["metric"]
        .as_object()
        .unwrap_or_else(|| panic!("no metric object in export line: {line}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let values = v["values"]
        .as_array()
        .unwrap_or_else(|| panic!("no values in export line: {line}"))
        .iter()
        .map(|x| match x {
            serde_json::Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            // Non-finite values are exported as strings ("NaN", "Inf", "-Inf").
            serde_json::Value::String(s) => s.parse().unwrap_or(f64::NAN),
            other => panic!("unexpected value {other} in export line: {line}"),
        })
        .collect();
    let timestamps = v["timestamps"]
        .as_array()
        .unwrap_or_else(|| panic!("no timestamps in export line: {line}"))
        .iter()
        .map(|t| {
            t.as_i64()
                .unwrap_or_else(|| panic!("bad timestamp {t} in: {line}"))
        })
        .collect();
    ExportedSeries {
        metric,
        values,
        timestamps,
    }
}
