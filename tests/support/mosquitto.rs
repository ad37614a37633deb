//! A real Mosquitto broker per test: its own loopback port and temp dir, persistence on (so a
//! restart keeps persistent sessions and their queued QoS 1/2 messages), killed on drop. Also
//! publishing and subscribing through the real `mosquitto_pub` / `mosquitto_sub` clients, so
//! what the gateway receives is exactly what a device would send.

use super::{
    find_binary, free_port, kill_child, read_lossy, tail, tcp_connects, terminate_child,
    wait_until, READY_TIMEOUT, STOP_TIMEOUT,
};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tempfile::TempDir;

/// A running (or stopped, between `stop` and `start_again`) Mosquitto broker.
pub(crate) struct Mosquitto {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// Lines appended to the generated config (see [`start_with_config`](Self::start_with_config)).
    extra_conf: String,
}

impl Mosquitto {
    /// Starts a broker on a free port in a fresh temp dir and waits until it accepts connections.
    pub(crate) fn start() -> Mosquitto {
        Mosquitto::start_with_config("")
    }

    /// Like [`start`](Self::start), with `extra` appended to the generated config (and kept
    /// for [`start_again`](Self::start_again)). The generated config has one listener (the
    /// broker's [`port`](Self::port)) and no `per_listener_settings`, so listener options in
    /// `extra` (e.g. `certfile`, `keyfile`, `cafile`) apply to it, and a global option in `extra`
    /// overrides the generated one (e.g. `allow_anonymous false` with a `password_file`). The
    /// harness's `publish` and `subscribe` speak plain, anonymous MQTT, so they do not work
    /// against such a broker.
    pub(crate) fn start_with_config(extra: &str) -> Mosquitto {
        let dir = tempfile::Builder::new()
            .prefix("mosquitto-")
            .tempdir()
            .expect("create mosquitto temp dir");
        let mut broker = Mosquitto {
            port: free_port(),
            dir,
            child: None,
            extra_conf: extra.to_owned(),
        };
        let mut last_log = String::new();
        // A port found free can be taken before the broker binds it; try a few ports.
        for _ in 0..3 {
            match broker.spawn_and_wait() {
                Ok(()) => return broker,
                Err(log) => {
                    last_log = log;
                    broker.port = free_port();
                }
            }
        }
        panic!("mosquitto did not start (3 attempts); last log:\n{last_log}");
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.stderr")
    }

    /// Writes the config, spawns the broker and polls until it is ready. `Err(log)` if the
    /// broker exits or is not ready within [`READY_TIMEOUT`].
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let bin = find_binary("mosquitto");
        let dir = self.dir.path();
        let conf = format!(
            "listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence true\n\
             persistence_location {dir}/\n\
             autosave_interval 1\n\
             log_dest file {log}\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             log_type information\n\
             log_type subscribe\n\
             log_type unsubscribe\n\
             max_queued_messages 100000\n\
             # mosquitto 2.0.11 (Debian 12) can strand a queued QoS 1 message when an in-flight\n\
             # window is set (fixed upstream in 2.0.13); the README recommends 0 for the gateway.\n\
             max_inflight_messages 0\n\
             # As the README recommends: without it, Nagle's algorithm holds the second of two\n\
             # back-to-back packets to a subscriber (a state change, then its alarm) ~40 ms.\n\
             set_tcp_nodelay true\n\
             # As root, mosquitto would otherwise drop to the `mosquitto` user and could not\n\
             # write to this (root-owned, 0700) directory. Ignored when not run as root.\n\
             user root\n\
             {extra}\n",
            port = self.port,
            dir = dir.display(),
            log = self.log_path().display(),
            extra = self.extra_conf,
        );
        fs::write(self.conf_path(), conf).expect("write mosquitto.conf");
        let log_len_before = read_lossy(&self.log_path()).len();
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .expect("open mosquitto.stderr");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(self.conf_path())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("clone file handle"))
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
        self.child = Some(child);

        let mut exited = false;
        let ready = wait_until(READY_TIMEOUT, Duration::from_millis(20), || {
            let child = self.child.as_mut().expect("child present");
            if !matches!(child.try_wait(), Ok(None)) {
                exited = true;
                return true;
            }
            // "running" is logged once the listeners are open; only look at this run's part of
            // the (appended) log, then make sure it is really our broker that answers.
            let log = read_lossy(&self.log_path());
            log.get(log_len_before..)
                .is_some_and(|l| l.contains(" running"))
                && tcp_connects(self.port)
        });
        if ready && !exited {
            return Ok(());
        }
        let why = if exited {
            "exited"
        } else {
            "was not ready within the timeout"
        };
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
        Err(format!(
            "mosquitto on port {} {why}.\n--- mosquitto.log ---\n{}\n--- stderr ---\n{}",
            self.port,
            tail(&read_lossy(&self.log_path()), 40),
            tail(&read_lossy(&self.stderr_path()), 20)
        ))
    }

    /// The broker's port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:PORT`
    pub(crate) fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The broker's temp dir (config, persistence db, log).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the broker process is running.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Graceful stop: SIGTERM (the broker saves its persistence db), wait; SIGKILL after
    /// [`STOP_TIMEOUT`]. No-op when already stopped.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let (_, killed) = terminate_child(&mut child, STOP_TIMEOUT);
            if killed {
                eprintln!("mosquitto on port {} ignored SIGTERM; killed", self.port);
            }
        }
    }

    /// Crash: SIGKILL, no persistence save (anything since the last autosave, at most ~1 s,
    /// is lost). No-op when already stopped.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }

    /// Starts a stopped broker again on the same port with the same dir (and so the same
    /// persistent sessions), waiting for readiness. No-op when running.
    pub(crate) fn start_again(&mut self) {
        if self.is_running() {
            return;
        }
        self.child = None;
        if let Err(log) = self.spawn_and_wait() {
            panic!("mosquitto restart failed: {log}");
        }
    }

    /// [`stop`](Self::stop) then [`start_again`](Self::start_again).
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// The broker's log (`log_dest file`), all runs appended.
    pub(crate) fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// Polls the broker log for `needle`.
    pub(crate) fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, Duration::from_millis(20), || {
            self.log().contains(needle)
        })
    }

    /// Polls the broker log until a client subscribed to exactly `topic_filter` (and, when
    /// given, the client is `client_id`). Use before publishing to a subscriber that was just
    /// started, e.g. the gateway. A restored persistent session does not log again.
    pub(crate) fn wait_for_subscription(
        &self,
        client_id: Option<&str>,
        topic_filter: &str,
        timeout: Duration,
    ) -> bool {
        wait_until(timeout, Duration::from_millis(20), || {
            self.log().lines().any(|line| {
                // "<unix time>: <client id> <qos> <topic filter>"
                let Some((_, rest)) = line.split_once(": ") else {
                    return false;
                };
                let mut parts = rest.splitn(3, ' ');
                let (Some(id), Some(qos), Some(filter)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return false;
                };
                qos.parse::<u8>().is_ok()
                    && filter == topic_filter
                    && client_id.is_none_or(|want| want == id)
            })
        })
    }

    /// Publishes one message with the real `mosquitto_pub` (payload on stdin, so binary and
    /// large payloads work; an empty payload is sent with `-n`). Panics if `mosquitto_pub` fails.
    pub(crate) fn publish(&self, topic: &str, payload: &[u8], qos: u8) {
        self.publish_with(topic, payload, qos, false);
    }

    /// Like [`publish`](Self::publish) with the retain flag set (an empty payload clears the
    /// retained message).
    pub(crate) fn publish_retained(&self, topic: &str, payload: &[u8], qos: u8) {
        self.publish_with(topic, payload, qos, true);
    }

    fn publish_with(&self, topic: &str, payload: &[u8], qos: u8, retain: bool) {
        let qos = qos.to_string();
        let mut args = vec!["-t", topic, "-q", &qos];
        if retain {
            args.push("-r");
        }
        // `-s` refuses zero-length stdin ("Zero length input"); `-n` sends a null message.
        args.push(if payload.is_empty() { "-n" } else { "-s" });
        self.run_pub(&args, payload);
    }

    /// Publishes each of `payloads` as its own message over one connection (`mosquitto_pub -l`):
    /// much faster than [`publish`](Self::publish) in a loop. Payloads must not contain `\n`;
    /// empty payloads are not sent (`mosquitto_pub -l` skips empty lines).
    pub(crate) fn publish_lines<S: AsRef<str>>(&self, topic: &str, payloads: &[S], qos: u8) {
        let mut stdin = Vec::new();
        for p in payloads {
            let p = p.as_ref();
            assert!(
                !p.contains('\n'),
                "publish_lines payload contains a newline: {p:?}"
            );
            stdin.extend_from_slice(p.as_bytes());
            stdin.push(b'\n');
        }
        self.run_pub(&["-t", topic, "-q", &qos.to_string(), "-l"], &stdin);
    }

    fn run_pub(&self, args: &[&str], stdin_bytes: &[u8]) {
        let bin = find_binary("mosquitto_pub");
        let mut child = Command::new(&bin)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
        let mut stdin = child.stdin.take().expect("piped stdin");
        let payload = stdin_bytes.to_vec();
        // Write on another thread: a large payload could fill the pipe while the client waits.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&payload);
        });
        let out = child.wait_with_output().expect("wait for mosquitto_pub");
        let _ = writer.join();
        assert!(
            out.status.success(),
            "mosquitto_pub {args:?} to port {} failed ({}): {}{}",
            self.port,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A `mosquitto_sub` command with `-h 127.0.0.1 -p PORT` filled in, for tests that need
    /// the raw client (add `-t`, `-C`, `-W`, `-c -i ID`, ...).
    pub(crate) fn sub_command(&self) -> Command {
        let mut cmd = Command::new(find_binary("mosquitto_sub"));
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        cmd
    }

    /// Starts a background `mosquitto_sub` on `topic_filter` at `qos` (clean session) and
    /// returns once the broker has logged the subscription, so nothing published afterwards
    /// is missed.
    pub(crate) fn subscribe(&self, topic_filter: &str, qos: u8) -> MqttSubscriber {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let client_id = format!(
            "harness-sub-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix("mqtt-sub-")
            .tempdir()
            .expect("create subscriber temp dir");
        let out_path = dir.path().join("messages.txt");
        let err_path = dir.path().join("stderr.txt");
        let child = self
            .sub_command()
            .args(["-i", &client_id, "-t", topic_filter, "-q", &qos.to_string()])
            // qos, retain, hex payload, topic last (topics may contain spaces); one per line.
            .args(["-F", "%q %r %x %t"])
            .stdin(Stdio::null())
            .stdout(File::create(&out_path).expect("create messages.txt"))
            .stderr(File::create(&err_path).expect("create stderr.txt"))
            .spawn()
            .expect("spawn mosquitto_sub");
        let mut sub = MqttSubscriber {
            child,
            dir,
            out_path,
        };
        if !self.wait_for_subscription(Some(&client_id), topic_filter, READY_TIMEOUT) {
            kill_child(&mut sub.child);
            panic!(
                "mosquitto_sub to {topic_filter:?} on port {} did not subscribe within {READY_TIMEOUT:?}; \
                 stderr: {}\n--- mosquitto.log ---\n{}",
                self.port,
                read_lossy(&err_path),
                tail(&self.log(), 30)
            );
        }
        sub
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- mosquitto (port {}) log tail ---\n{}",
                self.port,
                tail(&self.log(), 40)
            );
        }
        if let Some(mut child) = self.child.take() {
            kill_child(&mut child);
        }
    }
}

/// One message received by an [`MqttSubscriber`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MqttMessage {
    pub(crate) topic: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
}

impl MqttMessage {
    /// The payload as (lossy) UTF-8.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A background `mosquitto_sub`; killed on drop.
pub(crate) struct MqttSubscriber {
    child: Child,
    #[allow(dead_code)] // held so the output file outlives the subscriber
    dir: TempDir,
    out_path: PathBuf,
}

impl MqttSubscriber {
    /// Every message received so far, in order.
    pub(crate) fn messages(&self) -> Vec<MqttMessage> {
        let text = read_lossy(&self.out_path);
        let mut out = Vec::new();
        // Only complete lines: the last one may still be being written.
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        for line in complete.lines() {
            let mut parts = line.splitn(4, ' ');
            let (Some(q), Some(r), Some(hex), Some(topic)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                panic!("unexpected mosquitto_sub output line {line:?}");
            };
            out.push(MqttMessage {
                topic: topic.to_string(),
                payload: decode_hex(hex),
                qos: q.parse().expect("qos digit"),
                retain: r == "1",
            });
        }
        out
    }

    /// Polls until at least `min` messages arrived; returns what arrived by `timeout`.
    pub(crate) fn wait_for_messages(&self, min: usize, timeout: Duration) -> Vec<MqttMessage> {
        let mut msgs = Vec::new();
        wait_until(timeout, Duration::from_millis(20), || {
            msgs = self.messages();
            msgs.len() >= min
        });
        msgs
    }

    /// Stops the subscriber (SIGTERM, so it disconnects cleanly).
    pub(crate) fn stop(&mut self) {
        let _ = terminate_child(&mut self.child, Duration::from_secs(5));
    }
}

impl Drop for MqttSubscriber {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

fn decode_hex(hex: &str) -> Vec<u8> {
    assert!(hex.len() % 2 == 0, "odd-length hex payload {hex:?}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect()
}
