//! The gateway binary under test, as a child process: stdout and stderr go to a log file in
//! its own temp dir (which is also its working directory, so stray relative paths never land
//! in the repo), with helpers to wait for log lines and to stop it the way systemd would
//! (SIGTERM, then SIGKILL). Plus `run_cli` for one-shot subcommands such as `check-config`.

use super::{kill_child, read_lossy, tail, terminate_child, wait_timeout, wait_until};
use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// How long [`GatewayProcess::terminate`] waits after SIGTERM before SIGKILL.
pub(crate) const GATEWAY_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The gateway executable Cargo built for this test binary.
pub(crate) fn gateway_bin() -> &'static str {
    env!("CARGO_BIN_EXE_estate-gateway")
}

/// An absolute path to `rel` inside the repository (e.g. `configs/profiles/x.toml`); use it
/// for arguments, since the gateway runs in its temp dir, not the repo.
pub(crate) fn repo_path(rel: impl AsRef<Path>) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn base_command(args: &[impl AsRef<OsStr>], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(gateway_bin());
    cmd.args(args)
        // Plain text logs so tests can match substrings (no ANSI colour codes); a test can
        // still override this or RUST_LOG through `env`.
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs the gateway once to completion (e.g. `["check-config", "-c", path]`) and returns its
/// output. The working directory is the caller's (the crate root under `cargo test`).
pub(crate) fn run_cli(args: &[&str]) -> Output {
    run_cli_with_env(args, &[])
}

/// [`run_cli`] with extra environment variables.
pub(crate) fn run_cli_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    base_command(args, env)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} {args:?}: {e}", gateway_bin()))
}

/// A running gateway; killed (SIGKILL) on drop.
pub(crate) struct GatewayProcess {
    child: Child,
    dir: TempDir,
    log_path: PathBuf,
    status: Option<ExitStatus>,
}

impl GatewayProcess {
    /// Spawns the gateway with `args` (e.g. `["run", "-c", path]`).
    pub(crate) fn start(args: &[&str]) -> GatewayProcess {
        GatewayProcess::start_with_env(args, &[])
    }

    /// Spawns the gateway with its soft file-descriptor limit lowered to `soft` (as a default
    /// systemd service has 1024), through `sh -c 'ulimit -Sn …; exec …'`.
    pub(crate) fn start_with_fd_limit(
        args: &[&str],
        env: &[(&str, &str)],
        soft: u32,
    ) -> GatewayProcess {
        let mut sh_args: Vec<String> = vec![
            "-c".into(),
            format!("ulimit -Sn {soft} && exec \"$0\" \"$@\""),
            gateway_bin().into(),
        ];
        sh_args.extend(args.iter().map(|a| (*a).to_owned()));
        GatewayProcess::spawn(Command::new("sh"), &sh_args, env)
    }

    /// Spawns the gateway with `args` and extra environment variables (inherited otherwise).
    pub(crate) fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> GatewayProcess {
        GatewayProcess::spawn(Command::new(gateway_bin()), args, env)
    }

    fn spawn(mut cmd: Command, args: &[impl AsRef<OsStr>], env: &[(&str, &str)]) -> GatewayProcess {
        cmd.args(args).env("NO_COLOR", "1").stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let dir = tempfile::Builder::new()
            .prefix("gateway-")
            .tempdir()
            .expect("create gateway temp dir");
        let log_path = dir.path().join("gateway.log");
        let log = File::create(&log_path).expect("create gateway.log");
        let child = cmd
            .current_dir(dir.path())
            .stdout(log.try_clone().expect("clone file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", gateway_bin()));
        GatewayProcess {
            child,
            dir,
            log_path,
            status: None,
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The gateway's temp dir (its working directory; holds `gateway.log`).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the gateway wrote to stdout and stderr so far.
    pub(crate) fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// How often `needle` occurs in the log so far.
    pub(crate) fn log_count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// Polls the log for `needle`; false at `timeout`, or as soon as the process has exited
    /// without having logged it.
    pub(crate) fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> bool {
        let mut found = false;
        wait_until(timeout, Duration::from_millis(20), || {
            found = self.log().contains(needle);
            // Checked after reading the log, so output written just before exiting counts.
            found || self.try_wait().is_some()
        });
        found || self.log().contains(needle)
    }

    /// The exit status if the process has exited (does not block).
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub(crate) fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = wait_timeout(&mut self.child, timeout);
        }
        self.status
    }

    /// Graceful stop: SIGTERM, wait up to [`GATEWAY_STOP_TIMEOUT`], then SIGKILL (reported on
    /// stderr; the returned status then shows the signal). Returns the exit status; if the
    /// process had already exited, returns that status.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        if let Some(status) = self.try_wait() {
            return status;
        }
        let (status, killed) = terminate_child(&mut self.child, GATEWAY_STOP_TIMEOUT);
        if killed {
            eprintln!(
                "gateway pid {} did not exit within {GATEWAY_STOP_TIMEOUT:?} of SIGTERM; killed",
                self.child.id()
            );
        }
        self.status = Some(status);
        status
    }

    /// Crash: SIGKILL, no chance to flush or save anything.
    pub(crate) fn kill(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = kill_child(&mut self.child);
        }
        self.status
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- gateway (pid {}) log tail ---\n{}",
                self.child.id(),
                tail(&self.log(), 60)
            );
        }
        if self.status.is_none() {
            kill_child(&mut self.child);
        }
    }
}
