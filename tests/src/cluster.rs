//! A cluster of real `streamreel node` processes sharing one lake: start,
//! SIGKILL, freeze (SIGSTOP), thaw, restart, and ask any member for status.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::broker::free_port;
use crate::node_process::NodeProcess;
use crate::wait::wait_for;

pub const CLUSTER_TOKEN: &str = "cluster-test-token-0123456789";

pub struct Cluster {
    brokers: String,
    base: PathBuf,
    config: PathBuf,
    extra_toml: String,
    addrs: BTreeMap<u64, String>,
    /// Members started from their own config file (joined later).
    configs: BTreeMap<u64, PathBuf>,
    nodes: BTreeMap<u64, NodeProcess>,
    http: reqwest::Client,
}

/// A cluster config listing `addrs`, with the lake under `base`.
fn config_toml(addrs: &BTreeMap<u64, String>, base: &Path, extra_toml: &str) -> String {
    let mut toml = String::from(
        "[cluster]\nheartbeat-ms = 250\nelection-timeout-ms = 1500\nfailover-after-ms = 2000\n",
    );
    for (id, addr) in addrs {
        toml.push_str(&format!("[[cluster.node]]\nid = {id}\naddr = \"{addr}\"\n"));
    }
    toml.push_str(&format!(
        "[lake]\nuri = {:?}\n",
        base.join("lake").display().to_string()
    ));
    toml.push_str(extra_toml);
    toml
}

/// The member ids an `/admin/status` answer lists, in its order.
pub fn member_ids(status: &Value) -> Vec<u64> {
    status["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_u64())
        .collect()
}

impl Cluster {
    /// Writes a config for `size` members on free loopback ports, with the
    /// lake at `<base>/lake`, and starts every member. `extra_toml` follows
    /// the `[lake]` section's `uri` line: it may add `[lake]` keys first, then
    /// other sections.
    pub fn start(
        brokers: &str,
        base: &Path,
        size: u64,
        extra_toml: &str,
    ) -> anyhow::Result<Cluster> {
        let mut cluster = Cluster::configure(brokers, base, size, extra_toml)?;
        for id in 1..=size {
            cluster.start_node(id)?;
        }
        Ok(cluster)
    }

    /// As [`Cluster::start`], but starts no member: the test starts them.
    pub fn configure(
        brokers: &str,
        base: &Path,
        size: u64,
        extra_toml: &str,
    ) -> anyhow::Result<Cluster> {
        let mut addrs = BTreeMap::new();
        for id in 1..=size {
            addrs.insert(id, format!("127.0.0.1:{}", free_port()?));
        }
        std::fs::create_dir_all(base)?;
        let config = base.join("cluster.toml");
        std::fs::write(&config, config_toml(&addrs, base, extra_toml))?;
        let cluster = Cluster {
            brokers: brokers.to_string(),
            base: base.to_path_buf(),
            config,
            extra_toml: extra_toml.to_string(),
            addrs,
            configs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                // Nodes close connections idle for 10 s.
                .pool_idle_timeout(Duration::from_secs(5))
                .build()?,
        };
        Ok(cluster)
    }

    /// Starts a new member `id` on a free port, with a config that lists it
    /// beside the others (as an operator would write it before `add-node`).
    /// Returns its address.
    pub fn start_new_member(&mut self, id: u64) -> anyhow::Result<String> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        self.addrs.insert(id, addr.clone());
        let config = self.base.join(format!("cluster-with-{id}.toml"));
        std::fs::write(
            &config,
            config_toml(&self.addrs, &self.base, &self.extra_toml),
        )?;
        self.configs.insert(id, config);
        self.start_node(id)?;
        Ok(addr)
    }

    pub fn lake_parent(&self) -> &Path {
        &self.base
    }

    pub fn ids(&self) -> Vec<u64> {
        self.addrs.keys().copied().collect()
    }

    pub fn url(&self, id: u64) -> String {
        format!("http://{}", self.addrs[&id])
    }

    /// Starts (or restarts) member `id` from its own data dir.
    pub fn start_node(&mut self, id: u64) -> anyhow::Result<()> {
        let brokers = self.brokers.clone();
        self.start_node_with_brokers(id, &brokers)
    }

    /// Starts member `id` with its own broker list (one it cannot reach, say).
    pub fn start_node_with_brokers(&mut self, id: u64, brokers: &str) -> anyhow::Result<()> {
        self.start_node_with(id, brokers, CLUSTER_TOKEN)
    }

    /// Starts member `id` with its own broker list and cluster token.
    pub fn start_node_with(&mut self, id: u64, brokers: &str, token: &str) -> anyhow::Result<()> {
        self.spawn(id, brokers, token, &[])
    }

    /// Starts member `id` writing the lake at `lake` instead of the cluster's.
    pub fn start_node_with_lake(&mut self, id: u64, lake: &Path) -> anyhow::Result<()> {
        let brokers = self.brokers.clone();
        let lake = lake.display().to_string();
        self.spawn(id, &brokers, CLUSTER_TOKEN, &["--lake", &lake])
    }

    fn spawn(&mut self, id: u64, brokers: &str, token: &str, args: &[&str]) -> anyhow::Result<()> {
        let data_dir = self.base.join(format!("node-{id}"));
        let config = self.configs.get(&id).unwrap_or(&self.config);
        let id_text = id.to_string();
        let mut all_args = vec!["--node-id", &id_text];
        all_args.extend_from_slice(args);
        let node = NodeProcess::spawn(
            brokers,
            &data_dir,
            config,
            &all_args,
            &[("STREAMREEL_CLUSTER_TOKEN", token)],
        )?;
        self.nodes.insert(id, node);
        Ok(())
    }

    /// Empties member `id`'s data dir as a replaced disk would, but for its
    /// logs: its Raft log, vote and snapshots, and the id it was claimed by.
    pub fn empty_data_dir(&self, id: u64) -> anyhow::Result<()> {
        let data_dir = self.base.join(format!("node-{id}"));
        std::fs::remove_dir_all(data_dir.join("raft"))?;
        std::fs::remove_file(data_dir.join("node-id"))?;
        Ok(())
    }

    /// Where the lake records that member `id` became a voter.
    pub fn voter_record(&self, id: u64) -> PathBuf {
        self.base.join("lake/_cluster/voters").join(id.to_string())
    }

    /// Member `id`'s log of its current run.
    pub fn log(&self, id: u64) -> String {
        self.nodes
            .get(&id)
            .map(NodeProcess::log)
            .unwrap_or_default()
    }

    pub fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(mut node) = self.nodes.remove(&id) {
            node.kill9()?;
        }
        Ok(())
    }

    pub fn freeze(&self, id: u64) -> anyhow::Result<()> {
        self.nodes[&id].signal("STOP")
    }

    pub fn thaw(&self, id: u64) -> anyhow::Result<()> {
        self.nodes[&id].signal("CONT")
    }

    pub fn is_running(&mut self, id: u64) -> bool {
        self.nodes.get_mut(&id).is_some_and(|n| n.is_running())
    }

    /// Every member's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for id in self.addrs.keys() {
            let dir = self.base.join(format!("node-{id}"));
            let mut runs: Vec<_> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            runs.sort();
            for run in runs {
                let text = std::fs::read_to_string(&run).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                all.push_str(&format!("\n===== {} (last 40 lines)\n", run.display()));
                for line in tail.into_iter().rev() {
                    all.push_str(line);
                    all.push('\n');
                }
            }
        }
        all
    }

    /// `GET /admin/status` of member `id`.
    pub async fn status(&self, id: u64) -> anyhow::Result<Value> {
        let answer = self.get(id, "/admin/status").await?;
        Ok(serde_json::from_slice(&answer.bytes().await?)?)
    }

    /// `GET path` of member `id`; fails unless it answers 2xx within 5 s.
    async fn get(&self, id: u64, path: &str) -> anyhow::Result<reqwest::Response> {
        let answer = self
            .http
            .get(format!("{}{path}", self.url(id)))
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        anyhow::ensure!(answer.status().is_success(), "{path}: {}", answer.status());
        Ok(answer)
    }

    /// `GET /metrics` of member `id`, parsed by a Prometheus text parser.
    pub async fn metrics(&self, id: u64) -> anyhow::Result<prometheus_parse::Scrape> {
        let text = self.get(id, "/metrics").await?.text().await?;
        Ok(prometheus_parse::Scrape::parse(
            text.lines().map(|l| Ok(l.to_string())),
        )?)
    }

    /// A request to member `id`; returns the HTTP status and JSON body.
    pub async fn call(
        &self,
        id: u64,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.request(method, format!("{}{path}", self.url(id)));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let answer = request.send().await?;
        let status = answer.status().as_u16();
        let bytes = answer.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// POSTs `body` to member `id`'s Raft route `path` as another member
    /// would (with the cluster token); its status and answer text.
    pub async fn post_as_member(
        &self,
        id: u64,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, String)> {
        let answer = self
            .http
            .post(format!("{}{path}", self.url(id)))
            .bearer_auth(CLUSTER_TOKEN)
            .body(body)
            .send()
            .await?;
        let status = answer.status().as_u16();
        Ok((status, answer.text().await?))
    }

    /// The process id of each running member.
    pub fn pids(&self) -> Vec<(u64, u32)> {
        self.nodes.iter().map(|(id, n)| (*id, n.pid())).collect()
    }

    /// Waits until, as member `via` sees it, every partition is owned by a
    /// running member (lag aside).
    pub async fn wait_owned(
        &self,
        via: u64,
        partitions: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        self.wait_partitions(via, partitions, timeout, false)
            .await
            .map(|_| ())
    }

    /// The leader, once a member that names itself leader is named by every
    /// running member of its membership that answers, a majority at least
    /// (a frozen member cannot answer; a member still catching up may name
    /// a former leader; a removed one, still running, names none).
    pub async fn wait_for_leader(&self, timeout: Duration) -> anyhow::Result<u64> {
        wait_for("a leader", timeout, || async {
            let answers = futures::future::join_all(
                self.nodes
                    .keys()
                    .map(|id| async move { (*id, self.status(*id).await) }),
            )
            .await;
            let answers: Vec<(u64, Value)> = answers
                .into_iter()
                .filter_map(|(id, status)| Some((id, status.ok()?)))
                .collect();
            let named = |status: &Value| status["leader"].as_u64();
            let agreed = answers
                .iter()
                .filter(|(id, status)| named(status) == Some(*id))
                .find_map(|(leader, its_status)| {
                    let members: BTreeSet<u64> = member_ids(its_status).into_iter().collect();
                    let voters: Vec<&Value> = answers
                        .iter()
                        .filter(|(id, _)| members.contains(id))
                        .map(|(_, status)| status)
                        .collect();
                    let all_agree = voters.iter().all(|s| named(s) == Some(*leader));
                    (all_agree && voters.len() * 2 > members.len()).then_some(*leader)
                });
            Ok(agreed)
        })
        .await
    }

    /// Waits until, as member `via` sees it, every partition is owned by a
    /// running member and has no lag; returns that status.
    pub async fn wait_settled(
        &self,
        via: u64,
        partitions: usize,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        self.wait_partitions(via, partitions, timeout, true).await
    }

    /// Polls member `via`'s status until it lists `partitions` partitions, each
    /// owned by a running member (and, with `caught_up`, with zero lag).
    async fn wait_partitions(
        &self,
        via: u64,
        partitions: usize,
        timeout: Duration,
        caught_up: bool,
    ) -> anyhow::Result<Value> {
        let what = if caught_up {
            "every partition owned by a running member with zero lag"
        } else {
            "every partition owned by a running member"
        };
        wait_for(what, timeout, || async {
            let Ok(status) = self.status(via).await else {
                return Ok(None);
            };
            let parts = status["partitions"].as_array().cloned().unwrap_or_default();
            let done = parts.len() == partitions
                && parts.iter().all(|p| {
                    p["owner"]
                        .as_u64()
                        .is_some_and(|o| self.nodes.contains_key(&o))
                        && (!caught_up || p["lag"].as_i64() == Some(0))
                });
            Ok(done.then_some(status))
        })
        .await
    }
}
