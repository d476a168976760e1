//! A real `streamreel node` process, killed with SIGKILL when a test asks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::TEST_SECRET;

/// The `streamreel` binary built beside the running test or bench executable.
/// A command running the `streamreel` binary, without the variables of the
/// caller's shell that would change what the tests expect of it: a user who
/// exported the tokens or the log format the docs describe can still run
/// the suite.
pub fn streamreel_command() -> anyhow::Result<Command> {
    let mut command = Command::new(streamreel_binary()?);
    for variable in [
        "STREAMREEL_ADMIN_TOKEN",
        "STREAMREEL_CLUSTER_TOKEN",
        "STREAMREEL_LOG_FORMAT",
        "STREAMREEL_USER_KEY_SECRET",
        "RUST_LOG",
    ] {
        command.env_remove(variable);
    }
    Ok(command)
}

pub fn streamreel_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("streamreel"))
        .collect::<Vec<_>>();
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .with_context(|| {
            format!(
                "streamreel binary not found at {candidates:?}: run `cargo build --workspace` first"
            )
        })
}

pub struct NodeProcess {
    child: Child,
    log: PathBuf,
}

/// A node config: the shipped defaults, with these batching bounds.
pub fn node_config(commit_max_events: usize, commit_interval_ms: u64) -> String {
    format!(
        "[node]\nid = 1\nrestart-backoff-min-ms = 100\nrestart-backoff-max-ms = 2000\nhttp-listen = \"127.0.0.1:0\"\n\
         [lake]\ncommit-max-events = {commit_max_events}\ncommit-interval-ms = {commit_interval_ms}\n"
    )
}

impl NodeProcess {
    /// Starts a node on `brokers` with its data under `data_dir`, configured by
    /// `config_toml` (brokers and data dir are given as flags, as a user would).
    pub fn start(
        brokers: &str,
        data_dir: &Path,
        config_toml: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<NodeProcess> {
        std::fs::create_dir_all(data_dir)?;
        let config = data_dir.join("node.toml");
        std::fs::write(&config, config_toml)?;
        NodeProcess::spawn(brokers, data_dir, &config, &[], env)
    }

    /// Starts a node from an existing config file with extra flags (such as
    /// `--node-id`); its log goes under `data_dir`.
    pub fn spawn(
        brokers: &str,
        data_dir: &Path,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<NodeProcess> {
        std::fs::create_dir_all(data_dir)?;
        let log = (0..)
            .map(|n| data_dir.join(format!("node-run-{n}.log")))
            .find(|path| !path.exists())
            .expect("some name is free");
        let log_file = std::fs::File::create(&log)?;
        let mut command = streamreel_command()?;
        command
            .current_dir(crate::repo_root())
            .arg("node")
            .arg("--config")
            .arg(config)
            .args(args)
            .args(["--brokers", brokers])
            .arg("--data-dir")
            .arg(data_dir)
            .env("STREAMREEL_USER_KEY_SECRET", TEST_SECRET)
            .env("RUST_LOG", "info,buoyant_kernel=warn")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().context("cannot start streamreel node")?;
        Ok(NodeProcess { child, log })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The admin API's base URL, once the node has logged it.
    pub fn admin_url(&self) -> Option<String> {
        let log = self.log();
        let line = log.lines().find(|l| l.contains("admin api listening"))?;
        let addr = line.split("http_addr=").nth(1)?.split_whitespace().next()?;
        Some(format!("http://{addr}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal (`STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} failed");
        Ok(())
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Waits for the node to exit by itself (a refused start, or after a signal).
    pub fn wait_for_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "node still running after {timeout:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for a graceful exit.
    pub fn stop(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        self.wait_for_exit(timeout)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
