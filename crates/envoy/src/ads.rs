//! The gRPC Aggregated Discovery Service (state of the world). Each stream is bound to the
//! proxy named by the node id of its first request, follows that proxy's snapshots through
//! a [`SnapshotSource`], and answers with [`crate::stream::StreamState`]. The stream's
//! token (gRPC metadata `x-consul-token`, as Consul's) is checked with the proxy id by
//! [`SnapshotSource::authorize`] when the stream names its proxy, again before each new
//! snapshot is pushed (a revoked token gets no new keys), and every
//! [`SnapshotSource::recheck_every`] while the stream is open; a refusal ends the stream with
//! `PERMISSION_DENIED`.

use crate::render::render;
use crate::stream::{Rendered, RequestOutcome, StreamState};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use strait_snapshot::Snapshot;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// Where streams get snapshots: the agent's per-proxy snapshots, in process.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The current snapshot of `proxy_id`, if it has one.
    fn snapshot(&self, proxy_id: &str) -> Option<Arc<Snapshot>>;
    /// Changes whenever any snapshot may have changed.
    fn changes(&self) -> watch::Receiver<u64>;
    /// Whether the stream presenting `token` (none: it sent no `x-consul-token`) may follow
    /// `proxy_id`'s snapshots (they carry its private key); the `Err` says why not. By
    /// default every stream may (snapshot files, ACLs off).
    fn authorize(&self, proxy_id: &str, token: Option<String>) -> Authorizing {
        let _ = (proxy_id, token);
        Box::pin(async { Ok(()) })
    }
    /// How often an open stream's token is checked again (so a revoked token ends the stream
    /// even when no snapshot changes); `None`: never (the default, with nothing to check).
    fn recheck_every(&self) -> Option<std::time::Duration> {
        None
    }
}

/// What [`SnapshotSource::authorize`] answers, when it has asked.
pub type Authorizing = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Serves ADS on `listener` until `shutdown`; open streams end with it.
pub async fn serve<S: SnapshotSource>(
    listener: TcpListener,
    source: Arc<S>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let ads = Ads {
        source,
        shutdown: shutdown.clone(),
    };
    tonic::transport::Server::builder()
        .add_service(AggregatedDiscoveryServiceServer::new(ads))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await
}

struct Ads<S> {
    source: Arc<S>,
    shutdown: CancellationToken,
}

type Sent = Result<DiscoveryResponse, Status>;

#[tonic::async_trait]
impl<S: SnapshotSource> AggregatedDiscoveryService for Ads<S> {
    type StreamAggregatedResourcesStream = ReceiverStream<Sent>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let peer = request.remote_addr();
        let token = request
            .metadata()
            .get("x-consul-token")
            .and_then(|v| v.to_str().ok())
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        let (tx, rx) = mpsc::channel(16);
        let (source, shutdown) = (self.source.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            let requests = request.into_inner();
            if let Err(status) = run_stream(&*source, requests, token, &tx, shutdown).await {
                tracing::warn!(?peer, error = %status.message(), "ADS stream refused");
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "strait serves state-of-the-world ADS only: set ads_config.api_type to GRPC",
        ))
    }
}

/// The latest snapshot of the stream's proxy, rendered once per version.
fn refresh(source: &dyn SnapshotSource, proxy_id: &str, current: &mut Option<Rendered>) -> bool {
    let Some(snapshot) = source.snapshot(proxy_id) else {
        return false;
    };
    if current
        .as_ref()
        .is_some_and(|c| c.version == snapshot.version)
    {
        return false;
    }
    *current = Some(Rendered {
        version: snapshot.version,
        resources: render(&snapshot),
    });
    true
}

async fn authorize(
    source: &dyn SnapshotSource,
    proxy_id: &str,
    token: &Option<String>,
) -> Result<(), Status> {
    let asking = source.authorize(proxy_id, token.clone());
    asking.await.map_err(Status::permission_denied)
}

/// The next tick of the token re-check, or never without one.
async fn tick(recheck: &mut Option<tokio::time::Interval>) {
    match recheck {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn run_stream<S: SnapshotSource>(
    source: &S,
    mut requests: Streaming<DiscoveryRequest>,
    token: Option<String>,
    tx: &mpsc::Sender<Sent>,
    shutdown: CancellationToken,
) -> Result<(), Status> {
    let mut changes = source.changes();
    let mut state = StreamState::default();
    let mut current: Option<Rendered> = None;
    let mut proxy_id: Option<String> = None;
    let mut out = Vec::new();
    let mut recheck = source
        .recheck_every()
        .map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tx.closed() => return Ok(()),
            () = tick(&mut recheck), if proxy_id.is_some() => {
                if let Some(id) = &proxy_id {
                    authorize(source, id, &token).await?;
                }
            }
            request = requests.message() => {
                let request = match request {
                    Ok(Some(r)) => r,
                    Ok(None) => return Ok(()),
                    Err(status) => {
                        tracing::debug!(error = %status, "ADS stream closed by the proxy");
                        return Ok(());
                    }
                };
                let id = match &proxy_id {
                    Some(id) => id.clone(),
                    None => {
                        let id = request.node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
                        if id.is_empty() {
                            return Err(Status::invalid_argument(
                                "the first DiscoveryRequest must name the proxy in node.id (the proxy id, e.g. web-sidecar-proxy)",
                            ));
                        }
                        authorize(source, &id, &token).await?;
                        tracing::info!(proxy = %id, "Envoy connected over ADS");
                        proxy_id = Some(id.clone());
                        id
                    }
                };
                refresh(source, &id, &mut current);
                match state.on_request(&request, current.as_ref(), &mut out) {
                    RequestOutcome::Rejected { version, message } => tracing::warn!(
                        proxy = %id, type_url = %request.type_url, %version, %message,
                        "Envoy rejected a configuration"
                    ),
                    RequestOutcome::UnknownType => tracing::debug!(
                        proxy = %id, type_url = %request.type_url, "ignoring a request for a type strait does not serve"
                    ),
                    _ => {}
                }
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                if let Some(id) = &proxy_id {
                    if refresh(source, id, &mut current) {
                        authorize(source, id, &token).await?;
                        if let Some(c) = &current {
                            tracing::debug!(proxy = %id, version = c.version, "pushing a new snapshot");
                            state.on_snapshot(c, &mut out);
                        }
                    }
                }
            }
        }
        for response in out.drain(..) {
            if tx.send(Ok(response)).await.is_err() {
                return Ok(());
            }
        }
    }
}
