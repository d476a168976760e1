//! Every rule a config must meet, checked once at start, each failure naming
//! its key; flags override the file.

use super::*;

/// Decides the whole config; the only reads are of secret files, through
/// `read_file`, and only for secrets the environment does not give.
pub(super) fn validate(
    raw: RawConfig,
    overrides: &Overrides,
    env: EnvSecrets,
    read_file: ReadFile,
) -> Result<NodeConfig, ConfigError> {
    let EnvSecrets {
        user_key_secret: secret_from_env,
        cluster_token: cluster_token_from_env,
        admin_token: admin_token_from_env,
    } = env;
    let invalid = |key, reason: &str| ConfigError::Invalid {
        key,
        reason: reason.to_string(),
    };
    // Errors name the flag when the value came from one, else the file's key.
    let node_id = overrides.node_id.or(raw.node.id).unwrap_or(1);
    if node_id == 0 {
        let key = if overrides.node_id.is_some() {
            "--node-id"
        } else {
            "node.id"
        };
        return Err(invalid(key, "must be at least 1"));
    }
    let brokers = overrides
        .brokers
        .clone()
        .unwrap_or_else(|| raw.kafka.brokers.clone());
    if !brokers_are_valid(&brokers) {
        return Err(ConfigError::Invalid {
            key: if overrides.brokers.is_some() {
                "--brokers"
            } else {
                "kafka.brokers"
            },
            reason: format!("must be HOST:PORT[,HOST:PORT...], got {brokers:?}"),
        });
    }
    for (key, topic) in [
        ("kafka.input-topic", &raw.kafka.input_topic),
        ("kafka.clean-topic", &raw.kafka.clean_topic),
        ("kafka.dlq-topic", &raw.kafka.dlq_topic),
    ] {
        if !is_kafka_topic_name(topic) {
            return Err(ConfigError::Invalid {
                key,
                reason: format!(
                    "must be a Kafka topic name (1 to 249 of [a-zA-Z0-9._-], not \".\" or \"..\"), \
                     got {topic:?}"
                ),
            });
        }
    }
    // Kafka refuses a topic whose name differs from an existing one's only
    // by '.' against '_' (their metric names would collide).
    let same_topic = |a: &str, b: &str| a.replace('.', "_") == b.replace('.', "_");
    if same_topic(&raw.kafka.input_topic, &raw.kafka.clean_topic)
        || same_topic(&raw.kafka.input_topic, &raw.kafka.dlq_topic)
    {
        return Err(invalid(
            "kafka.input-topic",
            "must differ from the clean and dead-letter topics (Kafka takes '.' and '_' in \
             topic names for the same character)",
        ));
    }
    // Dead letters carry raw user ids, which `clean-events` promises never to hold.
    if same_topic(&raw.kafka.clean_topic, &raw.kafka.dlq_topic) {
        return Err(invalid(
            "kafka.dlq-topic",
            "must differ from kafka.clean-topic (Kafka takes '.' and '_' in topic names for \
             the same character)",
        ));
    }
    // librdkafka makes no consumer of a client without a group id, so every
    // partition would fail to start.
    if raw.kafka.consumer_group.trim().is_empty() {
        return Err(invalid("kafka.consumer-group", "must not be empty"));
    }
    if raw.node.demo.is_some() {
        return Err(invalid(
            "node.demo",
            "demo mode is chosen only with the --demo flag, never by a config file",
        ));
    }
    within(
        "kafka.default-partitions",
        raw.kafka.default_partitions,
        1,
        10_000,
    )?;
    within(
        "kafka.replication-factor",
        raw.kafka.replication_factor,
        1,
        i16::MAX as i32,
    )?;
    within(
        "kafka.dlq-retention-hours",
        raw.kafka.dlq_retention_hours,
        1,
        MAX_HOURS,
    )?;
    within(
        "lake.commit-max-events",
        raw.lake.commit_max_events,
        1,
        MAX_COMMIT_EVENTS,
    )?;
    within(
        "lake.commit-max-bytes",
        raw.lake.commit_max_bytes,
        1 << 20,
        1 << 30,
    )?;
    within(
        "lake.commit-interval-ms",
        raw.lake.commit_interval_ms,
        1,
        600_000,
    )?;
    // The lower bounds are the contract's de-duplication window.
    within(
        "dedup.window-events",
        raw.dedup.window_events,
        1_000_000,
        100_000_000,
    )?;
    within("dedup.window-hours", raw.dedup.window_hours, 24, 24 * 366)?;
    not_below(
        ("dedup.max-ids", raw.dedup.max_ids as u64),
        ("dedup.window-events", raw.dedup.window_events as u64),
    )?;
    within("dedup.max-ids", raw.dedup.max_ids, 1_000_000, 400_000_000)?;
    within(
        "node.restart-backoff-min-ms",
        raw.node.restart_backoff_min_ms,
        1,
        3_600_000,
    )?;
    not_below(
        (
            "node.restart-backoff-max-ms",
            raw.node.restart_backoff_max_ms,
        ),
        (
            "node.restart-backoff-min-ms",
            raw.node.restart_backoff_min_ms,
        ),
    )?;
    within(
        "node.restart-backoff-max-ms",
        raw.node.restart_backoff_max_ms,
        1,
        3_600_000,
    )?;
    within(
        "jobs.vacuum-retention-hours",
        raw.jobs.vacuum_retention_hours,
        MIN_VACUUM_RETENTION_HOURS as u64,
        MAX_HOURS,
    )?;
    within("jobs.max-retries", raw.jobs.max_retries, 0, 100)?;
    within(
        "jobs.retry-backoff-ms",
        raw.jobs.retry_backoff_ms,
        1,
        3_600_000,
    )?;
    within("jobs.timeout-s", raw.jobs.timeout_s, 1, 366 * 86_400)?;
    // A run reads the table versions it opened for as long as it runs (up to
    // the timeout): vacuum must not delete the files they name before then.
    if raw.jobs.vacuum_retention_hours.saturating_mul(3_600) <= raw.jobs.timeout_s {
        return Err(ConfigError::Invalid {
            key: "jobs.vacuum-retention-hours",
            reason: format!(
                "{} hours must be longer than jobs.timeout-s ({} s): a lakehouse run reads the \
                 table versions it opened for up to that long, and vacuum would delete files \
                 they name",
                raw.jobs.vacuum_retention_hours, raw.jobs.timeout_s
            ),
        });
    }
    within("jobs.threads", raw.jobs.threads, 1, 64)?;
    within(
        "jobs.memory-limit-mb",
        raw.jobs.memory_limit_mb,
        64,
        1 << 20,
    )?;
    within(
        "jobs.chunk-events",
        raw.jobs.chunk_events,
        1_000,
        1_000_000_000,
    )?;
    if raw.cluster.is_some() {
        // Silently ignored, they would leave a member listening or keeping
        // its Raft state somewhere other than the file says.
        for (key, present, instead) in [
            (
                "node.http-listen",
                raw.node.http_listen.is_some(),
                "cluster.node.addr",
            ),
            (
                "node.data-dir",
                raw.node.data_dir.is_some(),
                "cluster.node.data-dir (or --data-dir)",
            ),
        ] {
            if present {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!(
                        "has no effect beside [cluster]: each member's comes from {instead}; \
                         remove it"
                    ),
                });
            }
        }
    }
    file_values_overridden(&raw, overrides)?;
    let http_listen_text = raw.node.http_listen.as_deref().unwrap_or("127.0.0.1:8080");
    let http_listen: SocketAddr = http_listen_text.parse().map_err(|_| ConfigError::Invalid {
        key: "node.http-listen",
        reason: format!("must be IP:PORT, e.g. 127.0.0.1:8080, got {http_listen_text:?}"),
    })?;
    let jobs = &raw.jobs;
    for (key, value) in [
        ("jobs.enrich-interval-s", jobs.enrich_interval_s),
        ("jobs.gold-interval-s", jobs.gold_interval_s),
        ("jobs.compact-interval-s", jobs.compact_interval_s),
        ("jobs.vacuum-interval-s", jobs.vacuum_interval_s),
    ] {
        within(key, value, 1, 366 * 86_400)?;
    }
    let demo = overrides.demo;
    within(
        "live.retention-hours",
        raw.live.retention_hours,
        1,
        24 * 366,
    )?;
    within(
        "live.max-entries",
        raw.live.max_entries,
        10_000,
        1_000_000_000,
    )?;
    let admin_token = read_token(
        TokenSource {
            which: "admin",
            env: ADMIN_TOKEN_ENV,
        },
        admin_token_from_env,
        raw.node.admin_token_file.as_deref(),
        read_file,
    )?;
    // A config without [cluster] is a one-member cluster on node.http-listen.
    let (members, member_data_dir, timings, cluster_token_file) = match &raw.cluster {
        None => (
            BTreeMap::from([(node_id, http_listen.to_string())]),
            None,
            (
                default_heartbeat_ms(),
                default_election_timeout_ms(),
                default_failover_after_ms(),
            ),
            None,
        ),
        Some(cluster) => {
            // Started without saying which member it is, a process would run
            // as node 1 beside the real one.
            if cluster.node.len() > 1 && overrides.node_id.is_none() && raw.node.id.is_none() {
                return Err(ConfigError::Invalid {
                    key: "node.id",
                    reason: format!(
                        "the cluster lists {} members: say which one this process is with \
                         --node-id N",
                        cluster.node.len()
                    ),
                });
            }
            let mut members = BTreeMap::new();
            let mut addrs: BTreeMap<SocketAddr, u64> = BTreeMap::new();
            let mut own_data_dir = None;
            for member in &cluster.node {
                if member.id == 0 {
                    return Err(invalid("cluster.node.id", "must be at least 1"));
                }
                let Ok(addr) = member.addr.parse::<SocketAddr>() else {
                    return Err(ConfigError::Invalid {
                        key: "cluster.node.addr",
                        reason: format!("{:?} of node {} must be IP:PORT", member.addr, member.id),
                    });
                };
                if cluster.node.len() > 1 && (addr.ip().is_unspecified() || addr.port() == 0) {
                    return Err(ConfigError::Invalid {
                        key: "cluster.node.addr",
                        reason: format!(
                            "{:?} of node {}: the other members dial this address, so it needs \
                             a real IP and port (not {}, not port 0)",
                            member.addr,
                            member.id,
                            if addr.is_ipv4() { "0.0.0.0" } else { "::" }
                        ),
                    });
                }
                if let Some(other) = addrs.insert(addr, member.id) {
                    return Err(ConfigError::Invalid {
                        key: "cluster.node.addr",
                        reason: format!(
                            "nodes {other} and {} share the address {}",
                            member.id, member.addr
                        ),
                    });
                }
                if members.insert(member.id, member.addr.clone()).is_some() {
                    return Err(ConfigError::Invalid {
                        key: "cluster.node.id",
                        reason: format!("node {} is listed twice", member.id),
                    });
                }
                // Every member's, as for the values a flag overrides.
                if let Some(dir) = &member.data_dir {
                    directory_path(dir, "cluster.node.data-dir")?;
                }
                if member.id == node_id {
                    own_data_dir = Some(
                        member
                            .data_dir
                            .clone()
                            .unwrap_or_else(|| PathBuf::from(format!("data/node-{node_id}"))),
                    );
                }
            }
            if own_data_dir.is_none() {
                return Err(ConfigError::Invalid {
                    key: "cluster.node",
                    reason: format!(
                        "node {node_id} is not listed (members: {:?}); start it with \
                         --node-id and one of those ids",
                        members.keys().collect::<Vec<_>>()
                    ),
                });
            }
            // Below 10 ms the Raft timeouts derived from these two settings
            // can coincide, which Raft refuses at startup.
            if cluster.heartbeat_ms < 10 || cluster.heartbeat_ms > 60_000 {
                return Err(ConfigError::Invalid {
                    key: "cluster.heartbeat-ms",
                    reason: format!("must be within 10..=60000, got {}", cluster.heartbeat_ms),
                });
            }
            // Followers must hear several heartbeats within an election timeout.
            if cluster.election_timeout_ms < 3 * cluster.heartbeat_ms
                || cluster.election_timeout_ms > 600_000
            {
                return Err(ConfigError::Invalid {
                    key: "cluster.election-timeout-ms",
                    reason: format!(
                        "must be at least 3 x cluster.heartbeat-ms ({}) and at most 600000, got {}",
                        3 * cluster.heartbeat_ms,
                        cluster.election_timeout_ms
                    ),
                });
            }
            // Members are probed once a heartbeat, and a round lasts until its
            // slowest ping answers or times out: a healthy member may go
            // unheard for a heartbeat, a round slowed by one that does not
            // answer, and another heartbeat. A shorter wait would move
            // partitions off healthy members whenever one member is down.
            let ping_timeout_ms = streamreel_cluster::member::PING_TIMEOUT.as_millis() as u64;
            let least = 2 * cluster.heartbeat_ms + ping_timeout_ms;
            if cluster.failover_after_ms < least || cluster.failover_after_ms > 3_600_000 {
                return Err(ConfigError::Invalid {
                    key: "cluster.failover-after-ms",
                    reason: format!(
                        "must be at least 2 x cluster.heartbeat-ms + {ping_timeout_ms} (a ping's \
                         timeout), here {least}, and at most 3600000, got {}",
                        cluster.failover_after_ms
                    ),
                });
            }
            (
                members,
                own_data_dir,
                (
                    cluster.heartbeat_ms,
                    cluster.election_timeout_ms,
                    cluster.failover_after_ms,
                ),
                cluster.token_file.clone(),
            )
        }
    };
    let listen_addr = members[&node_id].clone();
    let http_listen: SocketAddr = listen_addr.parse().expect("checked above");
    let cluster_token = read_token(
        TokenSource {
            which: "cluster",
            env: CLUSTER_TOKEN_ENV,
        },
        cluster_token_from_env,
        cluster_token_file.as_deref(),
        read_file,
    )?;
    let exposed = !http_listen.ip().is_loopback();
    if !demo && exposed && admin_token.is_none() {
        return Err(ConfigError::MissingAdminToken { addr: http_listen });
    }
    // Without a cluster token `/raft/*` takes commands (checkpoints, owners,
    // Raft entries) from anyone who reaches the address: an admin token alone
    // would guard nothing.
    if !demo && (members.len() > 1 || exposed) && cluster_token.is_none() {
        return Err(ConfigError::MissingClusterToken);
    }
    let data_dir_key = if overrides.data_dir.is_some() {
        "--data-dir"
    } else if member_data_dir.is_some() {
        "cluster.node.data-dir"
    } else {
        "node.data-dir"
    };
    let data_dir = overrides
        .data_dir
        .clone()
        .or(member_data_dir)
        .or(raw.node.data_dir)
        .unwrap_or_else(|| PathBuf::from("data/node-1"));
    directory_path(&data_dir, data_dir_key)?;
    if members.len() > 1 && overrides.lake.is_none() && raw.lake.uri.is_none() {
        return Err(ConfigError::UnsharedLake {
            members: members.len(),
        });
    }
    if let Some(lake) = &overrides.lake {
        directory_path(lake, "--lake")?;
    } else if let Some(uri) = &raw.lake.uri {
        directory_path(uri, "lake.uri")?;
    }
    let lake_dir = overrides
        .lake
        .clone()
        .or(raw.lake.uri.clone())
        .unwrap_or_else(|| data_dir.join("lake"));
    let user_key_secret = resolve_secret(
        secret_from_env,
        raw.node.user_key_secret_file.as_deref(),
        demo,
        read_file,
    )?;

    Ok(NodeConfig {
        node_id,
        data_dir,
        lake_dir,
        live_retention: Duration::from_secs(raw.live.retention_hours * 3600),
        live_max_entries: raw.live.max_entries as usize,
        cluster: ClusterConfig {
            members,
            heartbeat_ms: timings.0,
            election_timeout_ms: timings.1,
            failover_after_ms: timings.2,
            token: cluster_token,
        },
        demo,
        user_key_secret,
        kafka: KafkaSettings {
            brokers,
            input_topic: raw.kafka.input_topic,
            clean_topic: raw.kafka.clean_topic,
            dlq_topic: raw.kafka.dlq_topic,
            consumer_group: raw.kafka.consumer_group,
            default_partitions: raw.kafka.default_partitions,
            replication_factor: raw.kafka.replication_factor,
            on_missing_offsets: match raw.kafka.on_missing_offsets {
                RawOnMissingOffsets::Fail => OnMissingOffsets::Fail,
                RawOnMissingOffsets::ResumeAtEarliest => OnMissingOffsets::ResumeAtEarliest,
            },
            dlq_retention: Duration::from_secs(raw.kafka.dlq_retention_hours * 3600),
        },
        ingest: IngestSettings {
            commit_max_events: raw.lake.commit_max_events,
            commit_max_bytes: raw.lake.commit_max_bytes,
            commit_interval: Duration::from_millis(raw.lake.commit_interval_ms),
            dedup: DedupSettings {
                window_events: raw.dedup.window_events,
                window: Duration::from_secs(raw.dedup.window_hours * 3600),
                max_ids: raw.dedup.max_ids,
            },
        },
        restart: RestartPolicy {
            min_backoff: Duration::from_millis(raw.node.restart_backoff_min_ms),
            max_backoff: Duration::from_millis(raw.node.restart_backoff_max_ms),
        },
        http_listen,
        admin_token,
        metadata: raw.node.metadata,
        jobs: JobSchedule {
            enrich_every: Duration::from_secs(jobs.enrich_interval_s),
            gold_every: Duration::from_secs(jobs.gold_interval_s),
            compact_every: Duration::from_secs(jobs.compact_interval_s),
            vacuum_every: Duration::from_secs(jobs.vacuum_interval_s),
            vacuum_retention: Duration::from_secs(jobs.vacuum_retention_hours * 3600),
            max_retries: jobs.max_retries,
            retry_backoff: Duration::from_millis(jobs.retry_backoff_ms),
            run_timeout: Duration::from_secs(jobs.timeout_s),
            lake: LakeSettings {
                memory_limit_bytes: (jobs.memory_limit_mb as usize) << 20,
                chunk_events: jobs.chunk_events,
            },
        },
        job_threads: jobs.threads,
    })
}

/// The file's values that a flag overrides in this process, which the checks
/// below never see: one file serves every member, and a member started
/// without the flag runs on the file's value, so a bad one is refused here
/// too, by its key.
fn file_values_overridden(raw: &RawConfig, overrides: &Overrides) -> Result<(), ConfigError> {
    if overrides.node_id.is_some() && raw.node.id == Some(0) {
        return Err(ConfigError::Invalid {
            key: "node.id",
            reason: "must be at least 1 (--node-id overrides it here)".to_string(),
        });
    }
    if overrides.node_id.is_some()
        && let (Some(id), Some(cluster)) = (raw.node.id, &raw.cluster)
        && !cluster.node.iter().any(|member| member.id == id)
    {
        return Err(ConfigError::Invalid {
            key: "node.id",
            reason: format!(
                "{id} is not a listed member (members: {:?}; --node-id overrides it here)",
                cluster.node.iter().map(|m| m.id).collect::<Vec<_>>()
            ),
        });
    }
    if overrides.brokers.is_some() && !brokers_are_valid(&raw.kafka.brokers) {
        return Err(ConfigError::Invalid {
            key: "kafka.brokers",
            reason: format!(
                "must be HOST:PORT[,HOST:PORT...], got {:?} (--brokers overrides it here)",
                raw.kafka.brokers
            ),
        });
    }
    if overrides.data_dir.is_some()
        && let Some(dir) = &raw.node.data_dir
    {
        directory_path(dir, "node.data-dir")?;
    }
    if overrides.lake.is_some()
        && let Some(uri) = &raw.lake.uri
    {
        directory_path(uri, "lake.uri")?;
    }
    Ok(())
}

/// An empty path would put the node's files in the working directory.
fn directory_path(path: &Path, key: &'static str) -> Result<(), ConfigError> {
    match directory_path_problem(path) {
        Some(problem) => Err(ConfigError::Invalid {
            key,
            reason: problem.to_string(),
        }),
        None => Ok(()),
    }
}

/// Why `path` cannot name a data or lake directory, if it cannot.
///
/// The node's own file calls read a path as written, while delta-rs expands
/// a leading `~` and reads `file://` URLs: such a value would put bronze in
/// one place and the Raft state and the jobs' reads in another, and silver
/// would find no bronze and report success.
pub(crate) fn directory_path_problem(path: &Path) -> Option<&'static str> {
    let text = path.to_string_lossy();
    if text.is_empty() {
        Some("must not be empty")
    } else if text.starts_with('~') {
        Some(
            "starts with `~`, which only a shell expands (and delta-rs would): give the \
             directory's full path, or ./ before a name that starts with ~",
        )
    } else if text.contains("://") {
        Some("is a URL: give the directory's path (object stores are not supported)")
    } else {
        None
    }
}

/// `value` of `key` is at least that of `other`, a setting it depends on.
fn not_below(
    (key, value): (&'static str, u64),
    (other, bound): (&'static str, u64),
) -> Result<(), ConfigError> {
    if value >= bound {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key,
        reason: format!("must be at least {other} ({bound}), got {value}"),
    })
}

/// `value` within `min..=max`, else an error naming `key`, the range and the
/// value. Upper bounds keep every duration and size far from overflow, and
/// refuse values that can only be typing mistakes.
fn within<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if min <= value && value <= max {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key,
            reason: format!("must be within {min}..={max}, got {value}"),
        })
    }
}

/// Kafka's rule for topic names: brokers refuse anything else when the node
/// creates the topic, which would read as an unreachable broker.
pub fn is_kafka_topic_name(topic: &str) -> bool {
    (1..=249).contains(&topic.len())
        && topic != "."
        && topic != ".."
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// `HOST:PORT[,HOST:PORT...]` with a host and a port (1-65535) in every part.
pub fn brokers_are_valid(brokers: &str) -> bool {
    brokers.split(',').all(|broker| {
        broker.trim().rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0)
        })
    })
}
