//! A real InfluxDB 1.x (Debian's `influxdb` package, 1.6) per test, as a second line-protocol
//! parser beside VictoriaMetrics: its v1 `POST /write` takes the same line protocol the
//! gateway sends to the v2 API, and `/query` (InfluxQL) reads back what it stored. Own
//! loopback ports (HTTP and the RPC bind address) and temp dir, killed on drop. A missing
//! `influxd` is a panic naming the install command, never a skip.

use super::http::{encode_query_value, http_get, http_post};
use super::{free_port, kill_child, read_lossy, tail, wait_until, READY_TIMEOUT};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// A running `influxd` with one database, `test`.
pub(crate) struct InfluxDb1 {
    port: u16,
    dir: TempDir,
    child: Child,
}

const DB: &str = "test";

fn influxd() -> PathBuf {
    [
        "/usr/bin/influxd",
        "/usr/sbin/influxd",
        "/usr/local/bin/influxd",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .unwrap_or_else(|| {
        panic!("influxd not found: run scripts/install-test-deps (apt-get install influxdb)")
    })
}

impl InfluxDb1 {
    /// Starts `influxd` on free ports in a fresh temp dir, waits for `/ping`, creates `test`.
    pub(crate) fn start() -> InfluxDb1 {
        let dir = tempfile::Builder::new()
            .prefix("influxdb1-")
            .tempdir()
            .expect("create influxdb temp dir");
        let port = free_port();
        let rpc = free_port();
        let d = dir.path().display();
        let conf = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [continuous_queries]\n  enabled = false\n"
        );
        let conf_path = dir.path().join("influxdb.conf");
        std::fs::write(&conf_path, conf).expect("write influxdb.conf");
        let log = File::create(dir.path().join("influxd.log")).expect("influxd.log");
        let child = Command::new(influxd())
            .arg("run")
            .arg("-config")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn influxd");
        let db = InfluxDb1 { port, dir, child };
        let ping = format!("http://127.0.0.1:{port}/ping");
        let up = wait_until(READY_TIMEOUT * 3, Duration::from_millis(100), || {
            http_get(&ping).is_ok_and(|r| r.status == 204)
        });
        assert!(up, "influxd did not answer /ping:\n{}", tail(&db.log(), 30));
        db.query_post(&format!("CREATE DATABASE {DB}"));
        db
    }

    pub(crate) fn log(&self) -> String {
        read_lossy(&self.dir.path().join("influxd.log"))
    }

    fn query_post(&self, q: &str) -> String {
        let url = format!(
            "http://127.0.0.1:{}/query?q={}",
            self.port,
            encode_query_value(q)
        );
        let r = http_post(&url, &[], b"").unwrap_or_else(|e| panic!("POST {url}: {e}"));
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        r.text()
    }

    /// `POST /write?db=test&precision=ms` with `lines`; the status and the answer.
    pub(crate) fn write(&self, lines: &[u8]) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}/write?db={DB}&precision=ms", self.port);
        let r = http_post(&url, &[], lines).unwrap_or_else(|e| panic!("POST {url}: {e}"));
        (r.status, r.text())
    }

    /// The values of tag `key` in `measurement`, as stored.
    pub(crate) fn tag_values(&self, measurement: &str, key: &str) -> Vec<String> {
        let q = format!("SHOW TAG VALUES FROM \"{measurement}\" WITH KEY = \"{key}\"");
        let url = format!(
            "http://127.0.0.1:{}/query?db={DB}&q={}",
            self.port,
            encode_query_value(&q)
        );
        let r = http_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        let v: serde_json::Value = serde_json::from_str(&r.text()).expect("JSON");
        let mut out: Vec<String> = v["results"][0]["series"][0]["values"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|row| row[1].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// A string field's values in `measurement`, as stored.
    pub(crate) fn string_values(&self, measurement: &str, field: &str) -> Vec<String> {
        let q = format!("SELECT \"{field}\" FROM \"{measurement}\"");
        let url = format!(
            "http://127.0.0.1:{}/query?db={DB}&q={}",
            self.port,
            encode_query_value(&q)
        );
        let r = http_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let v: serde_json::Value = serde_json::from_str(&r.text()).expect("JSON");
        let mut out: Vec<String> = v["results"][0]["series"][0]["values"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|row| row[1].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl Drop for InfluxDb1 {
    fn drop(&mut self) {
        kill_child(&mut self.child);
        if std::thread::panicking() {
            eprintln!("--- influxd log (tail) ---\n{}", tail(&self.log(), 40));
        }
    }
}
