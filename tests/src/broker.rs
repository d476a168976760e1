//! A real tansu broker (SQLite storage) on a free loopback port.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

pub struct Broker {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    header_index: HeaderIndex,
}

/// The index tansu 0.6.0 lacks; why is told in the file.
const HEADER_INDEX_SQL: &str = include_str!("../../scripts/tansu-header-index.sql");

/// Whether a broker gets [`HEADER_INDEX_SQL`] (as `scripts/broker` gives it)
/// or runs as installed, for a benchmark to show the difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderIndex {
    Added,
    Stock,
}

/// `TANSU_BIN`, else `tansu` on PATH, else cargo's bin directory.
pub fn tansu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("TANSU_BIN") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("tansu"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        PathBuf::from(home).join(".cargo/bin/tansu")
    })
}

/// A port on loopback that nothing listens on now.
///
/// Taken below the kernel's range for the local ends of outgoing connections
/// (32768 and up on Linux): a cluster member's address is chosen before it
/// starts, and a port from that range can meanwhile become the local end of
/// any test's connection, so that the member cannot listen on it.
pub fn free_port() -> anyhow::Result<u16> {
    // One seed per process: successive calls then walk the range without
    // repeating (7,919 and 12,000 share no factor), so two ports picked
    // before anything listens on either (a cluster's member addresses) differ.
    static SEED: OnceLock<u32> = OnceLock::new();
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let seed = *SEED.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        std::process::id() ^ nanos
    });
    for _ in 0..200 {
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        let step = (seed % 12_000).wrapping_add(call.wrapping_mul(7_919) % 12_000);
        let port = 20_000 + (step % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Broker {
    pub fn start() -> anyhow::Result<Broker> {
        Broker::start_on(free_port()?)
    }

    /// Starts a broker on `port` (for a node told of the address before the
    /// broker is up).
    pub fn start_on(port: u16) -> anyhow::Result<Broker> {
        Broker::start_on_with(port, HeaderIndex::Added)
    }

    /// A broker on a free port, with or without the header index.
    pub fn start_with(header_index: HeaderIndex) -> anyhow::Result<Broker> {
        Broker::start_on_with(free_port()?, header_index)
    }

    fn start_on_with(port: u16, header_index: HeaderIndex) -> anyhow::Result<Broker> {
        let dir = tempfile::Builder::new().prefix("tansu-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("data"))?;
        let child = spawn_tansu(dir.path(), port)?;
        let mut broker = Broker {
            child,
            port,
            dir,
            header_index,
        };
        broker.wait_until_ready()?;
        Ok(broker)
    }

    /// Kills the broker process (an outage); its data stays for [`Broker::restart`].
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Starts the broker again on the same port with the same data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.child = spawn_tansu(self.dir.path(), self.port)?;
        self.wait_until_ready()
    }

    fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        self.wait_until_listening()?;
        if self.header_index == HeaderIndex::Added {
            self.add_header_index()?;
        }
        Ok(())
    }

    /// Runs [`HEADER_INDEX_SQL`] with the `sqlite3` shell beside the running
    /// broker (SQLite lets both at the database; the broker re-plans its
    /// statements).
    fn add_header_index(&self) -> anyhow::Result<()> {
        let database = self.dir.path().join("data/tansu.db");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut shell = Command::new("sqlite3")
                .args(["-bail", "-cmd", ".timeout 10000"])
                .arg(&database)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("cannot run sqlite3 (install it with scripts/install-deps)")?;
            shell
                .stdin
                .take()
                .expect("stdin is piped")
                .write_all(HEADER_INDEX_SQL.as_bytes())?;
            let output = shell.wait_with_output()?;
            if output.status.success() {
                return Ok(());
            }
            // The broker creates its tables while it starts.
            anyhow::ensure!(
                Instant::now() < deadline,
                "cannot add the header index to {}: {}",
                database.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_until_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("tansu exited with {status}: {}", self.log());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "tansu did not listen within 30 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    pub async fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        streamreel_actors::kafka::ensure_topics(
            &self.brokers(),
            &[streamreel_actors::kafka::TopicSpec::plain(topic)],
            partitions,
            1,
        )
        .await?;
        Ok(())
    }
}

fn spawn_tansu(dir: &std::path::Path, port: u16) -> anyhow::Result<Child> {
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("broker.log"))?;
    let binary = tansu_binary();
    // The SQLite path is relative to the broker's working directory.
    Command::new(&binary)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "sqlite://data/tansu.db"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (install it with scripts/install-deps)",
                binary.display()
            )
        })
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
