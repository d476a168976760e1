//! `streamreel admin`: talks to a node's HTTP admin API.

use std::time::Duration;

use streamreel_actors::coordinator::job::JobKind;

use crate::error::NodeError;

pub enum AdminCommand {
    Status,
    Jobs,
    Run(JobKind),
    Rebalance,
    Move { partition: i32, to: u64 },
    AddNode { id: u64, addr: String },
    RemoveNode(u64),
}

/// Sends the command to the node at `base` and returns the response body
/// (pretty JSON); a non-2xx answer is an error carrying the node's message.
pub async fn admin(
    base: &str,
    token: Option<&str>,
    command: AdminCommand,
) -> Result<String, NodeError> {
    let base = base.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(NodeError::Argument {
            name: "--node",
            reason: format!("{base:?} must be a URL such as http://127.0.0.1:8081"),
        });
    }
    let client = reqwest::Client::builder()
        // `move` answers once the new owner resumed, which may take a while.
        .timeout(Duration::from_secs(90))
        .build()
        .map_err(NodeError::HttpClient)?;
    let request = match &command {
        AdminCommand::Status => client.get(format!("{base}/admin/status")),
        AdminCommand::Jobs => client.get(format!("{base}/admin/jobs")),
        AdminCommand::Run(job) => client.post(format!("{base}/admin/jobs/{job}/run")),
        AdminCommand::Rebalance => client.post(format!("{base}/admin/rebalance")),
        AdminCommand::Move { partition, to } => client
            .post(format!("{base}/admin/partitions/{partition}/move"))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "to": to }).to_string()),
        AdminCommand::AddNode { id, addr } => client
            .post(format!("{base}/admin/nodes"))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "id": id, "addr": addr }).to_string()),
        AdminCommand::RemoveNode(id) => client.delete(format!("{base}/admin/nodes/{id}")),
    };
    // Trimmed and blank-as-unset, as the node reads its own token.
    let request = match token.map(str::trim).filter(|t| !t.is_empty()) {
        Some(token) if !crate::config::is_header_safe(token) => {
            return Err(NodeError::Argument {
                name: "--token",
                reason: "holds a character other than printable ASCII (space to '~'), which \
                         an HTTP header cannot carry"
                    .into(),
            });
        }
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let unreachable = |source| NodeError::AdminUnreachable {
        base: base.to_string(),
        source,
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let body = response.text().await.map_err(unreachable)?;
    let pretty = serde_json::from_str::<serde_json::Value>(&body)
        .map(|v| serde_json::to_string_pretty(&v).unwrap_or(body.clone()))
        .unwrap_or(body);
    if status.is_success() {
        Ok(pretty)
    } else {
        Err(NodeError::AdminRefused {
            status,
            body: pretty,
        })
    }
}
