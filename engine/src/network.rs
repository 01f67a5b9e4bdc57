//! Raft networking for a one-member cluster: there are no peers to reach,
//! so every RPC reports the target unreachable. The server RPC transport
//! replaces this with the cluster work.

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::raft::{RaftNode, TypeConfig};

/// Creates [`NoPeer`] clients.
pub(crate) struct SoloNetwork;

/// A client for a peer that cannot be reached.
pub(crate) struct NoPeer;

fn unreachable<E: std::error::Error>() -> RPCError<u64, RaftNode, E> {
    let e = std::io::Error::other("single-server cluster: no raft transport");
    RPCError::Unreachable(Unreachable::new(&e))
}

impl RaftNetworkFactory<TypeConfig> for SoloNetwork {
    type Network = NoPeer;

    async fn new_client(&mut self, _target: u64, _node: &RaftNode) -> NoPeer {
        NoPeer
    }
}

impl RaftNetwork<TypeConfig> for NoPeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, RaftNode, RaftError<u64>>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, RaftNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, RaftNode, RaftError<u64>>> {
        Err(unreachable())
    }
}
