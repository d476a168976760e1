//! Raft RPCs between members: HTTP POSTs to `http://<addr>/raft/<rpc>` with a
//! bincode body, authenticated by the cluster token. The answer is the remote
//! Raft's `Result`, also bincode.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use streamreel_protocol::codec::{decode, encode};

use crate::error::ClusterError;
use crate::types::{Member, NodeId, TypeConfig};

/// The `/raft/*` paths, shared by the client here and the node's HTTP server.
pub mod paths {
    pub const APPEND: &str = "/raft/append";
    pub const VOTE: &str = "/raft/vote";
    pub const SNAPSHOT: &str = "/raft/snapshot";
    /// A command forwarded to the leader.
    pub const WRITE: &str = "/raft/write";
    /// Liveness and whether this member's Raft is initialised.
    pub const PING: &str = "/raft/ping";
}

/// An HTTP client that carries the cluster token.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    token: Option<String>,
}

impl PeerClient {
    pub fn new(token: Option<String>) -> PeerClient {
        PeerClient {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_millis(500))
                // Members close connections idle for 10 s: let go of them
                // first, never reusing one just as its member closes it.
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .expect("a plain HTTP client builds"),
            token,
        }
    }

    /// POSTs `body` (bincode) to `addr` + `path` and decodes the bincode answer.
    pub async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, ClusterError> {
        let bytes = self.post_bytes(addr, path, encode(body)?, timeout).await?;
        Ok(decode(&bytes)?)
    }

    pub async fn post_bytes(
        &self,
        addr: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ClusterError> {
        let transport_error = |source: reqwest::Error| ClusterError::Transport {
            addr: addr.to_string(),
            source,
        };
        let mut request = self
            .http
            .post(format!("http://{addr}{path}"))
            .timeout(timeout)
            .header("content-type", "application/octet-stream")
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport_error)?;
        if !status.is_success() {
            return Err(ClusterError::HttpStatus {
                addr: addr.to_string(),
                status,
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            });
        }
        Ok(bytes.to_vec())
    }
}

/// Makes one [`PeerConnection`] per target member.
#[derive(Clone)]
pub struct HttpNetwork {
    client: PeerClient,
}

impl HttpNetwork {
    pub fn new(client: PeerClient) -> HttpNetwork {
        HttpNetwork { client }
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerConnection {
        PeerConnection {
            client: self.client.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

pub struct PeerConnection {
    client: PeerClient,
    target: NodeId,
    addr: String,
}

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<NodeId, E>> = match self
            .client
            .post(&self.addr, path, request, option.hard_ttl())
            .await
        {
            Ok(answer) => answer,
            // No answer, or an error status (a member that refuses our
            // token cannot take entries either): back off.
            Err(e @ (ClusterError::Transport { .. } | ClusterError::HttpStatus { .. })) => {
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(paths::APPEND, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(paths::SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(paths::VOTE, &rpc, &option).await
    }
}
