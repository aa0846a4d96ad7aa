//! The standard `grpc.health.v1.Health` service, following the runtime's readiness: SERVING
//! exactly when `/health/ready` answers 200, NOT_SERVING while models load and once a shutdown
//! begins. At the shutdown, open `Watch` streams get NOT_SERVING and then end, so they do not
//! hold the graceful drain open until its time runs out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::watch;
use tonic::codegen::tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health as HealthApi, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService, WatchStream};

use super::pb::inference_server::SERVICE_NAME;
use crate::runtime::Runtime;

/// How often readiness is sampled: it has no change event, and loading takes seconds.
const POLL: Duration = Duration::from_millis(100);

/// Keeps the health statuses current; see [`Health::follow`].
pub struct Health {
    reporter: HealthReporter,
    watchers_end: watch::Sender<bool>,
}

impl Health {
    /// The reporter and the service to route, NOT_SERVING until [`Health::follow`] says otherwise.
    pub async fn new() -> (Self, HealthServer<DrainingHealth>) {
        let reporter = HealthReporter::new();
        // The reporter starts the whole server ("") as SERVING.
        set_all(&reporter, ServingStatus::NotServing).await;
        let (watchers_end, end) = watch::channel(false);
        let service = DrainingHealth {
            inner: HealthService::from_health_reporter(reporter.clone()),
            end,
        };
        let health = Self {
            reporter,
            watchers_end,
        };
        (health, HealthServer::new(service))
    }

    /// Reports the runtime's readiness until `stopping` turns true; then NOT_SERVING for good,
    /// after which every `Watch` stream ends.
    pub async fn follow(self, rt: Arc<Runtime>, mut stopping: watch::Receiver<bool>) {
        let mut serving = false;
        loop {
            let ready = rt.is_ready();
            if ready != serving {
                serving = ready;
                let status = if ready {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                set_all(&self.reporter, status).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stopping.wait_for(|s| *s) => break,
            }
        }
        // Statuses are written by this task alone, so none can come after this one.
        set_all(&self.reporter, ServingStatus::NotServing).await;
        let _ = self.watchers_end.send(true);
    }
}

/// The server as a whole ("") and the inference service by name: what clients ask about.
async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    for name in ["", SERVICE_NAME] {
        reporter.set_service_status(name, status).await;
    }
}

/// tonic-health's service, with `Watch` streams that end at the shutdown.
pub struct DrainingHealth {
    inner: HealthService,
    end: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl HealthApi for DrainingHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = UntilEnd;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let updates = self.inner.watch(request).await?.into_inner();
        let mut end = self.end.clone();
        Ok(Response::new(UntilEnd {
            updates,
            end: Box::pin(async move {
                // Also when the sender is gone: the server is stopping either way.
                let _ = end.wait_for(|e| *e).await;
            }),
        }))
    }
}

/// Status updates until the shutdown; updates sent before it are delivered first.
pub struct UntilEnd {
    updates: WatchStream,
    end: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Stream for UntilEnd {
    type Item = Result<HealthCheckResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = Pin::new(&mut self.updates).poll_next(cx) {
            return Poll::Ready(item);
        }
        self.end.as_mut().poll(cx).map(|()| None)
    }
}
